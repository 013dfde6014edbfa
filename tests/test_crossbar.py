"""Crossbar tables: conductance round trip, levels, tile map, files and the loader's checks.

Glossary: T steps, B streams, F features, H width, P modes; n arrays, R/C array rows/cols.
The helpers make_spec / make_weights / build also serve tests/test_imssa.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from qs4d.export.crossbar import build_crossbar, s4d_block, write_crossbar
from qs4d.runtime.crossbar_io import (
    CSV_COLUMNS,
    KIND,
    TABLES,
    CrossbarError,
    block_layout,
    load_crossbar,
)
from qs4d.runtime.imssa import decode_codes
from qs4d.runtime.spec import CrossbarConfig, ModelConfig, QuantConfig, Spec, weight_shapes

ALL = ("s4d", "mix", "enc", "dec")


def make_spec(modes=(4, 40), H=8, F=3, K=5, bits=8, per_channel=True, weight_bits=None) -> Spec:
    m = ModelConfig(d_input=F, d_model=H, d_state=2 * max(modes), n_layers=len(modes),
                    n_classes=K, modes=tuple(modes))
    q = QuantConfig.uniform(bits, per_channel=per_channel, weight_bits=weight_bits)
    return Spec(model=m, quant=q)


def _group(key: str) -> str:
    name = key.split(".")[-1] if key.count(".") == 1 and key[0] == "l" else key
    return name if name in ("A", "B", "C", "D") else "weights"


def _stable_A(rng, q, H: int, P: int) -> np.ndarray:
    """Codes of |A| in [0.5, 0.9] (a stable recurrence with scale ~1/qmax)."""
    rho, th = rng.uniform(0.5, 0.9, (H, P)), rng.uniform(-np.pi, np.pi, (H, P))
    return np.stack([np.rint(rho * np.cos(th) * q.qmax), np.rint(rho * np.sin(th) * q.qmax)], 1)


def make_weights(spec: Spec, seed: int = 0) -> dict:
    """Random integer weights of every key of weight_shapes(spec), valid codes and scales."""
    rng, q, w = np.random.default_rng(seed), spec.quant, {}
    H = spec.model.d_model
    for key, (shape, kind) in weight_shapes(spec).items():
        if kind == "code":
            qs = getattr(q, _group(key)) if _group(key) != "weights" else q.weights
            if key.endswith(".A"):
                codes = _stable_A(rng, qs, H, shape[2])
            else:
                codes = rng.integers(qs.qmin, qs.qmax + 1, shape)
            w[key] = codes.astype(np.int16 if qs.bits > 8 else np.int8)
        elif kind == "acc":
            w[key] = rng.integers(-2000, 2001, shape).astype(np.int32)
        elif kind == "table":
            w[key] = rng.integers(-100, 100, shape).astype(np.int32)
        else:
            w[key] = _scale_for(key, shape, q, rng)
    return w


def _scale_for(key: str, shape: tuple, q: QuantConfig, rng) -> np.ndarray:
    base = {"A": 0.99 / q.A.qmax, "B": 0.5 / q.B.qmax, "C": 0.3 / q.C.qmax, "D": 0.5 / q.D.qmax}
    g = key.split(".")[-2] if key.endswith(".scale") else ""
    b = base.get(g, 0.3 / max(q.weights.qmax, 1) if ".w." in key + "." else 0.05)
    if g == "A":
        return np.full(shape, b, np.float32) * rng.uniform(0.95, 1.0, shape).astype(np.float32)
    return (b * rng.uniform(0.7, 1.3, shape)).astype(np.float32)


def calib(spec: Spec, T: int = 60, B: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (T, B, spec.model.d_input)).astype(np.float32)


# ------------------------------------------------------------------ conductances


@pytest.mark.parametrize("bits,per_channel,wbits", [(8, True, None), (4, False, 2), (6, True, 3)])
def test_round_trip_exact_and_in_range(bits, per_channel, wbits):
    spec = make_spec((3, 20), bits=bits, per_channel=per_channel, weight_bits=wbits)
    w = make_weights(spec, seed=bits)
    w["l1.C"][0, 0] = spec.quant.C.qmin  # the most negative code: G- at g_max
    cfg = CrossbarConfig(g_min=2.0, g_max=37.3, array_rows=32, array_cols=32, layers=ALL)
    cb = build_crossbar(spec, w, cfg)
    for k in ("G_plus", "G_minus"):
        assert cb.tables[k].dtype == np.float32
        assert cb.tables[k].min() >= cfg.g_min and cb.tables[k].max() <= cfg.g_max
    top = max(q for g in cb.manifest["groups"] for q in g["code_full_scale"].values())
    for k in ("level_plus", "level_minus"):  # stored: the smallest dtype holding q_X
        assert cb.tables[k].dtype == np.min_scalar_type(top) and cb.tables[k].max() <= top
    codes = decode_codes(cb)
    keys = [k for k, (_, kind) in weight_shapes(spec).items() if kind == "code"]
    assert sorted(codes) == sorted(keys)
    for k in keys:
        np.testing.assert_array_equal(codes[k], np.asarray(w[k], np.float64), err_msg=k)
    assert cb.tables["G_minus"].max() == np.float32(cfg.g_max)  # 37.3 -> 37.29999924 (inward)
    assert cb.tables["G_plus"].min() == np.float32(cfg.g_min)


def test_levels_lossy_bounded():
    spec = make_spec((4, 12), bits=8)
    w = make_weights(spec, seed=3)
    L = 16
    cfg = CrossbarConfig(levels=L, array_rows=64, array_cols=64, layers=ALL)
    cb = build_crossbar(spec, w, cfg)
    codes = decode_codes(cb)
    worst = {}
    for g in cb.manifest["groups"]:
        for kind, key in g["keys"].items():
            bound = g["code_full_scale"][kind] / (2 * (L - 1))  # half a level, in codes
            err = np.abs(codes[key] - np.asarray(w[key], np.float64)).max()
            assert err <= bound + 1e-9, (key, err, bound)
            assert err > 0 or g["code_full_scale"][kind] <= L - 1
            worst[kind] = max(worst.get(kind, 0.0), err)
            assert abs(g["level_error"][kind] - err) < 1e-9
    # every device holds one of L levels
    G = cb.tables["G_plus"].astype(np.float64)
    k = (G - cfg.g_min) / ((cfg.g_max - cfg.g_min) / (L - 1))
    assert np.abs(k - np.rint(k)).max() < 1e-4
    assert worst["A"] > 0
    assert cb.tables["level_plus"].dtype == np.uint8 and cb.tables["level_plus"].max() == L - 1


# ------------------------------------------------------------------ tile map


@pytest.mark.parametrize("R,C", [(64, 64), (32, 48), (128, 128), (16, 16)])
def test_tile_map_covers_every_cell_once(R, C):
    spec = make_spec((4, 40), H=8)
    w = make_weights(spec)
    cb = build_crossbar(spec, w, CrossbarConfig(array_rows=R, array_cols=C, layers=ALL))
    man = cb.manifest
    groups = cb.groups
    seen = {k: np.zeros((g["blocks"], *g["block_shape"]), int) for k, g in groups.items()}
    for t in man["tiles"]:
        rows, cols, used = np.zeros(R, int), np.zeros(C, int), 0
        for pl in t["placements"]:
            (r0, r1), (c0, c1), (ar, ac) = pl["rows"], pl["cols"], pl["at"]
            assert r1 - r0 <= R and c1 - c0 <= C and ar + r1 - r0 <= R and ac + c1 - c0 <= C
            seen[t["group"]][pl["block"], r0:r1, c0:c1] += 1
            rows[ar:ar + r1 - r0] += 1
            cols[ac:ac + c1 - c0] += 1
            used += (r1 - r0) * (c1 - c0)
            kinds = block_layout(groups[t["group"]])[0][r0:r1, c0:c1]
            got = cb.tables["cell_kind"][t["array"], ar:ar + r1 - r0, ac:ac + c1 - c0]
            np.testing.assert_array_equal(got, kinds)
        assert rows.max() <= 1 and cols.max() <= 1  # block-diagonal: no shared lines
        assert t["used_cells"] == used and t["utilization"] == pytest.approx(used / (R * C))
    for k, s in seen.items():
        assert np.all(s == 1), k
    # every programmed (nonzero-kind) cell of the arrays belongs to some placement
    assert (cb.tables["cell_kind"] > 0).sum() == sum(
        (block_layout(g)[0] > 0).sum() * g["blocks"] for g in groups.values())
    tot = man["totals"]
    assert tot["utilization"] == pytest.approx(sum(t["used_cells"] for t in man["tiles"])
                                               / (len(man["tiles"]) * R * C))


def test_small_blocks_share_an_array_and_big_ones_split():
    spec = make_spec((4, 40), H=8)
    cb = build_crossbar(spec, make_weights(spec), CrossbarConfig(array_rows=64, array_cols=64))
    small, big = cb.tiles("l0.s4d"), cb.tiles("l1.s4d")
    assert len(small) == 2  # 9x10 blocks: 6 per 64x64 array
    assert [len(t["placements"]) for t in small] == [6, 2]
    pieces = [(p["block"], tuple(p["rows"]), tuple(p["cols"])) for t in big for p in t["placements"]]
    assert sorted(set(p[1] for p in pieces)) == [(0, 64), (64, 81)]
    assert sorted(set(p[2] for p in pieces)) == [(0, 64), (64, 82)]
    assert len(pieces) == 4 * 8


# ------------------------------------------------------------------ files and loader


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    spec = make_spec((4, 20), H=8)
    w = make_weights(spec)
    cfg = CrossbarConfig(array_rows=32, array_cols=32, layers=("s4d", "mix"))
    cb = build_crossbar(spec, w, cfg, calib_x=calib(spec, T=20))
    d = write_crossbar(tmp_path_factory.mktemp("bundle"), cb)
    return cb, d


def _nonzero_codes(spec, w, layers) -> int:
    """Cells with a nonzero code over the mapped blocks, counted from the weights alone."""
    n = 0
    for i in range(spec.model.n_layers):
        if "s4d" in layers:
            n += np.count_nonzero(s4d_block(*(w[f"l{i}.{k}"] for k in "ABCD")))
        if "mix" in layers:
            n += np.count_nonzero(w[f"l{i}.mix.w"])
    return n


def _check_csvs(d, cb) -> int:
    """Every array's G+ and G- back from its sparse CSV bit for bit (unlisted cells at
    csv_unlisted_uS); returns the number of listed cells."""
    man, listed = cb.manifest, 0
    a, g0 = man["array"], np.float32(man["files"]["csv_unlisted_uS"])
    for i, name in enumerate(man["files"]["csv"]):
        lines = (d / name).read_text().splitlines()
        assert lines[0] == "row,col,g_plus_uS,g_minus_uS" == ",".join(CSV_COLUMNS)
        G = np.full((2, a["rows"], a["cols"]), g0, np.float32)  # (2, R, C)
        rows = np.loadtxt(lines[1:], delimiter=",", ndmin=2)  # (m, 4)
        r, c = rows[:, 0].astype(int), rows[:, 1].astype(int)
        assert np.all(np.diff(r * a["cols"] + c) > 0)  # row-major, every cell at most once
        G[0, r, c], G[1, r, c] = rows[:, 2].astype(np.float32), rows[:, 3].astype(np.float32)
        np.testing.assert_array_equal(G[0], cb.tables["G_plus"][i], err_msg=name)
        np.testing.assert_array_equal(G[1], cb.tables["G_minus"][i], err_msg=name)
        listed += len(rows)
    return listed


def test_write_and_load_round_trip(written):
    cb, d = written
    back = load_crossbar(d.parent)
    assert back.manifest == json.loads(json.dumps(cb.manifest))
    assert set(back.tables) == set(cb.tables)
    for k, v in cb.tables.items():
        np.testing.assert_array_equal(back.tables[k], v)
        assert back.tables[k].dtype == v.dtype
    assert back.manifest["calibration"]["calibrated"]
    assert all(np.all(np.asarray(v) > 0) for g in back.manifest["groups"]
               for v in g["adc_fs"].values())


def test_sparse_csv_holds_exactly_the_nonzero_cells(written):
    """Every G of every array back from its CSV bit for bit; one line per nonzero code."""
    cb, d = written
    man, listed = cb.manifest, _check_csvs(d, cb)
    assert man["files"]["csv"] == [f"array_{a:03d}.csv" for a in range(man["array"]["count"])]
    assert man["files"]["csv_unlisted_uS"] == man["g_min"] == 1.0
    spec = make_spec((4, 20), H=8)
    assert listed == man["totals"]["nonzero_cells"] == _nonzero_codes(spec, make_weights(spec),
                                                                      ("s4d", "mix"))
    csv_bytes = sum((d / n).stat().st_size for n in man["files"]["csv"])
    assert csv_bytes < 40 * (listed + len(man["files"]["csv"]))  # sparse: ~30 bytes a line
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in d.iterdir())


def test_tables_npz_is_compressed_and_holds_levels(written):
    _, d = written
    with zipfile.ZipFile(d / "tables.npz") as z:
        assert {i.filename for i in z.infolist()} == {f"{k}.npy" for k in TABLES}
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    with np.load(d / "tables.npz", allow_pickle=False) as z:
        assert z["level_plus"].dtype == np.uint8  # 8-bit codes: levels 0..128


def test_g_min_off_the_float32_grid(tmp_path):
    """Regression: g_min = 1.3 (float32 1.29999995) was kept below g_min, as numpy 2 compared
    float32 with float in float32; G and unlisted cells now sit at 1.30000007."""
    spec = make_spec((3, 5), H=4)
    cfg = CrossbarConfig(g_min=1.3, g_max=30.0, array_rows=16, array_cols=16)
    cb = build_crossbar(spec, make_weights(spec, seed=2), cfg)
    d = write_crossbar(tmp_path, cb)
    g0 = cb.manifest["files"]["csv_unlisted_uS"]
    assert np.float32(g0) == cb.tables["G_plus"].min() and g0 >= 1.3 > float(np.float32(1.3))
    assert _check_csvs(d, cb) > 0
    load_crossbar(d)


def _corrupt_manifest(d, edit) -> None:
    man = json.loads((d / "manifest.json").read_text())
    edit(man)
    (d / "manifest.json").write_text(json.dumps(man))


def _corrupt_tables(d, edit) -> None:
    with np.load(d / "tables.npz") as z:
        t = {k: z[k] for k in z.files}
    edit(t)
    np.savez(d / "tables.npz", **t)


def _set(path, value):
    def edit(man):
        obj = man
        for p in path[:-1]:
            obj = obj[p]
        obj[path[-1]] = value
    return edit


CORRUPT = [
    ("manifest", lambda m: m.pop("tiles"), r"manifest\.json: missing field 'tiles'"),
    ("manifest", _set(["tiles", 0, "placements", 1, "at"], [0, 40]), r"tiles\[0\]\.placements\[1\]"),
    ("manifest", _set(["tiles", 0, "utilization"], 0.5), r"tiles\[0\]: used_cells/utilization"),
    ("manifest", _set(["groups", 0, "row_gain", "out"], [1.0]), r"groups\[0\]\.row_gain\.out"),
    ("manifest", _set(["config", "g_max"], "high"), r"config\.g_max"),
    ("manifest", _set(["format"], "other"), r"manifest\.json\.format"),
    ("manifest", _set(["groups", 0, "col_gain", "u_state", 0], 9.0), r"tables\.npz: col_gain"),
    ("manifest", _set(["groups", 0, "delta_g", "A"], 1.0), r"groups\[0\]\.delta_g\.A"),
    ("manifest", _set(["version"], 1), r"manifest\.json\.version: this qs4d reads 2"),
    ("manifest", _set(["config", "drift_t0"], 0.0),
     r"json\.config: CrossbarConfig\.drift_t0: must be > 0"),
    ("manifest", _set(["files", "csv_unlisted_uS"], 2.0), r"manifest\.json\.files\.csv_unlisted"),
    ("manifest", _set(["files", "csv", 1], "../array_001.csv"), r"manifest\.json\.files\.csv"),
    # G in [g_min, g_max]: a level above the cell's top (q_A = 128), or on a structural zero
    ("tables", lambda t: t["level_plus"].__setitem__((0, 0, 0), 200),
     r"tables\.npz: level_plus\[0, 0, 0\] = 200 is above the top level 128 of its cell \(A\)"),
    ("tables", lambda t: t["level_minus"].__setitem__((0, 0, 1), 1),
     r"tables\.npz: level_minus\[0, 0, 1\] = 1 .* top level 0 of its cell \(zero\)"),
    ("tables", lambda t: t.__setitem__("level_plus", t["level_plus"].astype(np.float32)),
     r"tables\.npz\['level_plus'\]: expected shape \(\d+, 32, 32\) uint, got .* float32"),
    ("tables", lambda t: t.__setitem__("row_gain", t["row_gain"][:, :5]),
     r"tables\.npz\['row_gain'\]: expected shape"),
    ("tables", lambda t: t.pop("cell_kind"), r"tables\.npz: missing arrays \['cell_kind'\]"),
    ("tables", lambda t: t.__setitem__("level_minus", t["level_minus"].astype(object)),
     r"tables\.npz: member 'level_minus' has dtype object"),
]


@pytest.mark.parametrize("where,edit,message", CORRUPT)
def test_loader_rejects_corruption(written, tmp_path, where, edit, message):
    cb, d = written
    dst = write_crossbar(tmp_path, cb)
    (_corrupt_manifest if where == "manifest" else _corrupt_tables)(dst, edit)
    with pytest.raises(CrossbarError, match=message):
        load_crossbar(dst)


def _edit_line(i, new):
    def edit(text):
        lines = text.split("\n")
        lines[i] = new(lines[i])
        return "\n".join(lines)
    return edit


CSV_CORRUPT = [
    (_edit_line(0, lambda ln: "row,col,gp,gm"), r"array_001\.csv: line 1 \(header\)"),
    (_edit_line(3, lambda ln: ln.rsplit(",", 1)[0] + ",1.5"),
     r"array_001\.csv: line 4 \(row,col,g_plus_uS,g_minus_uS\): '.*,1\.5' but tables\.npz"),
    (_edit_line(2, lambda ln: ""), r"array_001\.csv: line 3 "),  # a cell left out
    (lambda text: text + "31,0,1,1\n", r"array_001\.csv: line \d+ .*'31,0,1,1' but .*'end of"),
    (lambda text: text[:-1], r"array_001\.csv: differs in line breaks"),
    (None, r"array_001\.csv: cannot read"),  # the file is missing
]


@pytest.mark.parametrize("edit,message", CSV_CORRUPT)
def test_loader_rejects_a_csv_that_disagrees(written, tmp_path, edit, message):
    cb, _ = written
    p = write_crossbar(tmp_path, cb) / "array_001.csv"
    if edit is None:
        p.unlink()
    else:
        p.write_bytes(edit(p.read_text()).encode())
    with pytest.raises(CrossbarError, match=message):
        load_crossbar(p.parent)


def test_rewrite_removes_stale_array_files(written, tmp_path):
    cb, _ = written
    d = tmp_path / "crossbar"
    d.mkdir()
    for name in ("array_000_gplus.csv", "array_999.csv", "notes.txt"):
        (d / name).write_text("old\n")
    write_crossbar(tmp_path, cb)
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [*cb.manifest["files"]["csv"], "manifest.json", "notes.txt", "tables.npz"])
    load_crossbar(d)


def test_build_rejects_bad_weights():
    spec = make_spec((2, 3), H=4, bits=4)
    w = make_weights(spec)
    w["l1.C"] = w["l1.C"].astype(np.int32) * 0 + 9
    with pytest.raises(ValueError, match=r"weights\['l1\.C'\].*\[-8, 7\]"):
        build_crossbar(spec, w, CrossbarConfig())
    w = make_weights(spec)
    w["l0.A.scale"] = w["l0.A.scale"] * 0
    with pytest.raises(ValueError, match=r"weights\['l0\.A\.scale'\]"):
        build_crossbar(spec, w, CrossbarConfig())


def test_export_crossbar_imports_no_torch():
    code = "import sys, qs4d.export.crossbar, qs4d.runtime.imssa; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_kind_codes_are_stable():
    assert KIND == {"zero": 0, "A": 1, "B": 2, "C": 3, "D": 4, "W": 5}
