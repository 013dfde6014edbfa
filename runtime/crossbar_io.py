"""The `crossbar/` folder of a bundle: block layout, tile expansion, loading and checks.

One definition of how an S4D step matrix or a linear layer becomes a block of differential
cells (docs/crossbar.md); `qs4d.export.crossbar` writes with it and `qs4d.runtime.imssa`
reads with it. Every per-array table of tables.npz is derivable from manifest.json (groups and
tile map); the loader recomputes them and refuses a folder where they disagree.

Glossary: H width, P modes, n arrays, R/C array rows/cols, S signals of a group (its input
vector), O outputs of a group, r/c rows/cols of one block.
S4D block of channel h, (2P+1) x (2P+2): rows [state Re, state Im, y], columns
[state Re, state Im, u_state, u_out]; signal h*(2P+1)+j is s[j] (j < 2P) or u (j = 2P);
output h*(2P+1)+r is s'[r] (r < 2P) or y (r = 2P). Linear block: W (out, in), one block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .spec import CROSSBAR_DIR, CrossbarConfig, SpecError

FORMAT = "qs4d.crossbar"
VERSION = 1
TABLES_FILE = "tables.npz"
MANIFEST_FILE = "manifest.json"
KINDS = ("zero", "A", "B", "C", "D", "W")  # cell_kind codes 0..5
KIND = {k: i for i, k in enumerate(KINDS)}
# tables.npz: name -> (axes, dtype); n arrays, r array rows, c array cols
TABLES = {
    "G_plus": ("nrc", np.float32), "G_minus": ("nrc", np.float32), "cell_kind": ("nrc", np.int8),
    "col_signal": ("nc", np.int32), "col_gain": ("nc", np.float64), "dac_fs": ("nc", np.float64),
    "row_output": ("nr", np.int32), "row_gain": ("nr", np.float64), "adc_fs": ("nr", np.float64),
}
ROUTING = ("cell_kind", "col_signal", "col_gain", "dac_fs", "row_output", "row_gain", "adc_fs")


class CrossbarError(SpecError):
    """A crossbar file or field is wrong; the message names the file and the field."""


# ------------------------------------------------------------------ block layout

def s4d_kinds(P: int) -> np.ndarray:
    """Cell kind of every cell of an S4D block."""
    k = np.zeros((2 * P + 1, 2 * P + 2), np.int8)  # (2P+1, 2P+2)
    p = np.arange(P)  # (P,)
    for r, c in ((p, p), (p, P + p), (P + p, p), (P + p, P + p)):
        k[r, c] = KIND["A"]
    k[: 2 * P, 2 * P], k[2 * P, : 2 * P], k[2 * P, 2 * P + 1] = KIND["B"], KIND["C"], KIND["D"]
    return k


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


def s4d_unblock(M: np.ndarray) -> dict:
    """Inverse of s4d_block on (H, 2P+1, 2P+2) blocks: {"A", "B", "C", "D"}."""
    H, r, _ = M.shape
    P = (r - 1) // 2
    p = np.arange(P)  # (P,)
    A = np.stack([M[:, p, p], M[:, P + p, p]], axis=1)  # (H, 2, P)
    B = M[:, : 2 * P, 2 * P].reshape(H, 2, P)  # (H, 2, P)
    return {"A": A, "B": B, "C": M[:, 2 * P, : 2 * P], "D": M[:, 2 * P, 2 * P + 1]}


def block_layout(g: dict) -> tuple:
    """(kinds (r, c), col_signal (c,), row_output (r,), S per block, O per block) of a group."""
    if g["kind"] == "s4d":
        P = g["modes"]
        col = np.r_[np.arange(2 * P), 2 * P, 2 * P]  # (2P+2,)
        return s4d_kinds(P), col, np.arange(2 * P + 1), 2 * P + 1, 2 * P + 1
    r, c = g["block_shape"]
    return np.full((r, c), KIND["W"], np.int8), np.arange(c), np.arange(r), c, r


def block_vectors(g: dict) -> tuple:
    """Per-block row gains (n_blk, r), column gains (n_blk, c); per-signal DAC full scale (S,),
    per-output ADC full scale (O,), from a group's compact manifest entries."""
    f = lambda d, k: np.asarray(d[k], np.float64)  # noqa: E731
    rg, cg, dac, adc = g["row_gain"], g["col_gain"], g["dac_fs"], g["adc_fs"]
    if g["kind"] == "s4d":
        P, H = g["modes"], g["blocks"]
        rows = np.c_[np.repeat(f(rg, "state")[:, None], 2 * P, 1), f(rg, "out")]  # (H, 2P+1)
        cols = np.c_[np.repeat(f(cg, "state")[:, None], 2 * P, 1), f(cg, "u_state"),
                     f(cg, "u_out")]  # (H, 2P+2)
        sig = np.c_[np.repeat(f(dac, "state")[:, None], 2 * P, 1),
                    np.full(H, f(dac, "u")[0])].ravel()  # (H*(2P+1),)
        out = np.c_[np.repeat(f(adc, "state")[:, None], 2 * P, 1), f(adc, "out")].ravel()
        return rows, cols, sig, out  # out: (H*(2P+1),)
    r, c = g["block_shape"]
    sig = np.full(c, f(dac, "in")[0])  # (c,)
    return f(rg, "out")[None], f(cg, "in")[None], sig, f(adc, "out")  # (1,r) (1,c) (c,) (r,)


