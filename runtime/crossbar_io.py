"""The `crossbar/` folder of a bundle: block layout, tile expansion, loading and checks.

One definition of how an S4D step matrix or a linear layer becomes a block of differential
cells (docs/crossbar.md); `qs4d.export.crossbar` writes with it and `qs4d.runtime.imssa`
reads with it. tables.npz holds each device's level index k and per-array routing tables that
manifest.json (groups, tile map) defines; the loader recomputes the routing, rebuilds G = g_min +
k * step (`conductances`) and refuses a folder where anything disagrees or where a sparse CSV
does not read exactly as `csv_text` writes it.

Glossary: H width, P modes, n arrays, R/C array rows/cols, S signals of a group (its input
vector), O outputs of a group, r/c rows/cols of one block.
S4D block of channel h, (2P+1) x (2P+2): rows [state Re, state Im, y], columns
[state Re, state Im, u_state, u_out]; signal h*(2P+1)+j is s[j] (j < 2P) or u (j = 2P);
output h*(2P+1)+r is s'[r] (r < 2P) or y (r = 2P). Linear block: W (out, in), one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import safe_io
from .spec import CROSSBAR_DIR, CrossbarConfig, Spec, SpecError

FORMAT = "qs4d.crossbar"
VERSION = 2
TABLES_FILE = "tables.npz"
MANIFEST_FILE = "manifest.json"
CSV_COLUMNS = ("row", "col", "g_plus_uS", "g_minus_uS")
KINDS = ("zero", "A", "B", "C", "D", "W")  # cell_kind codes 0..5
KIND = {k: i for i, k in enumerate(KINDS)}
LEVELS = ("level_plus", "level_minus")  # in tables.npz: level index of G+ and G- (n, R, C)
G_KEYS = ("G_plus", "G_minus")  # in Crossbar.tables only: float32 uS rebuilt from the levels
# tables.npz: name -> (axes, dtype); n arrays, r array rows, c array cols; "u" any unsigned int
TABLES = {
    "level_plus": ("nrc", "u"), "level_minus": ("nrc", "u"), "cell_kind": ("nrc", np.int8),
    "col_signal": ("nc", np.int32), "col_gain": ("nc", np.float64), "dac_fs": ("nc", np.float64),
    "row_output": ("nr", np.int32), "row_gain": ("nr", np.float64), "adc_fs": ("nr", np.float64),
}
ROUTING = ("cell_kind", "col_signal", "col_gain", "dac_fs", "row_output", "row_gain", "adc_fs")
# Caps checked before anything is allocated: cells of all arrays together (the zoo's largest
# crossbar has 4.2 M; the simulator keeps about 40 bytes per cell), and array size.
MAX_CELLS = 1 << 24
MAX_ARRAY_SIDE = 4096
MAX_CSV_LINE = 64  # bytes of one CSV line "row,col,G+,G-\n" at most (two %.9g floats)


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


def delta_lut(g: dict, default: float) -> np.ndarray:
    """delta_g of a group indexed by cell kind (kinds,); `default` for kinds it lacks."""
    lut = np.full(len(KINDS), default)  # (kinds,)
    for k, v in g["delta_g"].items():
        lut[KIND[k]] = v
    return lut


def level_steps(man: dict, cell_kind: np.ndarray, levels: int) -> np.ndarray:
    """Conductance step between programmable levels of every device (n, R, C), in uS:
    (g_max - g_min)/(levels - 1) when levels > 0, else the cell's part delta_g."""
    span = man["g_max"] - man["g_min"]
    if levels > 0:
        return np.full(cell_kind.shape, span / (levels - 1))  # (n, R, C)
    step = np.full(cell_kind.shape, span)  # (n, R, C)
    groups = {g["name"]: g for g in man["groups"]}
    for t in man["tiles"]:
        step[t["array"]] = delta_lut(groups[t["group"]], span)[cell_kind[t["array"]]]
    return step


