"""qs4d.runtime: the product that ships to a device (numpy, scipy, onnxruntime only)."""
