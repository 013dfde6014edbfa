"""Data sets: keyword spotting audio, simulated and recorded ECG."""
