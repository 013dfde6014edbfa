"""Import hygiene (DESIGN section 2) and the `qs4d` command in-process: the runtime and the
apps load neither torch nor sounddevice nor the training/export code, and work on an install
where torch cannot be imported at all; every import points down: apps -> runtime <- models <-
export, and lab (orchestration that trains and runs together) -> all, checked on the source of
every module, imports inside functions and module names given to importlib included.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

import qs4d
from qs4d.cli import COMMANDS, main

RUNTIME = ["spec", "quant", "reference", "bundle", "backends", "stream", "frontends",
           "frontend", "ecg", "imssa", "crossbar_io"]


def modules_of(folder: str, package: str) -> list:
    return sorted(f"{package}.{p.stem}" for p in (ROOT / folder).glob("*.py")
                  if p.stem != "__init__")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_runtime_and_apps_import_neither_torch_nor_sounddevice():
    mods = sorted(set([f"qs4d.runtime.{m}" for m in RUNTIME] + modules_of("runtime", "qs4d.runtime")
                      + ["qs4d.runtime", "qs4d.apps"] + modules_of("apps", "qs4d.apps")))
    assert len(mods) > len(RUNTIME) + 2
    done = run_python(f"""
        import importlib, json, sys
        for m in {mods!r}:
            importlib.import_module(m)
        print(json.dumps(sorted(sys.modules)))
    """)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert set(mods) <= loaded
    for banned in ("torch", "sounddevice"):
        assert not {m for m in loaded if m == banned or m.startswith(banned + ".")}, banned
    project = {m for m in loaded if m.startswith(("qs4d.models", "qs4d.export"))}
    assert not project, f"runtime/apps import training or export code: {sorted(project)}"


def test_runtime_works_where_torch_cannot_be_imported(bundle_path):
    path = bundle_path("int8")
    done = run_python(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now fails
        sys.modules["sounddevice"] = None
        import numpy as np
        import qs4d
        x = np.ones((5, 2), np.float32)
        ys = [qs4d.load({str(path)!r}, backend=b).stream().accept(x)
              for b in ("onnx", "numpy", "imssa")]
        assert ys[0].shape == (5, 4) and np.array_equal(ys[0], ys[1])
        from qs4d.cli import main
        assert main(["--help"]) == 0
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr


def test_cli_help_in_a_fresh_interpreter_loads_no_heavy_modules():
    done = run_python("""
        import sys
        from qs4d.cli import main
        assert main(["--help"]) == 0
        heavy = [m for m in ("torch", "onnx", "onnxruntime", "scipy") if m in sys.modules]
        print("heavy:", heavy)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "heavy: []"


def test_cli_help_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: qs4d")
    for name in COMMANDS:
        assert f"  {name} " in out
    assert main([]) == 0
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip().endswith(qs4d.__version__)


def test_cli_unknown_command(capsys):
    assert main(["frobnicate", "--x"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "usage: qs4d" in err


def test_cli_missing_optional_package_is_named():
    """`qs4d train` on an install without torch: exit code 3 and a hint, no traceback."""
    done = run_python("""
        import sys
        sys.modules["torch"] = None
        from qs4d.cli import main
        sys.exit(main(["train", "--out", "nowhere"]))
    """)
    assert done.returncode == 3, done.stderr
    assert "torch" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["frobnicate"]])
def test_python_dash_m_qs4d(argv):
    done = subprocess.run([sys.executable, "-m", "qs4d", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == (0 if argv == ["--help"] else 2), done.stderr


LAYERS = ("runtime", "models", "export", "apps", "lab")
ALLOWED = {
    "runtime": {"runtime"},
    "models": {"runtime", "models"},
    "export": {"runtime", "models", "export"},
    "apps": {"runtime", "apps"},
    "lab": set(LAYERS),
}
NAMED = re.compile(r"qs4d\.(runtime|models|export|apps|lab)(\.[\w.]+)?")


def targets(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, layer) of every qs4d layer the module at `path` (under `root`) imports or names
    as a module."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = path.relative_to(root).with_suffix("").parts[:-1]  # ('models', 'data') ...
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            if n.level:  # relative: resolved inside this layer's package
                base = pkg[: len(pkg) - (n.level - 1)]
                out.append((n.lineno, base[0] if base else "?"))
            elif n.module and n.module.startswith("qs4d."):
                out.append((n.lineno, n.module.split(".")[1]))
            elif n.module == "qs4d":
                out += [(n.lineno, a.name) for a in n.names]
        elif isinstance(n, ast.Import):
            out += [(n.lineno, a.name.split(".")[1]) for a in n.names
                    if a.name.startswith("qs4d.")]
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            m = NAMED.fullmatch(n.value)  # importlib.import_module("qs4d.models.x") and kin
            if m:
                out.append((n.lineno, m.group(1)))
    return [(line, t) for line, t in out if t in LAYERS or t == "?"]


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_down(layer):
    bad = [f"{p.relative_to(ROOT)}:{line} imports {t}" for p in modules(layer)
           for line, t in targets(p) if t not in ALLOWED[layer]]
    assert not bad, f"{layer} may import {sorted(ALLOWED[layer])} only:\n" + "\n".join(bad)


def test_the_checker_sees_lazy_and_importlib_imports(tmp_path):
    root = tmp_path / "apps"
    root.mkdir()
    f = root / "x.py"
    f.write_text("import importlib\n\ndef f():\n    from qs4d.models import train\n"
                 "    return importlib.import_module('qs4d.export.cli')\n")
    assert [t for _, t in targets(f, tmp_path)] == ["models", "export"]
    assert all(modules(layer) for layer in LAYERS)
