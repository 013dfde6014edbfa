"""Validation of a crossbar folder (`crossbar_io.load_crossbar` calls these before and after
reading it): the manifest's top level and declared sizes against the spec and caps, the CSV
files, the tables, the levels and the placement of every block. Each failure is a
`CrossbarError` naming the file and field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .crossbar_io import (
    CSV_COLUMNS,
    FORMAT,
    G_KEYS,
    KINDS,
    LEVELS,
    MANIFEST_FILE,
    MAX_ARRAY_SIDE,
    MAX_CELLS,
    MAX_CSV_LINE,
    ROUTING,
    TABLES,
    TABLES_FILE,
    VERSION,
    Crossbar,
    CrossbarError,
    expand,
    files_entry,
    level_steps,
)
from .spec import CROSSBAR_DIR, CrossbarConfig, Spec, SpecError, layer_key


def _guard(check, man, where: str, *args) -> None:
    """Run one structural check; a field of the wrong type or shape is a CrossbarError."""
    try:
        check(man, where, *args)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError, OverflowError) as e:
        if isinstance(e, CrossbarError):
            raise
        raise CrossbarError(f"{where}: malformed ({type(e).__name__}: {e})") from None


def _check_csv(p: Path, want: str) -> None:
    """An array's CSV must hold exactly the text that the tables give."""
    try:
        if p.stat().st_size > len(want) + MAX_CSV_LINE:
            raise CrossbarError(f"{p}: {p.stat().st_size} bytes, but {TABLES_FILE} gives "
                                f"{len(want)}")
        got = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CrossbarError(f"{p}: cannot read the array's CSV ({e})") from e
    if got != want:
        g, w = got.splitlines() + ["end of file"], want.splitlines() + ["end of file"]
        i = next((i for i, (x, y) in enumerate(zip(g, w)) if x != y), None)
        raise CrossbarError(f"{p}: differs in line breaks (each line ends in \\n)" if i is None else
                            f"{p}: line {i + 1} ({'header' if i == 0 else ','.join(CSV_COLUMNS)}):"
                            f" {g[i]!r} but {TABLES_FILE} gives {w[i]!r}")


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
                "col_gain": {"state": H, "u_state": H, "u_out": H}, "dac_fs": {"state": H, "u": 1}}
    r, c = g["block_shape"]
    return {"row_gain": {"out": r}, "col_gain": {"in": c}, "dac_fs": {"in": 1}, "adc_fs": {"out": r}}


def _check_group(g: dict, n: int, span: float, w: str) -> None:
    _need(g, "name", w)
    parts = {"s4d": ["A", "B", "C", "D"], "linear": ["W"]}.get(_need(g, "kind", w, str))
    if parts is None:
        raise CrossbarError(f"{w}.kind: 's4d' or 'linear', got {g['kind']!r}")
    for k in ("keys", "delta_g", "code_full_scale"):
        if sorted(_need(g, k, w, dict)) != parts:
            raise CrossbarError(f"{w}.{k}: expected the parts {parts}, got {sorted(g[k])}")
    for k in parts:
        q, dg = _need(g["code_full_scale"], k, f"{w}.code_full_scale", int), g["delta_g"][k]
        if q < 1 or not isinstance(dg, (int, float)) or abs(dg * q - span) > 1e-9 * span:
            raise CrossbarError(f"{w}.delta_g.{k}: need (g_max - g_min) / code_full_scale = "
                                f"{span} / {q}, got {dg!r}")
    blocks, shape = _need(g, "blocks", w, int), _pair(g, "block_shape", w)
    if blocks < 1 or min(shape) < 1 or blocks * shape[0] * shape[1] > MAX_CELLS:
        raise CrossbarError(f"{w}.blocks/block_shape: {blocks} blocks of {shape}: need >= 1 "
                            f"and at most {MAX_CELLS} cells")
    a0, a1 = _pair(g, "arrays", w)
    if not 0 <= a0 < a1 <= n:
        raise CrossbarError(f"{w}.arrays: need 0 <= first < end <= {n}, got {[a0, a1]}")
    if g["kind"] == "s4d" and shape != [2 * _need(g, "modes", w, int) + 1, 2 * g["modes"] + 2]:
        raise CrossbarError(f"{w}.block_shape: {shape} does not fit modes {g['modes']}")
    if g["kind"] == "linear" and blocks != 1:
        raise CrossbarError(f"{w}.blocks: a linear group has 1 block, got {blocks}")
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
        raise CrossbarError(str(e) if str(e).startswith(w) else f"{w}.config: {e}") from e
    for k in ("g_min", "g_max", "levels"):
        if _need(man, k, w) != getattr(cfg, k):
            raise CrossbarError(f"{w}.{k}: {man[k]!r} differs from config.{k} {getattr(cfg, k)!r}")
    a = _need(man, "array", w, dict)
    for k in ("rows", "cols", "count"):
        if _need(a, k, f"{w}.array", int) < 1:
            raise CrossbarError(f"{w}.array.{k}: must be >= 1, got {a[k]}")
    if (a["rows"], a["cols"]) != (cfg.array_rows, cfg.array_cols):
        raise CrossbarError(f"{w}.array: {a['rows']}x{a['cols']} differs from the config")
    if max(a["rows"], a["cols"]) > MAX_ARRAY_SIDE or a["count"] * a["rows"] * a["cols"] > MAX_CELLS:
        raise CrossbarError(f"{w}.array: {a['count']} arrays of {a['rows']}x{a['cols']}, more "
                            f"than the {MAX_CELLS} cells (sides of {MAX_ARRAY_SIDE}) allowed")
    tiles = _need(man, "tiles", w, list)
    if len(tiles) != a["count"] or [t.get("array") for t in tiles] != list(range(a["count"])):
        raise CrossbarError(f"{w}.tiles: need one entry per array 0..{a['count'] - 1} in order")
    for i, g in enumerate(_need(man, "groups", w, list)):
        _check_group(g, a["count"], cfg.g_max - cfg.g_min, f"{w}.groups[{i}]")
    files = _need(man, "files", w, dict)
    for k, v in files_entry(a["count"], cfg.g_min, cfg.g_max).items():
        if _need(files, k, f"{w}.files") != v:
            raise CrossbarError(f"{w}.files.{k}: expected {v!r:.80}, got {files[k]!r:.80}")