def expand(man: dict) -> dict:
    """The per-array routing tables (ROUTING keys) that the groups and tile map define."""
    a = man["array"]
    n, R, C = a["count"], a["rows"], a["cols"]
    out = {"cell_kind": np.zeros((n, R, C), np.int8),  # (n, R, C)
           "col_signal": np.full((n, C), -1, np.int32), "row_output": np.full((n, R), -1, np.int32)}
    for k, m in (("col_gain", C), ("dac_fs", C), ("row_gain", R), ("adc_fs", R)):
        out[k] = np.zeros((n, m))  # (n, C) or (n, R)
    groups = {g["name"]: g for g in man["groups"]}
    cache: dict = {}
    for t in man["tiles"]:
        g = groups[t["group"]]
        if g["name"] not in cache:
            cache[g["name"]] = block_layout(g) + block_vectors(g)
        kinds, col, row, S, O, rgain, cgain, sig_fs, out_fs = cache[g["name"]]
        i = t["array"]
        for pl in t["placements"]:
            b, (r0, r1), (c0, c1), (ar, ac) = pl["block"], pl["rows"], pl["cols"], pl["at"]
            rs, cs = slice(ar, ar + r1 - r0), slice(ac, ac + c1 - c0)
            out["cell_kind"][i, rs, cs] = kinds[r0:r1, c0:c1]
            sig = b * S + col[c0:c1]  # (c1-c0,)
            out["col_signal"][i, cs], out["col_gain"][i, cs] = sig, cgain[b, c0:c1]
            out["dac_fs"][i, cs] = sig_fs[sig]
            dst = b * O + row[r0:r1]  # (r1-r0,)
            out["row_output"][i, rs], out["row_gain"][i, rs] = dst, rgain[b, r0:r1]
            out["adc_fs"][i, rs] = out_fs[dst]
    return out


def array_costs(man: dict, tables: dict) -> dict:
    """Per array and per read: ADC conversions (used rows), DAC conversions (distinct signals
    among used columns: u drives u_state and u_out from one conversion), used cells."""
    rows, cols = tables["row_output"], tables["col_signal"]  # (n, R) (n, C)
    dac = [len(np.unique(c[c >= 0])) for c in cols]
    return {"adc_rows": (rows >= 0).sum(1), "dac_signals": np.asarray(dac),
            "used_cells": np.asarray([t["used_cells"] for t in man["tiles"]], np.int64)}


def level_steps(man: dict, cell_kind: np.ndarray, levels: int) -> np.ndarray:
    """Conductance step between programmable levels of every device (n, R, C), in uS:
    (g_max - g_min)/(levels - 1) when levels > 0, else the cell's block delta_g."""
    span = man["g_max"] - man["g_min"]
    if levels > 0:
        return np.full(cell_kind.shape, span / (levels - 1))  # (n, R, C)
    step = np.full(cell_kind.shape, span)  # (n, R, C)
    groups = {g["name"]: g for g in man["groups"]}
    for t in man["tiles"]:
        step[t["array"]] = _delta_lut(groups[t["group"]], span)[cell_kind[t["array"]]]
    return step


