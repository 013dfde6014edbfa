"""qs4d: streaming edge inference of quantized S4D state-space models."""

__version__ = "0.1.0"
