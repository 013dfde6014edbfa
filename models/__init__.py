"""qs4d.models: S4D layers, QAT quantizers, noise, pruning, training and data sets (torch)."""