def _delta_lut(g: dict, default: float) -> np.ndarray:
    """delta_g of a group indexed by cell kind (kinds,); `default` for kinds it lacks."""
    lut = np.full(len(KINDS), default)  # (kinds,)
    for k, v in g["delta_g"].items():
        lut[KIND[k]] = v
    return lut


def level_index(G: np.ndarray, g_min: float, step: np.ndarray) -> np.ndarray:
    """Index k of the nearest programmable level g_min + k * step (float64 integers)."""
    return np.rint((np.asarray(G, np.float64) - g_min) / step)


def snap(G: np.ndarray, g_min: float, step: np.ndarray) -> np.ndarray:
    """Nearest programmable level g_min + k * step of every conductance (float64)."""
    return g_min + level_index(G, g_min, step) * step


def decode_codes(cb: Crossbar, levels: int | None = None) -> dict:
    """Codes that the conductances represent, keyed as in weights.npz (float64: exact integers
    when the mapping is exact). Conductances are read as level indices k+, k- on the grid of
    `levels` (default: the manifest's); a cell's code is (k+ - k-) * step / delta_g."""
    man, tb = cb.manifest, cb.tables
    lv = man["levels"] if levels is None else levels
    step = level_steps(man, tb["cell_kind"], lv)  # (n, R, C)
    k = level_index(tb["G_plus"], man["g_min"], step) - level_index(tb["G_minus"], man["g_min"], step)
    out = {}
    for g in man["groups"]:
        kinds, lut = block_layout(g)[0], _delta_lut(g, 1.0)  # (r, c) (kinds,)
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


@dataclass(frozen=True)
class Crossbar:
    """Conductance tables (tables.npz arrays) and their manifest (manifest.json as a dict)."""

    manifest: dict
    tables: dict

    @property
    def config(self) -> CrossbarConfig:
        return CrossbarConfig.from_dict(self.manifest["config"])

    @property
    def groups(self) -> dict:
        return {g["name"]: g for g in self.manifest["groups"]}

    def tiles(self, group: str) -> list:
        return [t for t in self.manifest["tiles"] if t["group"] == group]

    def arrays(self, group: str) -> slice:
        a0, a1 = self.groups[group]["arrays"]
        return slice(a0, a1)


def load_crossbar(path) -> Crossbar:
    """Read and check a `crossbar/` folder (or a bundle folder holding one)."""
    d = Path(path)
    if (d / CROSSBAR_DIR).is_dir():
        d = d / CROSSBAR_DIR
    mp, tp = d / MANIFEST_FILE, d / TABLES_FILE
    try:
        man = json.loads(mp.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CrossbarError(f"{mp}: cannot read the manifest ({e})") from e
    try:
        with np.load(tp, allow_pickle=False) as z:
            tables = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CrossbarError(f"{tp}: cannot read the tables ({e})") from e
    cb = Crossbar(man, tables)
    check_crossbar(cb, str(d))
    for name in man.get("files", {}).get("csv", []):
        if not (d / name).is_file():
            raise CrossbarError(f"{mp}: files.csv: {name!r} is missing from {d}")
    return cb


# ------------------------------------------------------------------ checks

def _need(d, key: str, where: str, kind=None):
    if not isinstance(d, dict) or key not in d:
        raise CrossbarError(f"{where}: missing field {key!r}")
    v = d[key]
    if kind is not None and (not isinstance(v, kind) or isinstance(v, bool)):
        raise CrossbarError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, "
                            f"got {v!r}")
    return v


def _pair(d: dict, key: str, where: str) -> list:
    v = _need(d, key, where, list)
    if len(v) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise CrossbarError(f"{where}.{key}: expected two integers, got {v!r}")
    return v


