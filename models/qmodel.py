"""Recurrent QAT forward of an S4DClassifier, integer-exact: the same arithmetic, operation for
operation, as `qs4d.runtime.reference.IntegerStep` (DESIGN section 3).

Glossary: B batch, L sequence length, F input features, H width, P modes, K classes.

Every tensor point has a quantizer (`Quantizer`) or is left in float (`FloatPoint`, for the
per-component studies where only some groups are quantized). Codes are float tensors holding
exact integers; a float point carries its value with scale 1.

Only the state recurrence loops over time; everything else is causal and per step, so it is
computed for the whole sequence at once, layer by layer, which gives the same numbers as
stepping the whole model one sample at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as Fn
from torch import nn

from qs4d.runtime.spec import QuantConfig, QuantSpec

from .quant import Quantizer, acc_dtype, int_linear, lut_apply, multiplier, round_ste

ONE = torch.ones(())


class FloatPoint(nn.Module):
    """A tensor point left in float: codes are the values themselves, scale 1."""

    enabled = False

    def scale(self) -> torch.Tensor:
        return ONE

    def scale_for(self, x: torch.Tensor) -> torch.Tensor:
        return ONE

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _point(spec: QuantSpec, channels: int, axis: int, learn: bool) -> nn.Module:
    if not spec.enabled:
        return FloatPoint()
    q = Quantizer(spec, channels, axis, learn)
    q.enabled = True
    return q


def point_names(n_layers: int) -> list[str]:
    names = ["in", "enc_w", "enc_out", "dec_w"]
    for i in range(n_layers):
        names += [f"l{i}_{n}" for n in ("dt", "A", "B", "C", "D", "state", "y", "gelu",
                                        "mix_w", "z", "glu", "res")]
    return names


def attach_quant(model, qcfg: QuantConfig) -> None:
    """Give the model a quantizer for every tensor point (BatchNorm must be folded first)."""
    if any(blk.norm is not None for blk in model.blocks):
        raise ValueError("fold BatchNorm (model.fold_norms()) before attaching quantizers")
    H, learn = model.cfg.d_model, qcfg.learn_scales
    act, w = qcfg.act, qcfg.weights
    pts = {"in": _point(act, 1, 0, learn), "enc_w": _point(w, H, 0, learn),
           "enc_out": _point(act, 1, 0, learn),
           "dec_w": _point(w, model.cfg.n_classes, 0, learn)}
    for i in range(len(model.blocks)):
        k = f"l{i}_"
        pts.update({k + "dt": _point(qcfg.dt, H, 0, learn), k + "A": _point(qcfg.A, H, 0, learn),
                    k + "B": _point(qcfg.B, H, 0, learn), k + "C": _point(qcfg.C, H, 0, learn),
                    k + "D": _point(qcfg.D, H, 0, learn),
                    k + "state": _point(qcfg.state, H, -2, learn),
                    k + "y": _point(qcfg.adc, 1, 0, learn), k + "gelu": _point(act, 1, 0, learn),
                    k + "mix_w": _point(w, 2 * H, 0, learn), k + "z": _point(act, 1, 0, learn),
                    k + "glu": _point(act, 1, 0, learn), k + "res": _point(act, 1, 0, learn)})
    model.quant = nn.ModuleDict(pts)
    model.qcfg = qcfg


@torch.no_grad()
def calibrate(model, x: torch.Tensor, act_method: str = "percentile",
              weight_method: str = "mse") -> None:
    """Set every scale from a float recurrent pass over x (B, L, F) and from the weights."""
    quant, model.quant = model.quant, None
    was_training = model.training
    model.eval()
    trace: dict = {}
    model(x, recurrent=True, trace=trace)
    model.quant = quant
    model.train(was_training)
    q = model.quant

    def cal(name, t, method):
        if q[name].enabled:
            q[name].calibrate(t, method)

    cal("in", trace["in"], "max")
    cal("enc_out", trace["enc_out"], act_method)
    cal("enc_w", model.enc.weight, weight_method)
    cal("dec_w", model.dec.weight, weight_method)
    for i, blk in enumerate(model.blocks):
        k = f"l{i}_"
        dt = blk.s4d.dt()
        cal(k + "dt", dt, "max")
        A, Bm, C, D = blk.s4d.step_matrices(q[k + "dt"](dt) if q[k + "dt"].enabled else dt)
        for name, t in (("A", A), ("B", Bm), ("C", C), ("D", D)):
            cal(k + name, t, "max" if name in ("A", "D") else weight_method)
        cal(k + "state", trace[k + "state"], "max")
        for name in ("y", "gelu", "z", "glu", "res"):
            cal(k + name, trace[k + name], act_method)
        cal(k + "mix_w", blk.mix.weight, weight_method)


def _requant(terms, point: nn.Module) -> torch.Tensor:
    total = None
    for acc, m in terms:
        t = acc.to(torch.float32) * m
        total = t if total is None else total + t
    if not point.enabled:
        return total
    return torch.clamp(round_ste(total), point.qmin, point.qmax)


def _pc(m: torch.Tensor) -> torch.Tensor:
    """Per-channel (H,) multiplier broadcast over (..., H, 2P)."""
    return m[:, None] if m.dim() == 1 else m


def _bound(point: nn.Module, x: torch.Tensor | None = None) -> float:
    if point.enabled:
        return float(max(-point.qmin, point.qmax))
    return float(x.detach().abs().max()) if x is not None else 2.0**60


def _bias_codes(b: torch.Tensor, s: torch.Tensor, enabled: bool) -> torch.Tensor:
    if not enabled:
        return b / s
    return torch.clamp(round_ste(b / s), -(2**31), 2**31 - 1)


def _linear(model, lin: nn.Linear, wq: nn.Module, x, s_x, x_point):
    """Integer linear layer: (accumulator, its scale s_x * s_w, s_w)."""
    wc = model.noisy(wq.codes(lin.weight))  # (O, I)
    s_w = wq.scale()  # (O,) or ()
    enabled = wq.enabled and x_point.enabled
    bc = _bias_codes(lin.bias, s_x * s_w, enabled)  # (O,)
    bound = lin.in_features * _bound(x_point, x) * _bound(wq, wc) + float(bc.detach().abs().max())
    acc = model.read_noisy(int_linear(x, wc, bc, bound),
                           lambda: (x.detach() ** 2) @ (wc.detach() ** 2).t())  # row noise
    return acc, s_w


def _lut(point_in, point_out, codes, s_in, fn, out_scale, out_min, out_max):
    """fn over codes at scale s_in, quantized at out_scale: a lookup table when both ends are
    integer (exactly the table the bundle stores), else computed directly."""
    if point_in.enabled and point_out.enabled:
        table = lut_table(point_in, s_in, fn, out_scale, out_min, out_max)
        return lut_apply(codes, table, point_in.qmin, fn(codes * s_in) / out_scale)
    v = fn(codes * s_in) / out_scale
    return torch.clamp(round_ste(v), out_min, out_max) if point_out.enabled else v


def lut_table(point_in, s_in, fn, out_scale, out_min, out_max) -> torch.Tensor:
    grid = torch.arange(point_in.qmin, point_in.qmax + 1, dtype=torch.float32) * s_in.detach()
    return torch.clamp(torch.round(fn(grid) / out_scale.detach()), out_min, out_max)


def sig_scale(q_act: nn.Module) -> torch.Tensor:
    return torch.tensor(1.0) / torch.tensor(float(q_act.qmax)) if q_act.enabled else ONE


def forward_quant(model, x: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
    """x (B, L, F) -> per-step logits (B, L, K), integer-exact recurrent QAT."""
    q = model.quant
    p_in = q["in"]
    s_in = p_in.scale()
    xc = p_in.codes(x)  # (B, L, F)
    acc, s_w = _linear(model, model.enc, q["enc_w"], xc, s_in, p_in)  # (B, L, H)
    s_h = q["enc_out"].scale()
    h = _requant([(acc, multiplier(s_in, s_w, s_h))], q["enc_out"])  # (B, L, H)
    p_h = q["enc_out"]
    for i, blk in enumerate(model.blocks):
        h, s_h, p_h = _block(model, i, blk, h, s_h, p_h, trace)
    acc, s_w = _linear(model, model.dec, q["dec_w"], h, s_h, p_h)  # (B, L, K)
    return acc.to(torch.float32) * (s_h * s_w)  # (B, L, K)


def _block(model, i, blk, u, s_u, p_u, trace):
    q = {n: model.quant[f"l{i}_{n}"] for n in ("dt", "A", "B", "C", "D", "state", "y", "gelu",
                                                "mix_w", "z", "glu", "res")}
    mats = _s4d_codes(model, blk, q)
    s_new, y, s_y = _s4d(model, mats, q, u, s_u, p_u, trace, i)
    g = _lut(q["y"], q["gelu"], y, s_y, Fn.gelu, q["gelu"].scale(),
             getattr(q["gelu"], "qmin", 0), getattr(q["gelu"], "qmax", 0))  # (B, L, H)
    s_g = q["gelu"].scale()
    acc, s_wm = _linear(model, blk.mix, q["mix_w"], g, s_g, q["gelu"])  # (B, L, 2H)
    s_z = q["z"].scale()
    z = _requant([(acc, multiplier(s_g, s_wm, s_z))], q["z"])  # (B, L, 2H)
    H = z.shape[-1] // 2
    s_sig = sig_scale(q["z"])
    sig = _lut(q["z"], q["z"], z[..., H:], s_z, torch.sigmoid, s_sig, 0,
               getattr(q["z"], "qmax", 0))  # (B, L, H)
    s_o, s_r = q["glu"].scale(), q["res"].scale()
    o = _requant([(z[..., :H] * sig, multiplier(s_z, s_sig, s_o))], q["glu"])  # (B, L, H)
    r = _requant([(u, multiplier(s_u, ONE, s_r)), (o, multiplier(s_o, ONE, s_r))],
                 q["res"])  # (B, L, H)
    if trace is not None:
        trace.update({f"l{i}_y": y, f"l{i}_gelu": g, f"l{i}_z": z, f"l{i}_res": r})
    return r, s_r, q["res"]


def _s4d_codes(model, blk, q):
    """Codes of the S4D step tensors A (H,2,P), B (H,2,P), C (H,2P), D (H,)."""
    dt = blk.s4d.dt()  # (H,)
    if q["dt"].enabled:
        dt = q["dt"](dt)
    A, Bm, C, D = blk.s4d.step_matrices(dt)
    return tuple(model.noisy(q[n].codes(t)) for n, t in zip("ABCD", (A, Bm, C, D)))


def _s4d(model, mats, q, u, s_u, p_u, trace, i):
    """The quantized S4D recurrence; u (B, L, H) codes -> states, y codes (B, L, H).
    With read noise on (model.read_noisy), every row of the step matrix (the 2P state rows
    and the output row) gets its own noise at every step, relative to its products."""
    Ac, Bc, Cc, Dc = mats
    Bsz, L, H = u.shape
    P = Ac.shape[-1]
    sA, sB, sC, sD = (q[n].scale() for n in "ABCD")
    sX, sY = q["state"].scale(), q["y"].scale()
    p_x = q["state"]
    m_a = _pc(multiplier(sA, sX, sX))
    m_b = _pc(multiplier(s_u, sB, sX))
    Bcat = torch.cat([Bc[:, 0], Bc[:, 1]], dim=-1)  # (H, 2P)
    dtb = acc_dtype(_bound(q["B"], Bc) * _bound(p_u, u))
    pre = (Bcat.to(dtb) * u.to(dtb)[..., None]).to(torch.float32) * m_b  # (B, L, H, 2P)
    pre = model.read_noisy(pre, lambda: pre ** 2)  # one B cell per state row
    dta = acc_dtype(2 * _bound(q["A"], Ac) * (_bound(p_x) if p_x.enabled else 2.0**60))
    Ar, Ai = Ac[:, 0].to(dta), Ac[:, 1].to(dta)  # (H, P)
    s = u.new_zeros(Bsz, H, 2 * P)  # (B, H, 2P)
    states, noisy = [], model.read_noise_active()
    for pre_t in pre.unbind(1):  # one backward for all steps, not a select per step
        states.append(s)
        sr, si = s[..., :P].to(dta), s[..., P:].to(dta)  # (B, H, P)
        acc_a = torch.cat([Ar * sr - Ai * si, Ai * sr + Ar * si], dim=-1)  # (B, H, 2P)
        if noisy:
            a2, b2 = (Ar * sr) ** 2, (Ai * si) ** 2  # (B, H, P) the rotation's four products
            c2, d2 = (Ai * sr) ** 2, (Ar * si) ** 2
            acc_a = model.read_noisy(acc_a, torch.cat([a2 + b2, c2 + d2], dim=-1))
        s = _requant([(acc_a, m_a), (pre_t, ONE)], p_x)  # (B, H, 2P)
    S = torch.stack(states, dim=1)  # (B, L, H, 2P)
    dtc = acc_dtype(2 * P * _bound(q["C"], Cc) * _bound(p_x, S))
    acc_c = (S.to(dtc) * Cc.to(dtc)).sum(-1)  # (B, L, H)  exact: integer terms
    dtd = acc_dtype(_bound(q["D"], Dc) * _bound(p_u, u))
    acc_d = Dc.to(dtd) * u.to(dtd)  # (B, L, H)
    if noisy:  # the output row: C . s and D u read together, noise relative to each
        acc_c = model.read_noisy(acc_c, lambda: (S.detach() ** 2 * Cc.detach() ** 2).sum(-1))
        acc_d = model.read_noisy(acc_d, lambda: acc_d ** 2)
    y = _requant([(acc_c, multiplier(sC, sX, sY)), (acc_d, multiplier(s_u, sD, sY))],
                 q["y"])  # (B, L, H)
    if trace is not None:
        trace[f"l{i}_state"] = S
    return s, y, sY
