"""Crossbar tables: conductance round trip, levels, tile map, files and the loader's checks.

Glossary: T steps, B streams, F features, H width, P modes; n arrays, R/C array rows/cols.
The helpers make_spec / make_weights / build also serve tests/test_imssa.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from qs4d.export.crossbar import build_crossbar, write_crossbar
from qs4d.runtime.crossbar_io import (
    KIND,
    CrossbarError,
    block_layout,
    decode_codes,
    load_crossbar,
    s4d_kinds,
)
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


def test_block_layout_matches_reference_step():
    """The block times [s; u; u] equals the float step of the integer codes (DESIGN section 3)."""
    from qs4d.runtime.crossbar_io import s4d_block, s4d_unblock
    from qs4d.runtime.reference import rotate

    rng = np.random.default_rng(0)
    H, P = 3, 5
    A, Bm = rng.integers(-9, 10, (H, 2, P)), rng.integers(-9, 10, (H, 2, P))
    C, D = rng.integers(-9, 10, (H, 2 * P)), rng.integers(-9, 10, H)
    M = s4d_block(A, Bm, C, D)  # (H, 2P+1, 2P+2)
    s, u = rng.normal(size=(H, 2 * P)), rng.normal(size=H)
    out = np.einsum("hrc,hc->hr", M, np.c_[s, u, u])  # (H, 2P+1)
    ar, ai = rotate(A[:, 0], A[:, 1], s[:, :P], s[:, P:])
    np.testing.assert_allclose(out[:, :P], ar + Bm[:, 0] * u[:, None])
    np.testing.assert_allclose(out[:, P:2 * P], ai + Bm[:, 1] * u[:, None])
    np.testing.assert_allclose(out[:, 2 * P], (C * s).sum(1) + D * u)
    back = s4d_unblock(M)
    for k, v in {"A": A, "B": Bm, "C": C, "D": D}.items():
        np.testing.assert_array_equal(back[k], v)
    assert (s4d_kinds(P) > 0).sum() == 8 * P + 1


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


def test_write_and_load_round_trip(written):
    cb, d = written
    back = load_crossbar(d.parent)
    assert back.manifest == json.loads(json.dumps(cb.manifest))
    for k, v in cb.tables.items():
        np.testing.assert_array_equal(back.tables[k], v)
        assert back.tables[k].dtype == v.dtype
    gp = np.loadtxt(d / "array_001_gplus.csv", delimiter=",", dtype=np.float32)
    np.testing.assert_array_equal(gp, cb.tables["G_plus"][1])
    gm = np.loadtxt(d / "array_001_gminus.csv", delimiter=",", dtype=np.float32)
    np.testing.assert_array_equal(gm, cb.tables["G_minus"][1])
    assert back.manifest["calibration"]["calibrated"]
    assert all(np.all(np.asarray(v) > 0) for g in back.manifest["groups"]
               for v in g["adc_fs"].values())


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
    ("tables", lambda t: t["G_plus"].__setitem__((0, 0, 0), 99.0), r"tables\.npz: G_plus.*g_max"),
    ("tables", lambda t: t.__setitem__("row_gain", t["row_gain"][:, :5]),
     r"tables\.npz: row_gain: expected shape"),
    ("tables", lambda t: t.pop("cell_kind"), r"tables\.npz: missing arrays \['cell_kind'\]"),
    ("tables", lambda t: t.__setitem__("G_minus", t["G_minus"].astype(object)),
     r"tables\.npz: cannot read"),
]


@pytest.mark.parametrize("where,edit,message", CORRUPT)
def test_loader_rejects_corruption(written, tmp_path, where, edit, message):
    cb, d = written
    dst = write_crossbar(tmp_path, cb)
    (_corrupt_manifest if where == "manifest" else _corrupt_tables)(dst, edit)
    with pytest.raises(CrossbarError, match=message):
        load_crossbar(dst)


def test_missing_csv_is_named(written, tmp_path):
    cb, _ = written
    dst = write_crossbar(tmp_path, cb)
    (dst / "array_002_gminus.csv").unlink()
    with pytest.raises(CrossbarError, match="array_002_gminus.csv"):
        load_crossbar(dst)


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