def _check_sizes(man: dict, w: str, spec: Spec | None) -> None:
    """All groups' block cells together within MAX_CELLS; with a spec, the groups are layers
    of it with its shapes (an S4D group: P modes, H blocks; a linear one: its weight)."""
    groups = man["groups"]
    if sum(g["blocks"] * g["block_shape"][0] * g["block_shape"][1] for g in groups) > MAX_CELLS:
        raise CrossbarError(f"{w}.groups: more than {MAX_CELLS} block cells")
    if spec is None:
        return
    m = spec.model
    want = {"enc": [m.d_model, m.d_input], "dec": [m.n_classes, m.d_model]}
    for i, P in enumerate(m.layer_modes):
        want[layer_key(i, "s4d")] = (P, m.d_model)
        want[layer_key(i, "mix")] = [2 * m.d_model, m.d_model]
    seen = set()
    for j, g in enumerate(groups):
        name, wg = g["name"], f"{w}.groups[{j}]"
        if name not in want or name in seen:
            raise CrossbarError(f"{wg}.name: {name!r} is not a layer of the spec (or repeated)")
        seen.add(name)
        got = (g.get("modes"), g["blocks"]) if g["kind"] == "s4d" else g["block_shape"]
        if name.endswith(".s4d") != (g["kind"] == "s4d") or got != want[name]:
            raise CrossbarError(f"{wg}: {name} is {g['kind']} {got}, but the spec gives "
                                f"{want[name]}")


def _check_tables(man: dict, tb: dict, w: str) -> None:
    """Every TABLES array with its shape and dtype (G_plus/G_minus may be present too)."""
    missing, extra = sorted(set(TABLES) - set(tb)), sorted(set(tb) - set(TABLES) - set(G_KEYS))
    if missing or extra:
        raise CrossbarError(f"{w}: missing arrays {missing}, unexpected arrays {extra}")
    a = man["array"]
    dims = {"n": a["count"], "r": a["rows"], "c": a["cols"]}
    for k, (axes, dt) in TABLES.items():
        want, dts = tuple(dims[x] for x in axes), "uint" if dt == "u" else np.dtype(dt)
        if tb[k].shape != want or not (tb[k].dtype.kind == "u" if dt == "u" else tb[k].dtype == dt):
            raise CrossbarError(f"{w}: {k}: expected shape {want} {dts}, "
                                f"got {tb[k].shape} {tb[k].dtype}")
        if tb[k].dtype.kind == "f" and not np.all(np.isfinite(tb[k])):
            raise CrossbarError(f"{w}: {k}: holds non-finite values")


def _check_levels(man: dict, tb: dict, w: str) -> None:
    """Level indices from 0 to each device's top level (q_X of its part with levels 0, else
    levels - 1), and 0 on unused and structural-zero cells: G lies in [g_min, g_max]."""
    step = level_steps(man, tb["cell_kind"], man["levels"])  # (n, R, C)
    top = np.where(tb["cell_kind"] > 0, np.rint((man["g_max"] - man["g_min"]) / step), 0)
    for k in LEVELS:
        bad = np.argwhere(tb[k] > top)
        if bad.size:
            i = tuple(bad[0])
            raise CrossbarError(f"{w}: {k}{[int(x) for x in i]} = {tb[k][i]} is above the top "
                                f"level {int(top[i])} of its cell ({KINDS[tb['cell_kind'][i]]})")


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
    _guard(_check_top, cb.manifest, wm)
    _guard(_check_sizes, cb.manifest, wm, None)
    _check_tables(cb.manifest, cb.tables, wt)
    _guard(_check_placements, cb.manifest, wm)
    exp = expand(cb.manifest)
    for k in ROUTING:
        bad = np.argwhere(exp[k] != cb.tables[k])
        if bad.size:
            i = tuple(bad[0])
            raise CrossbarError(f"{wt}: {k}{[int(x) for x in i]} = {cb.tables[k][i]} but the "
                                f"groups and tile map of {wm} give {exp[k][i]}")
    _check_levels(cb.manifest, cb.tables, wt)
