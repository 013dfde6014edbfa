"""Integer weights -> memristive crossbar conductance tables (the bundle's `crossbar/` folder);
a float bundle's weights are programmed as codes first (qs4d.runtime.program).

Numpy only (never torch). The mapping, the files and their fields are described for a
hardware team in docs/crossbar.md; the block layout lives in `qs4d.runtime.crossbar_io`,
the codes of an S4D block come from `s4d_block` here. Every device is a level index k of
its cell's grid (G = g_min + k * step); tables.npz stores k, the CSVs the G it gives.

Glossary: B batch/streams, T steps, F features, H width, P modes, K classes; n arrays,
R/C array rows/cols, r/c block rows/cols, S signals and O outputs of a group.
Conductances in uS; a cell is a differential pair, weight = G+ - G-.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from qs4d.runtime.crossbar_check import check_crossbar
from qs4d.runtime.crossbar_io import (
    FORMAT,
    G_KEYS,
    KIND,
    LEVELS,
    MANIFEST_FILE,
    TABLES,
    TABLES_FILE,
    VERSION,
    Crossbar,
    block_layout,
    conductances,
    csv_text,
    expand,
    files_entry,
)
from qs4d.runtime.imssa import ImssaStep, array_costs, calibration_config
from qs4d.runtime.program import crossbar_codes
from qs4d.runtime.spec import CROSSBAR_DIR, CrossbarConfig, Spec, SpecError, layer_key

log = logging.getLogger(__name__)
HEADROOM = 1.1  # calibrated DAC/ADC full scales = headroom x the largest value seen
LAYOUT = {
    "s4d": "block (2P+1) x (2P+2) per channel; rows 0..2P-1 state s' = [Re; Im], row 2P "
           "output y; cols 0..2P-1 state s = [Re x; Im x], col 2P u_state, col 2P+1 u_out",
    "linear": "block W (out, in); rows outputs, cols inputs; bias added digitally",
    "signals": "s4d: signal h*(2P+1)+j = s[h, j] (j < 2P) or u[h] (j = 2P); linear: input j",
    "outputs": "s4d: output h*(2P+1)+r = s'[h, r] (r < 2P) or y[h] (r = 2P); linear: row o",
}


def s4d_block(A, B, C, D) -> np.ndarray:
    """Integer codes of the S4D blocks of every channel (A (H,2,P), B (H,2,P), C (H,2P), D (H,))."""
    A, B = np.asarray(A, np.int64), np.asarray(B, np.int64)
    H, _, P = A.shape
    M = np.zeros((H, 2 * P + 1, 2 * P + 2), np.int64)  # (H, 2P+1, 2P+2)
    p = np.arange(P)  # (P,)
    M[:, p, p], M[:, p, P + p] = A[:, 0], -A[:, 1]
    M[:, P + p, p], M[:, P + p, P + p] = A[:, 1], A[:, 0]
    M[:, : 2 * P, 2 * P] = B.reshape(H, 2 * P)
    M[:, 2 * P, : 2 * P] = np.asarray(C, np.int64)
    M[:, 2 * P, 2 * P + 1] = np.asarray(D, np.int64)
    return M


def _scale(w: dict, key: str, n: int) -> np.ndarray:
    """A per-tensor or per-channel scale as float64 (n,), checked > 0."""
    s = np.asarray(w[key], np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise SpecError(f"weights[{key!r}]: scales must be finite and > 0, got min {s.min()}")
    return np.broadcast_to(s, (n,)).copy()  # (n,)


def _full_scale(spec: Spec, kind: str, w: dict, key: str) -> int:
    """Largest |code| the quantizer of `kind` can produce; codes outside its range rejected."""
    q = spec.quant.weights if kind == "W" else getattr(spec.quant, kind)
    c = np.asarray(w[key])
    if c.dtype.kind not in "iu" or c.min() < q.qmin or c.max() > q.qmax:
        raise SpecError(f"weights[{key!r}]: need integer codes in [{q.qmin}, {q.qmax}], "
                        f"got {c.dtype} in [{c.min()}, {c.max()}]")
    return -q.qmin


def _s4d_group(spec: Spec, w: dict, i: int, span: float) -> tuple:
    """Manifest entry (without arrays/ranges) and codes (H, 2P+1, 2P+2) of S4D layer i."""
    H, P = spec.model.d_model, spec.model.layer_modes[i]
    keys = {k: layer_key(i, k) for k in "ABCD"}
    qfs = {k: _full_scale(spec, k, w, keys[k]) for k in keys}
    dg = {k: span / qfs[k] for k in keys}
    s = {k: _scale(w, keys[k] + ".scale", H) for k in keys}
    codes = s4d_block(*(w[keys[k]] for k in "ABCD"))  # (H, 2P+1, 2P+2)
    g = {"name": layer_key(i, "s4d"), "kind": "s4d", "layer": i, "keys": keys, "blocks": H,
         "modes": P, "block_shape": [2 * P + 1, 2 * P + 2],
         "row_gain": {"state": s["A"] / dg["A"], "out": s["C"] / dg["C"]},
         "col_gain": {"state": np.ones(H), "u_state": s["B"] / s["A"] * (dg["A"] / dg["B"]),
                      "u_out": s["D"] / s["C"] * (dg["C"] / dg["D"])},
         "dac_fs": {"state": np.zeros(H), "u": np.zeros(1)},
         "adc_fs": {"state": np.zeros(H), "out": np.zeros(H)}}
    return g, codes, qfs, dg


def _linear_group(spec: Spec, w: dict, prefix: str, name: str, span: float) -> tuple:
    """Manifest entry and codes (1, out, in) of a linear layer mapped as one block."""
    key = f"{prefix}.w"
    W = np.asarray(w[key], np.int64)  # (out, in)
    r, c = W.shape
    qfs = {"W": _full_scale(spec, "W", w, key)}
    dg = {"W": span / qfs["W"]}
    g = {"name": name, "kind": "linear", "layer": None, "keys": {"W": key}, "blocks": 1,
         "block_shape": [r, c], "row_gain": {"out": _scale(w, key + ".scale", r) / dg["W"]},
         "col_gain": {"in": np.ones(c)}, "dac_fs": {"in": np.zeros(1)},
         "adc_fs": {"out": np.zeros(r)}}
    return g, W[None], qfs, dg


def _plan(spec: Spec, w: dict, cfg: CrossbarConfig) -> list:
    """(group entry, codes, full scales, delta_g) of every group cfg.layers maps, in order."""
    span, m, out = cfg.g_max - cfg.g_min, spec.model, []
    if "enc" in cfg.layers:
        out.append(_linear_group(spec, w, "enc", "enc", span))
    for i in range(m.n_layers):
        if "s4d" in cfg.layers:
            out.append(_s4d_group(spec, w, i, span))
        if "mix" in cfg.layers:
            out.append(_linear_group(spec, w, layer_key(i, "mix"), layer_key(i, "mix"), span))
    if "dec" in cfg.layers:
        out.append(_linear_group(spec, w, "dec", "dec", span))
    return out


def _pieces(blocks: int, shape: list, R: int, C: int) -> list:
    """A block larger than an array split into row slices and column slices."""
    r, c = shape
    return [(b, [r0, min(r0 + R, r)], [c0, min(c0 + C, c)])
            for b in range(blocks) for r0 in range(0, r, R) for c0 in range(0, c, C)]


def _pack(pieces: list, R: int, C: int) -> list:
    """First fit along each array's diagonal: placements never share rows or columns."""
    arrays: list = []  # [next free row, next free col, placements]
    for b, rows, cols in pieces:
        h, wd = rows[1] - rows[0], cols[1] - cols[0]
        slot = next((a for a in arrays if a[0] + h <= R and a[1] + wd <= C), None)
        if slot is None:
            slot = [0, 0, []]
            arrays.append(slot)
        slot[2].append({"block": b, "rows": rows, "cols": cols, "at": [slot[0], slot[1]]})
        slot[0], slot[1] = slot[0] + h, slot[1] + wd
    return [a[2] for a in arrays]


