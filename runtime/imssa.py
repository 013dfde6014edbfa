"""IMSSA, the In-Memory State Space Accelerator simulator: a drop-in for reference.FloatStep.

Glossary: B batch/streams, F features, H width, P modes, K classes; n arrays of a group,
R/C array rows/cols, S signals (a group's input vector), O outputs of a group.

Every mapped group (each S4D layer; the mixing, encoder and decoder layers when
CrossbarConfig.layers names them) runs as crossbar reads (docs/crossbar.md):
    V (B, n, C) = dac(signal[col_signal]) * col_gain           DAC per column, calibrated range
    I (B, n, R) = (G+(t) - G-(t) + read noise) . V             one read of every array
    out (B, O)  = sum over the rows feeding an output of adc(I) * row_gain
Everything else (GELU, GLU, residual, biases, unmapped layers) runs digitally in float32
exactly like FloatStep. Non-idealities: level quantization and programming noise once per
programming (seeded), drift G(t) = G_prog (t / t0)^-nu, read noise per device per read (sigma
times the conductance range, or times the device's G), DAC/ADC bits with clipping. In ideal
mode the result equals FloatStep up to float rounding. The analog path computes in float64;
the state and every digital tensor are float32. Reading the tables back: `decode_codes` (the
codes the conductances hold, which the constructor checks against the weights) and
`array_costs` (conversions per read, for the counters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .crossbar_io import Crossbar, block_layout, delta_lut, level_steps, load_crossbar
from .program import crossbar_codes
from .quant import F32
from .reference import dequantize_weights, gelu, rotate, sigmoid
from .spec import CrossbarConfig, Spec, layer_key

COUNTERS = ("steps", "array_reads", "dac_conversions", "dac_conversion_bits",
            "adc_conversions", "adc_conversion_bits", "analog_macs", "digital_macs",
            "digital_ops")


def convert(x: np.ndarray, fs, bits: int) -> np.ndarray:
    """Symmetric uniform converter: clip(rint(x / lsb), -qmax, qmax) * lsb with
    lsb = fs / (2^(bits-1) - 1); bits 0 is ideal; a full scale of 0 gives 0."""
    if bits == 0:
        return np.asarray(x, np.float64)
    qmax = 2 ** (bits - 1) - 1
    lsb = np.asarray(fs, np.float64) / qmax
    safe = np.where(lsb > 0, lsb, 1.0)
    return np.where(lsb > 0, np.clip(np.rint(x / safe), -qmax, qmax) * safe, 0.0)


def calibration_config(cb: Crossbar) -> CrossbarConfig:
    """The ideal simulator of every group a crossbar maps (used to calibrate its ranges)."""
    return cb.config.replace(dac_bits=0, adc_bits=0, sigma_prog=0.0, sigma_read=0.0,
                             drift_nu=0.0, levels=0)


# ------------------------------------------------------------- reading the tables back

def array_costs(man: dict, tables: dict) -> dict:
    """Per array and per read: ADC conversions (used rows), DAC conversions (distinct signals
    among used columns: u drives u_state and u_out from one conversion), used cells."""
    rows, cols = tables["row_output"], tables["col_signal"]  # (n, R) (n, C)
    dac = [len(np.unique(c[c >= 0])) for c in cols]
    return {"adc_rows": (rows >= 0).sum(1), "dac_signals": np.asarray(dac),
            "used_cells": np.asarray([t["used_cells"] for t in man["tiles"]], np.int64)}


def level_index(G: np.ndarray, g_min: float, step: np.ndarray) -> np.ndarray:
    """Index k of the nearest programmable level g_min + k * step (float64 integers)."""
    return np.rint((np.asarray(G, np.float64) - g_min) / step)


def snap(G: np.ndarray, g_min: float, step: np.ndarray) -> np.ndarray:
    """Nearest programmable level g_min + k * step of every conductance (float64)."""
    return g_min + level_index(G, g_min, step) * step


def s4d_unblock(M: np.ndarray) -> dict:
    """Inverse of qs4d.export.crossbar.s4d_block on (H, 2P+1, 2P+2) blocks: {"A", "B", "C", "D"}."""
    H, r, _ = M.shape
    P = (r - 1) // 2
    p = np.arange(P)  # (P,)
    A = np.stack([M[:, p, p], M[:, P + p, p]], axis=1)  # (H, 2, P)
    B = M[:, : 2 * P, 2 * P].reshape(H, 2, P)  # (H, 2, P)
    return {"A": A, "B": B, "C": M[:, 2 * P, : 2 * P], "D": M[:, 2 * P, 2 * P + 1]}


def decode_codes(cb: Crossbar, levels: int | None = None) -> dict:
    """Codes that the conductances represent, keyed as in weights.npz (float64: exact integers
    when the mapping is exact). Conductances are read as level indices k+, k- on the grid of
    `levels` (default: the manifest's); a cell's code is (k+ - k-) * step / delta_g."""
    man, tb = cb.manifest, cb.tables
    lv = man["levels"] if levels is None else levels
    step = level_steps(man, tb["cell_kind"], lv)  # (n, R, C)
    k = level_index(tb["G_plus"], man["g_min"], step) - level_index(
        tb["G_minus"], man["g_min"], step)  # (n, R, C)
    out = {}
    for g in man["groups"]:
        kinds, lut = block_layout(g)[0], delta_lut(g, 1.0)  # (r, c) (kinds,)
        M = np.zeros((2, g["blocks"], *kinds.shape))  # (2, n_blk, r, c) level diff, step
        for t in cb.tiles(g["name"]):
            for pl in t["placements"]:
                (r0, r1), (c0, c1), (ar, ac) = pl["rows"], pl["cols"], pl["at"]
                cell = (t["array"], slice(ar, ar + r1 - r0), slice(ac, ac + c1 - c0))
                M[:, pl["block"], r0:r1, c0:c1] = k[cell], step[cell]
        codes = M[0] * (M[1] / lut[kinds])  # (n_blk, r, c)
        parts = s4d_unblock(codes) if g["kind"] == "s4d" else {"W": codes[0]}
        out.update({g["keys"][kk]: v for kk, v in parts.items()})
    return out


def decode_scales(g: dict) -> dict:
    """Per-channel scales {part: (channels,)} that a group's row and column gains encode."""
    dg, rg, cg = g["delta_g"], g["row_gain"], g["col_gain"]
    if g["kind"] == "linear":
        return {"W": np.asarray(rg["out"]) * dg["W"]}
    sA, sC = np.asarray(rg["state"]) * dg["A"], np.asarray(rg["out"]) * dg["C"]
    return {"A": sA, "C": sC, "B": np.asarray(cg["u_state"]) * sA * dg["B"] / dg["A"],
            "D": np.asarray(cg["u_out"]) * sC * dg["D"] / dg["C"]}


@dataclass(frozen=True)
class _Route:
    """How one group's signals reach its arrays and its outputs leave them."""

    arrays: slice
    S: int
    O: int
    col_idx: np.ndarray  # (n, C) signal per column, S for an unused column
    col_gain: np.ndarray  # (n, C)
    dac_fs: np.ndarray  # (n, C)
    row_idx: np.ndarray  # (n*R,) output per row, O for an unused row
    row_gain: np.ndarray  # (n, R)
    adc_fs: np.ndarray  # (n, R)
    per_read: dict  # counter increments per stream


def _route(cb: Crossbar, name: str, cfg: CrossbarConfig) -> _Route:
    g, sl, tb = cb.groups[name], cb.arrays(name), cb.tables
    n_blk, (r, _) = g["blocks"], g["block_shape"]
    S = n_blk * (2 * g["modes"] + 1 if g["kind"] == "s4d" else g["block_shape"][1])
    O = n_blk * r
    cols, rows = tb["col_signal"][sl], tb["row_output"][sl]  # (n, C) (n, R)
    costs = {k: int(v[sl].sum()) for k, v in array_costs(cb.manifest, tb).items()}
    per_read = {"array_reads": sl.stop - sl.start, "dac_conversions": costs["dac_signals"],
                "dac_conversion_bits": costs["dac_signals"] * cfg.dac_bits,
                "adc_conversions": costs["adc_rows"],
                "adc_conversion_bits": costs["adc_rows"] * cfg.adc_bits,
                "analog_macs": costs["used_cells"],
                # a row gain per conversion, an add per extra partial sum, a bias per output
                "digital_ops": 2 * costs["adc_rows"] - O + (O if g["kind"] == "linear" else 0)}
    return _Route(sl, S, O, np.where(cols >= 0, cols, S), tb["col_gain"][sl], tb["dac_fs"][sl],
                  np.where(rows >= 0, rows, O).ravel(), tb["row_gain"][sl], tb["adc_fs"][sl],
                  per_read)


class ImssaStep:
    """One streaming step of a whole model on simulated crossbars; the interface of FloatStep.

    spec, weights: an integer bundle (weights.npz codes and scales) or a float one (its
    crossbar holds the weights programmed as CrossbarConfig.weight_bits-bit codes, recomputed
    here by qs4d.runtime.program to check the tables; the digital parts use the float
    weights). crossbar: a `crossbar/` folder (or a bundle folder) or a Crossbar from
    qs4d.export.crossbar.build_crossbar. cfg: the simulated non-idealities; its mapping fields
    must match the tables'.
    """

    def __init__(self, spec: Spec, weights: dict, crossbar, cfg: CrossbarConfig):
        self.cb = crossbar if isinstance(crossbar, Crossbar) else load_crossbar(crossbar)
        self.spec, self.cfg = spec, cfg
        codes = crossbar_codes(spec, weights, self.cb.config.weight_bits)[1]
        w = dequantize_weights(spec, weights) if spec.quant.integer else weights
        self.w = {k: np.asarray(v, F32) for k, v in w.items()}
        self.mapped = self._mapped_groups()
        self._check(codes)
        self.routes = {name: _route(self.cb, name, cfg) for name in self.mapped}
        self.reprogram(cfg.seed)
        self.reset_counters()

    def _mapped_groups(self) -> list:
        m, cfg, have = self.spec.model, self.cfg, self.cb.groups
        names = (["enc"] if "enc" in cfg.layers else []) + (["dec"] if "dec" in cfg.layers else [])
        for i in range(m.n_layers):
            names += [layer_key(i, k) for k in ("s4d", "mix") if k in cfg.layers]
        missing = [n for n in names if n not in have]
        if missing:
            raise ValueError(f"CrossbarConfig.layers {list(cfg.layers)}: the crossbar tables "
                             f"have no group {missing} (they map {sorted(have)})")
        return names

    def _check(self, weights: dict) -> None:
        """Tables built for this spec and these weights, with this geometry."""
        cfg, man, m = self.cfg, self.cb.manifest, self.spec.model
        for k in ("g_min", "g_max"):
            if man[k] != getattr(cfg, k):
                raise ValueError(f"CrossbarConfig.{k}: {getattr(cfg, k)} but the tables were "
                                 f"built with {man[k]}")
        if (man["array"]["rows"], man["array"]["cols"]) != (cfg.array_rows, cfg.array_cols):
            raise ValueError(f"CrossbarConfig.array_rows/cols: {cfg.array_rows}x{cfg.array_cols}"
                             f" but the tables hold {man['array']['rows']}x{man['array']['cols']}")
        if (cfg.dac_bits or cfg.adc_bits) and not man["calibration"]["calibrated"]:
            raise ValueError("CrossbarConfig.dac_bits/adc_bits: the crossbar tables have no "
                             "calibrated DAC/ADC ranges (manifest.json calibration.calibrated "
                             "is false); build them with calib_x")
        for i, P in enumerate(m.layer_modes):
            g = self.cb.groups.get(layer_key(i, "s4d"))
            if g is not None and (g["modes"], g["blocks"]) != (P, m.d_model):
                raise ValueError(f"crossbar group {g['name']}: P={g['modes']}, H={g['blocks']} "
                                 f"but the spec has P={P}, H={m.d_model}")
        codes = decode_codes(self.cb)
        for name in self.mapped:
            g = self.cb.groups[name]
            scales = decode_scales(g)
            for kind, key in g["keys"].items():
                want = np.asarray(weights[key], np.float64)
                s = np.broadcast_to(np.asarray(weights[key + ".scale"], np.float64),
                                    scales[kind].shape)
                if codes[key].shape != want.shape or not (
                        np.abs(codes[key] - want).max() <= g["level_error"][kind] + 1e-9
                        and np.allclose(scales[kind], s, rtol=1e-6, atol=0)):
                    raise ValueError(f"crossbar group {name}: the conductances do not hold "
                                     f"weights[{key!r}] (tables built from other weights?)")

    # ------------------------------------------------------------- devices
    def reprogram(self, seed: int) -> None:
        """Program every device: targets snapped onto the levels, programming noise (seeded),
        conductances clipped at 0; the clock restarts at t0 and the read noise is reseeded."""
        cfg, man, tb = self.cfg, self.cb.manifest, self.cb.tables
        step = level_steps(man, tb["cell_kind"], cfg.levels or man["levels"])  # (n, R, C)
        gp = snap(tb["G_plus"], man["g_min"], step)  # (n, R, C)
        gm = snap(tb["G_minus"], man["g_min"], step)  # (n, R, C)
        gp, gm = (np.clip(g, man["g_min"], man["g_max"]) for g in (gp, gm))
        if cfg.sigma_prog > 0:
            rng, sd = np.random.default_rng([seed, 0]), cfg.sigma_prog * self._span
            gp = np.maximum(gp + rng.normal(0.0, sd, gp.shape), 0.0)  # (n, R, C)
            gm = np.maximum(gm + rng.normal(0.0, sd, gm.shape), 0.0)  # (n, R, C)
        self._gp, self._gm, self._gdiff = gp, gm, gp - gm
        self._gsq = gp * gp + gm * gm if cfg.read_noise == "relative" else None  # (n, R, C)
        self._read_rng = np.random.default_rng([seed, 1])
        self.t = cfg.drift_t0

    @property
    def _span(self) -> float:
        return self.cfg.g_max - self.cfg.g_min

    def set_time(self, t: float) -> None:
        """Seconds since programming (drift reference t0 = cfg.drift_t0)."""
        if not t > 0:
            raise ValueError(f"set_time: t must be > 0 seconds, got {t}")
        self.t = float(t)

    def drift(self) -> float:
        """G(t) / G_prog = (t / t0)^-nu."""
        nu = self.cfg.drift_nu
        return float((self.t / self.cfg.drift_t0) ** -nu) if nu > 0 else 1.0

    def conductances(self, group: str) -> tuple:
        """Programmed G+, G- (n, R, C) of a group's arrays at the current time, in uS."""
        sl = self.cb.arrays(group)
        return self._gp[sl] * self.drift(), self._gm[sl] * self.drift()

    def read_conductances(self, group: str) -> tuple:
        """One noisy read of every device of a group: G(t) + N(0, sigma_read * span) each, or
        G(t) (1 + N(0, sigma_read)) with read_noise "relative"."""
        gp, gm = self.conductances(group)
        sig = self.cfg.sigma_read
        if sig > 0:
            sp = sm = sig * self._span
            if self.cfg.read_noise == "relative":
                sp, sm = sig * gp, sig * gm  # (n, R, C)
            gp = gp + self._read_rng.normal(0.0, 1.0, gp.shape) * sp  # (n, R, C)
            gm = gm + self._read_rng.normal(0.0, 1.0, gm.shape) * sm  # (n, R, C)
        return gp, gm

    # ------------------------------------------------------------- one matrix-vector product
    def drive(self, group: str, sig: np.ndarray) -> np.ndarray:
        """Column voltages (B, n, C) of signals (B, S): DAC on the signal, then the column gain."""
        rt = self.routes[group]
        pad = np.concatenate([np.asarray(sig, np.float64), np.zeros((len(sig), 1))], 1)  # (B, S+1)
        return convert(pad[:, rt.col_idx], rt.dac_fs, self.cfg.dac_bits) * rt.col_gain  # (B, n, C)

    def read(self, group: str, V: np.ndarray) -> np.ndarray:
        """Row currents (B, n, R) in uA; every stream is one read of every array of the group.
        Read noise is independent on G+ and on G- of every cell, fresh per read, so a row's
        current noise is exactly Gaussian and is sampled per row: with read_noise "span",
        N(0, sigma_read span) per device gives N(0, 2 (sigma_read span)^2 |V|^2); with
        "relative", N(0, sigma_read G(t)) per device gives
        N(0, sigma_read^2 sum_c (G+^2 + G-^2)(t) V_c^2)."""
        rt = self.routes[group]
        I = np.einsum("nrc,bnc->bnr", self._gdiff[rt.arrays], V, optimize=True)  # (B, n, R)
        d = self.drift()
        I *= d
        sig = self.cfg.sigma_read
        if sig > 0:
            if self.cfg.read_noise == "relative":
                var = np.einsum("nrc,bnc->bnr", self._gsq[rt.arrays], V * V, optimize=True)
                sd = sig * d * np.sqrt(var)  # (B, n, R)
            else:
                sd = np.sqrt(2.0) * sig * self._span * np.linalg.norm(V, axis=2, keepdims=True)
            I = I + self._read_rng.normal(0.0, 1.0, I.shape) * sd  # (B, n, R)
        return I

    def adc(self, group: str, I: np.ndarray) -> np.ndarray:
        """ADC of the row currents (B, n, R) with each row's calibrated full scale."""
        return convert(I, self.routes[group].adc_fs, self.cfg.adc_bits)  # (B, n, R)

    def gather(self, group: str, Iq: np.ndarray) -> np.ndarray:
        """Outputs (B, O): row gains, then the partial sums of split blocks added digitally."""
        rt = self.routes[group]
        B = len(Iq)
        y = (Iq * rt.row_gain).reshape(B, -1)  # (B, n*R)
        idx = (rt.row_idx[None] + (rt.O + 1) * np.arange(B)[:, None]).ravel()  # (B*n*R,)
        out = np.bincount(idx, weights=y.ravel(), minlength=B * (rt.O + 1))  # (B*(O+1),)
        return out.reshape(B, rt.O + 1)[:, : rt.O]  # (B, O)

    def mvm(self, group: str, sig: np.ndarray) -> np.ndarray:
        """A group's outputs (B, O) from its signals (B, S): drive, read, ADC, gather."""
        self._count(self.routes[group].per_read, len(sig))
        return self.gather(group, self.adc(group, self.read(group, self.drive(group, sig))))

    # ------------------------------------------------------------- the model step
    def init_state(self, batch: int) -> list:
        H = self.spec.model.d_model
        return [np.zeros((batch, H, 2 * P), F32) for P in self.spec.model.layer_modes]

    def __call__(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        return self.step(x, state)

    def step(self, x: np.ndarray, state: list, taps: dict | None = None) -> tuple:
        """(logits (B, K), new state); taps, when a dict, receives each mapped group's signals."""
        x = np.asarray(x, dtype=F32)  # (B, F)
        B = len(x)
        h = self._linear("enc", "enc", x, taps)  # (B, H)
        new_state = []
        for i, s in enumerate(state):
            u = h  # (B, H)
            y, s_new = self._s4d(i, u, s, taps)  # (B, H) (B, H, 2P)
            new_state.append(s_new)
            g = gelu(y)  # (B, H)
            z = self._linear(layer_key(i, "mix"), layer_key(i, "mix"), g, taps)  # (B, 2H)
            H = z.shape[-1] // 2
            o = z[:, :H] * sigmoid(z[:, H:])  # (B, H)
            h = (u + o).astype(F32)  # (B, H)
            self._count({"digital_ops": 4 * H}, B)  # GELU, sigmoid, GLU product, residual
        logits = self._linear("dec", "dec", h, taps)  # (B, K)
        self._count({"steps": 1}, 1)
        self.t += self.cfg.step_seconds
        return logits.astype(F32), new_state

    def _linear(self, prefix: str, group: str, x: np.ndarray, taps) -> np.ndarray:
        W, b = self.w[f"{prefix}.w"], self.w[f"{prefix}.b"]  # (O, S) (O,)
        if group not in self.routes:
            self._count({"digital_macs": W.size, "digital_ops": len(b)}, len(x))
            return x @ W.T + b  # (B, O)
        if taps is not None:
            taps[group] = np.asarray(x, np.float64)
        return (self.mvm(group, x) + b).astype(F32)  # (B, O)

    def _s4d(self, i: int, u: np.ndarray, s: np.ndarray, taps) -> tuple:
        """One S4D step of layer i: y (B, H) and the new state (B, H, 2P)."""
        k = lambda n: self.w[layer_key(i, n)]  # noqa: E731
        B, H, P2 = s.shape
        P, group = P2 // 2, layer_key(i, "s4d")
        if group in self.routes:
            sig = np.concatenate([s, u[..., None]], -1).reshape(B, H * (P2 + 1))  # (B, S)
            if taps is not None:
                taps[group] = sig.astype(np.float64)
            out = self.mvm(group, sig).reshape(B, H, P2 + 1)  # (B, H, 2P+1)
            return out[..., P2].astype(F32), out[..., :P2].astype(F32)
        self._count({"digital_macs": H * (8 * P + 1)}, B)
        A, Bm, C, D = k("A"), k("B"), k("C"), k("D")  # (H,2,P) (H,2,P) (H,2P) (H,)
        sr, si = s[..., :P], s[..., P:]  # (B, H, P)
        ar, ai = rotate(A[:, 0], A[:, 1], sr, si)  # (B, H, P)
        nr = ar + Bm[:, 0] * u[..., None]  # (B, H, P)
        ni = ai + Bm[:, 1] * u[..., None]  # (B, H, P)
        y = np.einsum("bhn,hn->bh", s, C) + D * u  # (B, H)
        return y, np.concatenate([nr, ni], axis=-1).astype(F32)

    # ------------------------------------------------------------- energy-model counters
    def _count(self, inc: dict, times: int) -> None:
        for k, v in inc.items():
            self._counters[k] += int(v) * times

    def counters(self) -> dict:
        """Totals since the last reset: array reads, DAC/ADC conversions and their bits,
        analog MACs (used cells per read), digital MACs and elementwise ops."""
        return dict(self._counters)

    def reset_counters(self) -> None:
        self._counters = {k: 0 for k in COUNTERS}
