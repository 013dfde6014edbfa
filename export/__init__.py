"""qs4d.export: checkpoint -> bundle (integer ONNX step, crossbar conductance tables)."""
