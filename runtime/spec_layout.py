"""The weights.npz layout of a bundle, derived from its spec (re-exported by `spec`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .spec_base import SpecError

if TYPE_CHECKING:
    from .spec import QuantSpec, Spec

# ---------------------------------------------------------------------------------------------
# weights.npz layout: the key, shape and kind of every tensor, derived from the spec.
# kind "code": integer codes; "acc": int32 bias codes at the scale s_in * s_w;
# "scale": float32 scale (shape () per tensor, (channels,) per channel); "table": int32 LUT;
# "float": float32 (float bundles only).
#
# State layout per layer: s = [Re x; Im x], shape (B, H, 2P). A and B are (H, 2, P) with
# [:, 0] the real and [:, 1] the imaginary part. C is the real output row [2Re(C A), -2Im(C A)]
# of shape (H, 2P); D is 2Re(C B) + D of shape (H,).
# ---------------------------------------------------------------------------------------------

def layer_key(i: int, name: str) -> str:
    return f"l{i}.{name}"


def _scale_shape(q: QuantSpec, channels: int) -> tuple:
    return (channels,) if q.per_channel else ()


def weight_shapes(spec: Spec) -> dict:
    """{key: (shape, kind)} of every tensor a bundle's weights.npz must hold."""
    m, q = spec.model, spec.quant
    F, H, K = m.d_input, m.d_model, m.n_classes
    integer = q.integer
    if not integer and q.any_enabled:
        raise SpecError("spec.quant: a bundle is either float (no group quantized) or integer "
                        "(every group but dt quantized)")
    out: dict = {}

    def lin(prefix: str, n_out: int, n_in: int) -> None:
        if integer:
            out[f"{prefix}.w"] = ((n_out, n_in), "code")
            out[f"{prefix}.w.scale"] = (_scale_shape(q.weights, n_out), "scale")
            out[f"{prefix}.b"] = ((n_out,), "acc")
            out[f"{prefix}.out.scale"] = ((), "scale")
        else:
            out[f"{prefix}.w"] = ((n_out, n_in), "float")
            out[f"{prefix}.b"] = ((n_out,), "float")

    if integer:
        out["in.scale"] = ((), "scale")
    lin("enc", H, F)
    for i, P in enumerate(m.layer_modes):
        k = lambda name, i=i: layer_key(i, name)  # noqa: E731
        shapes = {"A": (H, 2, P), "B": (H, 2, P), "C": (H, 2 * P), "D": (H,)}
        for name, shp in shapes.items():
            if integer:
                out[k(name)] = (shp, "code")
                out[k(name + ".scale")] = (_scale_shape(getattr(q, name), H), "scale")
            else:
                out[k(name)] = (shp, "float")
        lin(k("mix"), 2 * H, H)
        if integer:
            out[k("state.scale")] = (_scale_shape(q.state, H), "scale")
            out[k("y.scale")] = ((), "scale")
            out[k("gelu.table")] = ((2**q.adc.bits,), "table")
            out[k("gelu.scale")] = ((), "scale")
            out[k("sig.table")] = ((2**q.act.bits,), "table")
            out[k("glu.scale")] = ((), "scale")
            out[k("res.scale")] = ((), "scale")
    if integer:
        out["dec.w"] = ((K, H), "code")
        out["dec.w.scale"] = (_scale_shape(q.weights, K), "scale")
        out["dec.b"] = ((K,), "acc")
    else:
        out["dec.w"] = ((K, H), "float")
        out["dec.b"] = ((K,), "float")
    return out