def _levels(codes: np.ndarray, kinds: np.ndarray, dg: dict, cfg: CrossbarConfig) -> tuple:
    """Level indices k+ / k- (n_blk, r, c) of the differential pair, G = g_min + k * step, and
    the worst code error per part. levels 0: k = max(+-code, 0) on the part's grid delta_g;
    levels L: the nearest of L levels, step (g_max - g_min) / (L - 1)."""
    kp, km = np.maximum(codes, 0), np.maximum(-codes, 0)  # (n_blk, r, c) x2
    if cfg.levels == 0:
        return kp, km, {k: 0.0 for k in dg}
    delta = np.ones(len(KIND))  # (kinds,)
    for k, v in dg.items():
        delta[KIND[k]] = v
    d, step = delta[kinds], (cfg.g_max - cfg.g_min) / (cfg.levels - 1)  # (r, c), uS
    kp, km = (np.clip(np.rint(k * d / step), 0, cfg.levels - 1) for k in (kp, km))
    e = np.abs((kp - km) * step / d - codes)  # (n_blk, r, c)
    return kp, km, {k: float(e[:, kinds == KIND[k]].max()) for k in dg}


def _jsonable(g: dict) -> dict:
    return {k: ({kk: np.asarray(vv).tolist() for kk, vv in v.items()}
                if k in ("row_gain", "col_gain", "dac_fs", "adc_fs") else v) for k, v in g.items()}


