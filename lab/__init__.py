"""qs4d.lab: orchestration that trains and runs together (sweeps, the keyword streaming
benchmark, profiling against PyTorch, sweep plots). The one layer that may import every other:
apps -> runtime <- models <- export, and lab -> all (tests/test_layers.py)."""