def to_f32(G: np.ndarray, g_min: float, g_max: float) -> np.ndarray:
    """float32 conductances, rounded inwards so that every value stays in [g_min, g_max]."""
    lo, hi = np.float32(g_min), np.float32(g_max)  # compared as float64 (NEP 50 would not)
    lo = lo if float(lo) >= g_min else np.nextafter(lo, hi)
    hi = hi if float(hi) <= g_max else np.nextafter(hi, lo)
    return np.clip(np.asarray(G, np.float64).astype(np.float32), lo, hi)  # (n, R, C)


def conductances(man: dict, tables: dict) -> tuple:
    """G+ and G- (n, R, C) float32 in uS of the level indices: g_min + k * step, rounded
    inwards (step: level_steps of the manifest's levels)."""
    step = level_steps(man, tables["cell_kind"], man["levels"])  # (n, R, C)
    return tuple(to_f32(man["g_min"] + tables[k] * step, man["g_min"], man["g_max"])
                 for k in LEVELS)  # (n, R, C) x2


def files_entry(n: int, g_min: float, g_max: float) -> dict:
    """manifest.files: tables.npz, the CSV of every array, its columns, and G+ = G- of the
    cells a CSV does not list (g_min as float32, rounded inwards)."""
    g0 = float(to_f32(np.float64(g_min), g_min, g_max))
    return {"tables": TABLES_FILE, "csv": [f"array_{a:03d}.csv" for a in range(n)],
            "csv_columns": list(CSV_COLUMNS), "csv_unlisted_uS": g0}


def csv_text(tables: dict, a: int) -> str:
    """The sparse CSV of array a: a header line, then `row,col,G+,G-` (uS, %.9g: the float32
    values exactly) of every cell with a device above level 0, in row-major order."""
    kp, km = (tables[k][a] for k in LEVELS)  # (R, C) x2
    r, c = np.nonzero((kp > 0) | (km > 0))  # (m,) x2
    gp, gm = (tables[k][a][r, c].tolist() for k in G_KEYS)
    rows = [f"{i},{j},{p:.9g},{q:.9g}" for i, j, p, q in zip(r.tolist(), c.tolist(), gp, gm)]
    return "\n".join([",".join(CSV_COLUMNS), *rows]) + "\n"


@dataclass(frozen=True)
class Crossbar:
    """manifest.json as a dict; tables: the TABLES arrays and G_plus, G_minus (n, R, C) in uS."""

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


def load_crossbar(path, spec: Spec | None = None) -> Crossbar:
    """Read and check a `crossbar/` folder (or a bundle folder holding one). With the bundle's
    spec, its groups must be those of the spec's layers (checked before any allocation)."""
    from .crossbar_check import _check_csv, _check_sizes, _check_top, _guard, check_crossbar

    d = Path(path)
    if (d / CROSSBAR_DIR).is_dir():
        d = d / CROSSBAR_DIR
    mp, tp = d / MANIFEST_FILE, d / TABLES_FILE
    wm = f"{d}/{MANIFEST_FILE}"
    man = safe_io.read_json(mp, CrossbarError, what="a crossbar manifest")
    _guard(_check_top, man, wm)
    _guard(_check_sizes, man, wm, spec)
    a = man["array"]
    dims = {"n": a["count"], "r": a["rows"], "c": a["cols"]}

    def check(key, shape, dtype):
        if key not in TABLES:
            return f"unexpected array (expected {sorted(TABLES)})"
        axes, dt = TABLES[key]
        want = tuple(dims[x] for x in axes)
        ok = dtype.kind == "u" if dt == "u" else dtype == np.dtype(dt)
        return None if shape == want and ok else f"expected shape {want} " \
            f"{'uint' if dt == 'u' else np.dtype(dt)}, got {shape} {dtype}"

    tables = safe_io.read_npz(tp, CrossbarError, check, max_bytes=24 * MAX_CELLS)
    check_crossbar(Crossbar(man, tables), str(d))
    cb = Crossbar(man, {**tables, **dict(zip(G_KEYS, conductances(man, tables)))})
    for i, name in enumerate(man["files"]["csv"]):
        _check_csv(d / name, csv_text(cb.tables, i))
    return cb