def build_crossbar(spec: Spec, weights: dict, cfg: CrossbarConfig,
                   calib_x: np.ndarray | None = None, headroom: float = HEADROOM) -> Crossbar:
    """Conductance tables of a bundle's weights: an integer bundle's own codes, a float
    bundle's weights programmed as cfg.weight_bits-bit codes (runtime/program.py); DAC/ADC
    ranges calibrated on calib_x (T, B, F) when given (else left at 0 and marked
    uncalibrated)."""
    if not cfg.layers:
        raise SpecError("CrossbarConfig.layers: empty; name at least one of s4d, mix, enc, dec")
    code_spec, codes_w = crossbar_codes(spec, weights, cfg.weight_bits)
    R, C = cfg.array_rows, cfg.array_cols
    groups, tiles, blocks_g = [], [], {}
    for g, codes, qfs, dg in _plan(code_spec, codes_w, cfg):
        kinds = block_layout(g)[0]  # (r, c)
        kp, km, err = _levels(codes, kinds, dg, cfg)  # (n_blk, r, c) x2
        placed = _pack(_pieces(g["blocks"], g["block_shape"], R, C), R, C)
        a0 = len(tiles)
        for j, pls in enumerate(placed):
            cells = sum((p["rows"][1] - p["rows"][0]) * (p["cols"][1] - p["cols"][0]) for p in pls)
            tiles.append({"array": a0 + j, "group": g["name"], "placements": pls,
                          "used_cells": cells, "utilization": cells / (R * C)})
        g.update(arrays=[a0, len(tiles)], delta_g=dg, code_full_scale=qfs,
                 device_levels={k: (v + 1 if cfg.levels == 0 else cfg.levels)
                                for k, v in qfs.items()}, level_error=err)
        groups.append(_jsonable(g))
        blocks_g[g["name"]] = (kp, km)
    man = _manifest(cfg, groups, tiles, headroom)
    tables = _tables(man, blocks_g)
    cb = Crossbar(man, tables)
    if calib_x is not None:
        cb = calibrate(cb, spec, weights, calib_x, headroom)
    _summarize(cb)
    check_crossbar(cb, "build_crossbar")
    return cb


def _manifest(cfg: CrossbarConfig, groups: list, tiles: list, headroom: float) -> dict:
    n = len(tiles)
    return {
        "format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
        "g_min": cfg.g_min, "g_max": cfg.g_max, "levels": cfg.levels,
        "units": {"G": "uS", "V": "signal x column gain (1 signal unit = 1 V)", "I": "uA"},
        "array": {"rows": cfg.array_rows, "cols": cfg.array_cols, "count": n},
        "kinds": {str(i): k for k, i in KIND.items()}, "layout": LAYOUT,
        "groups": groups, "tiles": tiles,
        "calibration": {"calibrated": False, "headroom": headroom, "x_layout": "(T, B, F)",
                        "steps": 0, "streams": 0},
        "files": files_entry(n, cfg.g_min, cfg.g_max),
    }


def _tables(man: dict, blocks_g: dict) -> dict:
    """The routing expanded from the tile map, the level indices copied piece by piece (the
    smallest unsigned dtype that holds them), and the conductances they give."""
    a = man["array"]
    kp = np.zeros((a["count"], a["rows"], a["cols"]), np.int64)  # (n, R, C)
    km = kp.copy()  # (n, R, C)
    for t in man["tiles"]:
        bp, bm = blocks_g[t["group"]]
        for pl in t["placements"]:
            (r0, r1), (c0, c1), (ar, ac) = pl["rows"], pl["cols"], pl["at"]
            cell = (t["array"], slice(ar, ar + r1 - r0), slice(ac, ac + c1 - c0))
            kp[cell] = bp[pl["block"], r0:r1, c0:c1]
            km[cell] = bm[pl["block"], r0:r1, c0:c1]
    dt = np.min_scalar_type(max(int(kp.max(initial=0)), int(km.max(initial=0))))
    tables = {"level_plus": kp.astype(dt), "level_minus": km.astype(dt), **expand(man)}
    return {**tables, **dict(zip(G_KEYS, conductances(man, tables)))}


