"""`qs4d profile BUNDLE`: latency, real-time factor, throughput, memory, work and estimated
energy per backend.

    qs4d profile models/zoo/kws-qat4 --backends onnx,imssa,numpy --batch 1,8,32 \
                 --steps 200 --repeats 5 --json prof.json --plot prof.png --torch

Latency: each step timed alone (batch 1, one thread), all runners interleaved repeat by
repeat so background load hits them alike; median and p99 over steps x repeats. The same run
prints the export benchmark: the integer ONNX step against the float ONNX step
(`float_graph=True`) and, with --torch, PyTorch eager steps of the same model: for an integer
bundle its own integer step (`torch-int`, bit for bit the numpy reference) and, for every
bundle, the step of its (dequantized) float weights (`torch`), with numpy and imssa beside
them, as ratios of medians. Real-time factor: (step + front end) /
step period. Throughput: B streams as one batch through `Stream.accept`. Memory: tracemalloc
peak (Python and numpy allocations) and the process's maximum RSS. Work: MACs and bit
operations per step from the spec (runtime/costs.py); array reads and DAC/ADC conversions from
the imssa counters. Energy: ESTIMATES from runtime/energy.py (constants in docs/energy.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
import time
import tracemalloc

import numpy as np

from qs4d.apps.plot import plot_file
from qs4d.runtime import energy
from qs4d.runtime.backends import BACKENDS
from qs4d.runtime.cliargs import ArgParser, int_in, output_file
from qs4d.runtime.costs import raw_input, step_costs, step_period_s, step_terms
from qs4d.runtime.errors import UsageError
from qs4d.runtime.stream import load


def _csv(text: str, cast) -> list:
    return [cast(v) for v in text.split(",") if v.strip()]


def runners(path, backends: list, with_torch: bool, notes: list) -> dict:
    """name -> (model or None, executor): the backends, the float ONNX step, optional torch."""
    out: dict = {}
    for be in backends:
        m = load(path, backend=be, threads=1)
        out[be] = (m, m.executor)
    if "onnx" in out and out["onnx"][0].spec.quant.integer:
        m = load(path, backend="onnx", threads=1, float_graph=True)
        out["onnx-float"] = (m, m.executor)
    if with_torch:
        try:
            mod = importlib.import_module("qs4d.models.torch_step")
            if "onnx" in out and out["onnx"][0].spec.quant.integer:
                out["torch-int"] = (None, mod.TorchIntStep.from_bundle(path, threads=1))
            out["torch"] = (None, mod.TorchStep.from_bundle(path, threads=1))
        except ImportError as e:
            notes.append(f"--torch: PyTorch is not importable ({e}); no torch step")
    return out


def time_steps(runs: dict, F: int, steps: int, repeats: int, seed: int = 0) -> dict:
    """name -> per-step times (s), each runner in turn within every repeat."""
    x = np.random.default_rng(seed).standard_normal((steps, 1, F)).astype(np.float32)  # (T,1,F)
    times: dict = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (_, ex) in runs.items():
            st = ex.init_state(1)
            ex(x[0], st)  # warm-up
            for t in range(steps):
                t0 = time.perf_counter_ns()
                _, st = ex(x[t], st)
                times[name].append((time.perf_counter_ns() - t0) * 1e-9)
    return times


def frontend_s(model, steps: int) -> float:
    """Front-end seconds per step (one stream)."""
    x = raw_input(model.spec, steps, np.random.default_rng(1))
    s = model.stream()
    t0 = time.perf_counter()
    s.features(x)
    return (time.perf_counter() - t0) / steps


def throughput(model, batches: list, steps: int, period: float) -> tuple[dict, dict]:
    """Per batch size: stream-steps per second and streams served at real time; memory."""
    out, mem = {}, {}
    for B in batches:
        x = raw_input(model.spec, steps, np.random.default_rng(2), batch=B)
        s = model.stream(batch=B)
        tracemalloc.start()
        t0 = time.perf_counter()
        s.accept(x)
        wall = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rate = B * steps / wall
        out[B] = {"steps_per_s": rate, "realtime_streams": rate * period, "wall_s": wall}
        mem[B] = {"tracemalloc_peak_bytes": peak}
    return out, mem


def imssa_counts(model, steps: int) -> dict:
    ex = model.executor
    ex.reset_counters()
    model.stream().accept(raw_input(model.spec, steps, np.random.default_rng(3)))
    c = ex.counters()
    n = max(1, c["steps"])
    return {k: v / n for k, v in c.items() if k != "steps"}


def energies(spec, per_step_imssa: dict | None, xcfg, lat: dict) -> dict:
    costs, terms = step_costs(spec), step_terms(spec)
    out = {"digital-fp32": energy.digital_fp32(costs, terms)}
    if spec.quant.integer:
        out["digital-int"] = energy.digital_int(costs, terms)
    if per_step_imssa is not None and spec.quant.integer:  # the model prices integer digits
        q = spec.quant
        dac_b = xcfg.dac_bits or q.act.bits
        adc_b = xcfg.adc_bits or q.adc.bits
        out["crossbar"] = energy.crossbar(per_step_imssa, dac_b, adc_b, costs, q.weights.bits)
        out["crossbar"]["dac_bits"], out["crossbar"]["adc_bits"] = dac_b, adc_b
    ref = lat.get("onnx-float") or lat.get("onnx") or next(iter(lat.values()), None)
    if ref is not None:
        out["jetson-nano"] = energy.jetson_nano(ref["median_s"])
    return out


def ratio_lines(lat: dict) -> list:
    pairs = [("onnx", "onnx-float"), ("onnx", "torch-int"), ("onnx", "torch"),
             ("onnx-float", "torch"), ("torch-int", "onnx"), ("torch", "onnx"),
             ("numpy", "onnx"), ("imssa", "onnx")]
    out = []
    for a, b in pairs:
        if a in lat and b in lat:
            out.append((f"{a} / {b}", lat[a]["median_s"] / lat[b]["median_s"]))
    return out


def print_report(r: dict) -> None:
    c = r["costs"]
    print(f"{r['model']}  step period {1e3 * r['period_s']:.3f} ms  "
          f"(front end {r['frontend']}, {1e6 * r['frontend_s']:.1f} us/step)")
    print(f"work per step: {c['macs']} MACs, {c['bitops']} bit operations; weights "
          f"{c['weight_code_bits']} bits of codes ({c['weight_total_bits']} with biases, "
          f"scales, tables), state {c['state_bits']} bits")
    print(f"\nstep latency, batch 1, one thread ({r['steps']} steps x {r['repeats']} repeats):")
    print(f"{'runner':<12}{'median us':>11}{'p99 us':>10}{'RTF':>10}{'x real time':>13}")
    for name, v in r["latency"].items():
        print(f"{name:<12}{1e6 * v['median_s']:>11.1f}{1e6 * v['p99_s']:>10.1f}"
              f"{v['rtf']:>10.4f}{1 / v['rtf']:>13.0f}")
    print("ratios of medians (same run): " + ", ".join(f"{k} = {v:.3f}" for k, v in r["ratios"]))
    print(f"\nthroughput ({r['steps']} steps per stream):")
    print(f"{'backend':<10}{'B':>5}{'steps/s':>12}{'real-time streams':>19}{'tracemalloc MiB':>17}")
    for be, rows in r["throughput"].items():
        for B, v in rows.items():
            mb = r["memory"][be][B]["tracemalloc_peak_bytes"] / 2**20
            print(f"{be:<10}{B:>5}{v['steps_per_s']:>12.0f}{v['realtime_streams']:>19.1f}"
                  f"{mb:>17.2f}")
    print(f"process max RSS {r['max_rss_mib']:.0f} MiB")
    if r["imssa_per_step"]:
        print("imssa per step: " + ", ".join(f"{k} {v:g}" for k, v in r["imssa_per_step"].items()))
    print("\nenergy per step, ESTIMATES (docs/energy.md):")
    for target, e in r["energy"].items():
        parts = ", ".join(f"{k} {v / 1e3:.3g}" for k, v in e.items()
                          if k != "total" and not k.endswith("_bits"))
        per_s = e["total"] / r["period_s"] * 1e-12
        print(f"  {target:<13}{e['total'] / 1e3:>12.3f} nJ/step  {1e6 * per_s:>10.2f} uW at "
              f"real time  ({parts} nJ)")
    for n in r["notes"]:
        print(f"note: {n}")


def plot(path, r: dict) -> None:
    from qs4d.apps.plot import profile_plot

    latency_us = {n: (1e6 * v["median_s"], 1e6 * v["p99_s"]) for n, v in r["latency"].items()}
    profile_plot(path, latency_us, {t: e["total"] / 1e3 for t, e in r["energy"].items()})


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="qs4d profile", description=__doc__,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--batch", default="1,8,32", help="batch sizes for throughput")
    p.add_argument("--steps", type=int_in(1, 10**6), default=200, help="steps per repeat")
    p.add_argument("--repeats", type=int_in(1, 1000), default=5)
    p.add_argument("--json", metavar="FILE", type=output_file)
    p.add_argument("--plot", metavar="PNG", type=plot_file,
                   help="bar charts of latency and energy (the plot extra)")
    p.add_argument("--torch", action="store_true", help="add a PyTorch eager step")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    backends = _csv(args.backends, str)
    bad = sorted(set(backends) - set(BACKENDS))
    if bad or not backends:
        print(f"qs4d profile: unknown backends {bad}; choose from {BACKENDS}", file=sys.stderr)
        return 2
    if args.steps < 1 or args.repeats < 1:
        print("qs4d profile: --steps and --repeats must be >= 1", file=sys.stderr)
        return 2
    try:
        batches = _csv(args.batch, int)
    except ValueError:
        batches = []
    if not batches or not all(1 <= b <= 1024 for b in batches):
        raise UsageError(f"argument --batch: comma-separated integers in 1..1024, got "
                         f"{args.batch!r}")
    notes: list = []
    runs = runners(args.bundle, backends, args.torch, notes)
    model = next(m for m, _ in runs.values() if m is not None)
    spec, period = model.spec, step_period_s(model.spec)
    fe_s = frontend_s(model, args.steps)
    times = time_steps(runs, spec.model.d_input, args.steps, args.repeats)
    lat = {}
    for name, ts in times.items():
        med, p99 = float(np.median(ts)), float(np.percentile(ts, 99))
        lat[name] = {"median_s": med, "p99_s": p99, "mean_s": float(np.mean(ts)),
                     "n": len(ts), "rtf": (med + fe_s) / period}
    thr, mem = {}, {}
    for be in backends:
        thr[be], mem[be] = throughput(runs[be][0], batches, args.steps, period)
    per_step = imssa_counts(runs["imssa"][0], args.steps) if "imssa" in runs else None
    xcfg = runs["imssa"][1].cfg if "imssa" in runs else None
    if not spec.quant.integer:
        notes.append("float bundle: no integer step; onnx runs the float graph; imssa runs its "
                     "weights programmed as codes, digital parts in float32 (no crossbar energy "
                     "estimate: docs/energy.md prices integer digital parts)")
    r = {"bundle": str(args.bundle), "model": repr(model), "frontend": spec.frontend.kind,
         "period_s": period, "frontend_s": fe_s, "steps": args.steps, "repeats": args.repeats,
         "costs": step_costs(spec).to_dict(), "latency": lat, "ratios": ratio_lines(lat),
         "throughput": thr, "memory": mem, "imssa_per_step": per_step,
         "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
         "energy": energies(spec, per_step, xcfg, lat), "energy_constants": energy.constants(),
         "notes": notes + ["energy figures are estimates from docs/energy.md, not measurements",
                           "jetson-nano: board power x this host's float-ONNX step latency"]}
    print_report(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2, default=float)
        print(f"wrote {args.json}")
    if args.plot:
        plot(args.plot, r)
        print(f"wrote {args.plot}")
    return 0
