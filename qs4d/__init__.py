"""qs4d: streaming edge inference of quantized S4D state-space models.

    import qs4d
    model = qs4d.load("models/zoo/kws-qat4", backend="onnx")   # or "imssa", "numpy"
    stream = model.stream()
    logits = stream.accept(samples)   # any chunk length; (T_out, K)
"""

__version__ = "0.1.0"


def load(path, backend: str = "onnx", **kwargs):
    """Load a bundle: see `qs4d.runtime.stream.load`."""
    from qs4d.runtime.stream import load as _load

    return _load(path, backend=backend, **kwargs)