def _summarize(cb: Crossbar) -> None:
    """Totals per read of every array once (per stream and step) into the manifest."""
    man = cb.manifest
    costs = array_costs(man, cb.tables)
    for t in man["tiles"]:
        i = t["array"]
        t["adc_conversions"] = int(costs["adc_rows"][i])
        t["dac_conversions"] = int(costs["dac_signals"][i])
    a = man["array"]
    used = sum(t["used_cells"] for t in man["tiles"])
    man["totals"] = {"arrays": a["count"], "used_cells": used,
                     "utilization": used / (a["count"] * a["rows"] * a["cols"]),
                     "programmed_cells": int((cb.tables["cell_kind"] > 0).sum()),
                     "nonzero_cells": int(np.logical_or(*(cb.tables[k] > 0 for k in LEVELS))
                                          .sum()),
                     "reads_per_step": a["count"],
                     "adc_conversions_per_step": int(costs["adc_rows"].sum()),
                     "dac_conversions_per_step": int(costs["dac_signals"].sum())}
    log.info("crossbar: %d arrays of %dx%d, utilization %.3f", a["count"], a["rows"],
             a["cols"], man["totals"]["utilization"])


def calibrate(cb: Crossbar, spec: Spec, weights: dict, calib_x: np.ndarray,
              headroom: float = HEADROOM) -> Crossbar:
    """DAC and ADC full scales from data: calib_x (T, B, F) runs through the ideal simulator
    (equal to reference.FloatStep on dequantized weights); per group the largest |signal| of
    every DAC range group and |current| of every ADC row group, times headroom."""
    if not headroom > 0:
        raise SpecError(f"calibrate: headroom must be > 0, got {headroom}")
    x = np.asarray(calib_x, np.float32)  # (T, B, F)
    if x.ndim != 3 or x.shape[2] != spec.model.d_input:
        raise SpecError(f"calib_x: expected shape (T, B, {spec.model.d_input}), got {x.shape}")
    sim = ImssaStep(spec, weights, cb, calibration_config(cb))
    sig_max = {name: 0.0 for name in cb.groups}
    cur_max = np.zeros(cb.tables["row_output"].shape)  # (n, R)
    state = sim.init_state(x.shape[1])
    for t in range(x.shape[0]):
        taps: dict = {}
        _, state = sim.step(x[t], state, taps)
        for name, sig in taps.items():
            sig_max[name] = np.maximum(sig_max[name], np.abs(sig).max(0))  # (S,)
            cur = np.abs(sim.read(name, sim.drive(name, sig))).max(0)  # (n_g, R)
            cur_max[cb.arrays(name)] = np.maximum(cur_max[cb.arrays(name)], cur)
    man = json.loads(json.dumps(cb.manifest))
    for g in man["groups"]:
        _set_ranges(g, cb, sig_max[g["name"]], cur_max, headroom)
    man["calibration"].update(calibrated=True, headroom=headroom, steps=int(x.shape[0]),
                              streams=int(x.shape[1]))
    return Crossbar(man, {**cb.tables, **expand(man)})


def _set_ranges(g: dict, cb: Crossbar, sig: np.ndarray, cur: np.ndarray, hr: float) -> None:
    """Fill a group's compact dac_fs / adc_fs from signal maxima (S,) and row maxima (n, R)."""
    _, _, _, S, O = block_layout(g)
    rows = cb.tables["row_output"][cb.arrays(g["name"])]  # (n_g, R)
    out = np.zeros(g["blocks"] * O)  # (O,)
    np.maximum.at(out, rows[rows >= 0], cur[cb.arrays(g["name"])][rows >= 0])
    sig = np.broadcast_to(sig, (g["blocks"] * S,)).reshape(g["blocks"], S) * hr  # (n_blk, S)
    out = out.reshape(g["blocks"], O) * hr  # (n_blk, O)
    if g["kind"] == "s4d":
        g["dac_fs"] = {"state": sig[:, :-1].max(1).tolist(), "u": [float(sig[:, -1].max())]}
        g["adc_fs"] = {"state": out[:, :-1].max(1).tolist(), "out": out[:, -1].tolist()}
    else:
        g["dac_fs"] = {"in": [float(sig.max())]}
        g["adc_fs"] = {"out": out[0].tolist()}


def write_crossbar(bundle_dir, crossbar: Crossbar) -> Path:
    """Write `crossbar/` (tables.npz compressed, one sparse CSV per array, manifest.json) into
    a bundle folder, removing stale array CSVs of an earlier export; returns the folder."""
    d = Path(bundle_dir) / CROSSBAR_DIR
    d.mkdir(parents=True, exist_ok=True)
    check_crossbar(crossbar, str(d))
    names = crossbar.manifest["files"]["csv"]
    for old in sorted(set(p.name for p in d.glob("array_*.csv")) - set(names)):
        (d / old).unlink()
    np.savez_compressed(d / TABLES_FILE, **{k: crossbar.tables[k] for k in TABLES})
    for a, name in enumerate(names):
        (d / name).write_text(csv_text(crossbar.tables, a), newline="\n")
    (d / MANIFEST_FILE).write_text(json.dumps(crossbar.manifest, indent=1))
    log.info("wrote %s", d)
    return d