def _vector_lengths(g: dict) -> dict:
    """Expected length of every compact gain / full-scale list of a group."""
    if g["kind"] == "s4d":
        H = g["blocks"]
        return {"row_gain": {"state": H, "out": H}, "adc_fs": {"state": H, "out": H},
                "col_gain": {"state": H, "u_state": H, "u_out": H},
                "dac_fs": {"state": H, "u": 1}}
    r, c = g["block_shape"]
    return {"row_gain": {"out": r}, "col_gain": {"in": c}, "dac_fs": {"in": 1}, "adc_fs": {"out": r}}


def _check_group(g: dict, n: int, w: str) -> None:
    for k in ("name", "kind", "keys", "delta_g"):
        _need(g, k, w)
    if g["kind"] not in ("s4d", "linear"):
        raise CrossbarError(f"{w}.kind: 's4d' or 'linear', got {g['kind']!r}")
    blocks, shape = _need(g, "blocks", w, int), _need(g, "block_shape", w, list)
    a0, a1 = _need(g, "arrays", w, list)
    if not 0 <= a0 < a1 <= n:
        raise CrossbarError(f"{w}.arrays: need 0 <= first < end <= {n}, got {[a0, a1]}")
    if g["kind"] == "s4d" and shape != [2 * _need(g, "modes", w, int) + 1, 2 * g["modes"] + 2]:
        raise CrossbarError(f"{w}.block_shape: {shape} does not fit modes {g['modes']}")
    if g["kind"] == "linear" and blocks != 1:
        raise CrossbarError(f"{w}.blocks: a linear group has 1 block, got {blocks}")
    for k, v in g["delta_g"].items():
        if k not in KIND or not v > 0:
            raise CrossbarError(f"{w}.delta_g.{k}: needs a known kind and a value > 0, got {v!r}")
    for field, lens in _vector_lengths(g).items():
        for k, length in lens.items():
            v = np.asarray(_need(_need(g, field, w), k, f"{w}.{field}"), np.float64)
            if v.shape != (length,) or not np.all(np.isfinite(v)):
                raise CrossbarError(f"{w}.{field}.{k}: expected {length} finite numbers, "
                                    f"got shape {v.shape}")


def _check_top(man: dict, w: str) -> None:
    if not isinstance(man, dict):
        raise CrossbarError(f"{w}: expected a JSON object, got {type(man).__name__}")
    if man.get("format") != FORMAT:
        raise CrossbarError(f"{w}.format: expected {FORMAT!r}, got {man.get('format')!r}")
    if man.get("version") != VERSION:
        raise CrossbarError(f"{w}.version: this qs4d reads {VERSION}, got {man.get('version')!r}")
    try:
        cfg = CrossbarConfig.from_dict(_need(man, "config", w), f"{w}.config")
    except SpecError as e:
        raise CrossbarError(str(e)) from e
    for k in ("g_min", "g_max", "levels"):
        if _need(man, k, w) != getattr(cfg, k):
            raise CrossbarError(f"{w}.{k}: {man[k]!r} differs from config.{k} {getattr(cfg, k)!r}")
    a = _need(man, "array", w, dict)
    for k in ("rows", "cols", "count"):
        if _need(a, k, f"{w}.array", int) < 1:
            raise CrossbarError(f"{w}.array.{k}: must be >= 1, got {a[k]}")
    if (a["rows"], a["cols"]) != (cfg.array_rows, cfg.array_cols):
        raise CrossbarError(f"{w}.array: {a['rows']}x{a['cols']} differs from the config")
    for i, g in enumerate(_need(man, "groups", w, list)):
        _check_group(g, a["count"], f"{w}.groups[{i}]")
    tiles = _need(man, "tiles", w, list)
    if [t.get("array") for t in tiles] != list(range(a["count"])):
        raise CrossbarError(f"{w}.tiles: need one entry per array 0..{a['count'] - 1} in order")


