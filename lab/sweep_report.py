"""Sweep results: one row per run and evaluation point, results.csv, summary.md (pivot tables
and "smallest setting within tol of float" thresholds) and PNG plots, as the sweep file's
[[table]], [[threshold]] and [[plot]] entries ask.

    [[plot]]       file, x, y, series (columns whose values name a line), title, where
                   (column -> value or list), ref (a column whose mean is a dashed line,
                   default float_test_acc; "" for none), log_x, x_label, y_label
    [[threshold]]  x, y (default test_acc), by (columns), tol (points, default 1.0), ref
                   (default float_test_acc) or ref_where (the reference is the mean y of the
                   group's rows matching it), best ("min" or "max" of x), where, title
    [[table]]      rows (columns), cols (columns), value (default test_acc), where, title;
                   or columns (a list table of those columns), where, title
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from qs4d.runtime.spec import GROUPS

from .plots import line_plot

log = logging.getLogger(__name__)
AXIS_LABELS = {"test_acc": "test accuracy (%)", "imssa_acc": "imssa test accuracy (%)",
               "float_test_acc": "float test accuracy (%)", "eval_read_noise": "read noise sigma",
               "prune_share": "share of state modes removed", "mem_bits": "memory bits",
               "bitops": "bit operations per step"}
LEAD = ("run_id", "method", "group", "bits", "d_model", "d_state", "n_layers", "prune_keep",
        "modes_kept", "prune_share", "noise_std", "noise_kind", "eval_read_noise", "seed",
        "float_test_acc", "ptq_val_acc", "val_acc", "test_acc", "imssa_acc")


def rows_of(runs: list, results: dict) -> list:
    """Rows of the runs that have a result: one per run, or one per read-noise point."""
    rows = []
    for run in runs:
        res = results.get(run.run_id)
        if res is None:
            continue
        t, m, met = run.tcfg, run.mcfg, res["metrics"]
        P0 = m.n_layers * (m.d_state // 2)
        row = {"run_id": run.run_id, "method": run.method, "group": "all", **run.axes,
               "task": t.task, "d_model": m.d_model, "d_state": m.d_state,
               "n_layers": m.n_layers, "prune_keep": t.prune_keep,
               "modes_kept": sum(res["modes"]), "prune_share": round(1 - sum(res["modes"]) / P0, 4),
               "noise_std": t.noise_std, "noise_kind": t.noise_kind if t.noise_std else "none",
               "seed": t.seed,
               "float_test_acc": res["base_metrics"].get("float_test_acc",
                                                         met.get("float_test_acc")),
               "prune_test_acc": res["base_metrics"].get("prune_test_acc"),
               "ptq_val_acc": met.get("ptq_val_acc"), "val_acc": met["val_acc"],
               "test_acc": met["test_acc"], "params": met.get("params")}
        row.update({f"q_{g}": run.qcfg.to_dict()[g]["bits"] for g in GROUPS})
        row.update(res["costs"])
        row.update(run.axes)  # the grid's own values win over any derived column
        row["minutes"] = res.get("minutes")
        if not run.read_noise:
            rows.append(row)
        for sigma, key in zip(run.read_noise, run.eval_keys()):
            ev = res["evals"].get(key)
            if ev is not None:
                rows.append({**row, "eval_read_noise": sigma, "imssa_acc": ev["acc"],
                             "noise_model": run.eval.noise_model,
                             "imssa_examples": ev["examples"]})
    return rows


def write_csv(path: Path, rows: list) -> Path:
    cols = [c for c in LEAD if any(c in r for r in rows)]
    for r in rows:
        cols += [c for c in r if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _cell(r.get(c)) for c in cols})
    path.write_text(buf.getvalue())
    return path


def _cell(v):
    return "" if v is None else round(v, 4) if isinstance(v, float) else v


def select(rows: list, where: dict | None) -> list:
    def ok(r):
        for k, v in (where or {}).items():
            allowed = v if isinstance(v, list) else [v]
            if r.get(k) not in allowed:
                return False
        return True
    return [r for r in rows if ok(r)]


def _label(r: dict, cols: list) -> str:
    return " ".join(f"{c}={r.get(c)}" if c not in ("method", "group") else str(r.get(c))
                    for c in cols)


def _fmt(v) -> str:
    if v is None or v == "":
        return "-"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _key(v):
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def _sorted_labels(labels) -> list:
    return sorted(labels, key=lambda s: [_key(_num(x)) for x in s.split()])


def _num(s: str):
    v = s.split("=")[-1]
    try:
        return float(v)
    except ValueError:
        return s


def table_md(rows: list, spec: dict) -> str:
    """A pivot (rows down, cols across, the mean of value per cell) or, with `columns`, a
    list of the rows' values in those columns, sorted by them."""
    rows = select(rows, spec.get("where"))
    if "columns" in spec:
        cols = list(spec["columns"])
        body = sorted(rows, key=lambda r: [_key(r.get(c)) for c in cols])
        out = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
        return "\n".join(out + ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |"
                                 for r in body])
    rk = [spec["rows"]] if isinstance(spec["rows"], str) else list(spec["rows"])
    cols, val = list(spec["cols"]), spec.get("value", "test_acc")
    rvals = _sorted_labels({_label(r, rk) for r in rows})
    cvals = _sorted_labels({_label(r, cols) for r in rows})
    out = [f"| {' '.join(rk)} | " + " | ".join(cvals) + " |", "|---" * (len(cvals) + 1) + "|"]
    for rv in rvals:
        cells = []
        for cv in cvals:
            vs = [r[val] for r in rows if _label(r, rk) == rv and _label(r, cols) == cv
                  and r.get(val) is not None]
            cells.append(_fmt(float(np.mean(vs))) if vs else "-")
        out.append(f"| {rv} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def thresholds(rows: list, spec: dict) -> list:
    """Per group of `by`: the best x (min or max) whose y is within tol of the reference:
    the row's ref column, or with ref_where the mean y of the group's rows that match it
    (e.g. the unpruned model of the same width)."""
    rows = select(rows, spec.get("where"))
    by, x, y = list(spec.get("by", [])), spec["x"], spec.get("y", "test_acc")
    tol, ref, best = float(spec.get("tol", 1.0)), spec.get("ref", "float_test_acc"), \
        spec.get("best", "min")
    out = []
    for lab in _sorted_labels({_label(r, by) for r in rows}):
        grp = [r for r in rows if _label(r, by) == lab and r.get(y) is not None]
        if "ref_where" in spec:
            base = [r[y] for r in select(grp, spec["ref_where"])]
            refs = [float(np.mean(base)) if base else float("nan")] * len(grp)
        else:
            refs = [r[ref] for r in grp]
        ok = [r for r, v in zip(grp, refs) if r[y] >= v - tol]
        pick = (min if best == "min" else max)(ok, key=lambda r: r[x]) if ok else None
        out.append({"group": lab or "all", "ref": refs[0] if grp else None,
                    "x": pick[x] if pick else None, "y": pick[y] if pick else None,
                    "run_id": pick["run_id"] if pick else None})
    return out


def threshold_md(rows: list, spec: dict) -> str:
    res = thresholds(rows, spec)
    x, y, tol = spec["x"], spec.get("y", "test_acc"), float(spec.get("tol", 1.0))
    word = "smallest" if spec.get("best", "min") == "min" else "largest"
    ref = spec.get("ref", "float_test_acc")
    if "ref_where" in spec:
        ref = f"{y} at " + " ".join(f"{k}={v}" for k, v in spec["ref_where"].items())
    head = (f"| {' '.join(spec.get('by', [])) or 'runs'} | {ref} "
            f"| {word} {x} within {tol:g} pt | {y} there |")
    lines = [head, "|---|---|---|---|"]
    lines += [f"| {r['group']} | {_fmt(r['ref'])} | {_fmt(r['x']) if r['x'] is not None else 'none'}"
              f" | {_fmt(r['y'])} |" for r in res]
    return "\n".join(lines)


def draw(out_dir: Path, rows: list, spec: dict) -> Path | None:
    rows = select(rows, spec.get("where"))
    x, y, series = spec["x"], spec.get("y", "test_acc"), list(spec.get("series", []))
    data: dict = {}
    for r in rows:
        if r.get(x) is None or r.get(y) is None or r.get(x) == "":
            continue
        data.setdefault(_label(r, series) or y, []).append((float(r[x]), float(r[y])))
    if not data:
        log.warning("plot %s: no rows with %s and %s", spec["file"], x, y)
        return None
    lines = {}
    for lab in _sorted_labels(data):
        pts = {}
        for a, b in data[lab]:
            pts.setdefault(a, []).append(b)
        xs = sorted(pts)
        lines[lab] = (xs, [float(np.mean(pts[a])) for a in xs])
    ref_col = spec.get("ref", "float_test_acc")
    refs = [r[ref_col] for r in rows if ref_col and r.get(ref_col) is not None]
    return line_plot(out_dir / spec["file"], lines, title=spec.get("title", ""),
                     x_label=spec.get("x_label", AXIS_LABELS.get(x, x)),
                     y_label=spec.get("y_label", AXIS_LABELS.get(y, y)),
                     ref=float(np.mean(refs)) if refs else None,
                     ref_label="float" if refs else "", log_x=bool(spec.get("log_x", False)))


def write_report(out_dir: Path, name: str, command: str, rows: list, report: dict,
                 missing: int) -> str:
    """results.csv, the plots and summary.md in out_dir; returns the summary text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "results.csv", rows)
    parts = [f"# {name}: sweep summary", "", f"Command: `{command}`", "",
             f"{len({r['run_id'] for r in rows})} runs, {len(rows)} rows in results.csv"
             + (f"; {missing} runs without a result yet" if missing else "") + "."]
    for spec in report.get("table", []):
        parts += ["", f"## {spec.get('title', spec.get('value', 'test_acc'))}", "",
                  table_md(rows, spec)]
    for spec in report.get("threshold", []):
        parts += ["", f"## {spec.get('title', 'thresholds')}", "", threshold_md(rows, spec)]
    pngs = [p for p in (draw(out_dir, rows, s) for s in report.get("plot", [])) if p]
    if pngs:
        parts += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in pngs]
    text = "\n".join(parts) + "\n"
    (out_dir / "summary.md").write_text(text)
    return text