def _check_tables(man: dict, tb: dict, w: str) -> None:
    missing, extra = sorted(set(TABLES) - set(tb)), sorted(set(tb) - set(TABLES))
    if missing or extra:
        raise CrossbarError(f"{w}: missing arrays {missing}, unexpected arrays {extra}")
    a = man["array"]
    dims = {"n": a["count"], "r": a["rows"], "c": a["cols"]}
    for k, (axes, dt) in TABLES.items():
        want = tuple(dims[x] for x in axes)
        if tb[k].shape != want or tb[k].dtype != dt:
            raise CrossbarError(f"{w}: {k}: expected shape {want} {np.dtype(dt)}, "
                                f"got {tb[k].shape} {tb[k].dtype}")
        if tb[k].dtype.kind == "f" and not np.all(np.isfinite(tb[k])):
            raise CrossbarError(f"{w}: {k}: holds non-finite values")
    for k in ("G_plus", "G_minus"):
        lo, hi = tb[k].min(), tb[k].max()
        if lo < man["g_min"] or hi > man["g_max"]:
            raise CrossbarError(f"{w}: {k}: values in [{lo}, {hi}] uS leave "
                                f"[g_min, g_max] = [{man['g_min']}, {man['g_max']}]")


def _check_placements(man: dict, w: str) -> None:
    """Placements inside their block and array, block-diagonal, every block cell once."""
    a, groups = man["array"], {g["name"]: g for g in man["groups"]}
    cover = {k: np.zeros((g["blocks"], *g["block_shape"]), int) for k, g in groups.items()}
    for t in man["tiles"]:
        wt, g = f"{w}.tiles[{t['array']}]", groups.get(t.get("group"))
        if g is None or not g["arrays"][0] <= t["array"] < g["arrays"][1]:
            raise CrossbarError(f"{wt}.group: {t.get('group')!r} is not a group owning this array")
        rows_used, cols_used, cells = np.zeros(a["rows"], bool), np.zeros(a["cols"], bool), 0
        for j, pl in enumerate(_need(t, "placements", wt, list)):
            wp = f"{wt}.placements[{j}]"
            b = _need(pl, "block", wp, int)
            (r0, r1), (c0, c1), (ar, ac) = (_pair(pl, k, wp) for k in ("rows", "cols", "at"))
            (br, bc), h, wd = g["block_shape"], r1 - r0, c1 - c0
            if not (0 <= b < g["blocks"] and 0 <= r0 < r1 <= br and 0 <= c0 < c1 <= bc):
                raise CrossbarError(f"{wp}: block {b} rows {[r0, r1]} cols {[c0, c1]} leave "
                                    f"{g['blocks']} blocks of {br}x{bc}")
            if not (0 <= ar and ar + h <= a["rows"] and 0 <= ac and ac + wd <= a["cols"]):
                raise CrossbarError(f"{wp}.at: {[ar, ac]} + {h}x{wd} leaves the array")
            if rows_used[ar:ar + h].any() or cols_used[ac:ac + wd].any():
                raise CrossbarError(f"{wp}: shares array rows or columns with another placement")
            rows_used[ar:ar + h], cols_used[ac:ac + wd] = True, True
            cover[g["name"]][b, r0:r1, c0:c1] += 1
            cells += h * wd
        util = cells / (a["rows"] * a["cols"])
        if _need(t, "used_cells", wt) != cells or abs(_need(t, "utilization", wt) - util) > 1e-9:
            raise CrossbarError(f"{wt}: used_cells/utilization {t['used_cells']}/"
                                f"{t['utilization']} but the placements give {cells}/{util}")
    for k, c in cover.items():
        bad = np.argwhere(c != 1)
        if bad.size:
            raise CrossbarError(f"{w}.tiles: group {k} block cell {tuple(bad[0])} is placed "
                                f"{c[tuple(bad[0])]} times (need exactly once)")


def check_crossbar(cb: Crossbar, where: str = CROSSBAR_DIR) -> None:
    """Every field of a crossbar's manifest and tables, and their agreement."""
    wm, wt = f"{where}/{MANIFEST_FILE}", f"{where}/{TABLES_FILE}"
    _check_top(cb.manifest, wm)
    _check_tables(cb.manifest, cb.tables, wt)
    _check_placements(cb.manifest, wm)
    exp = expand(cb.manifest)
    for k in ROUTING:
        bad = np.argwhere(exp[k] != cb.tables[k])
        if bad.size:
            i = tuple(bad[0])
            raise CrossbarError(f"{wt}: {k}{list(i)} = {cb.tables[k][i]} but the groups and "
                                f"tile map of {wm} give {exp[k][i]}")
