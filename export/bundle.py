"""Writing a bundle directory (DESIGN section 4): spec.json, weights.npz, step.onnx,
step_float.onnx, crossbar/, manifest.json (sha256 and size of every file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from qs4d.runtime.bundle import check_weights, sha256
from qs4d.runtime.spec import (
    MANIFEST_FILE,
    ONNX_FILE,
    ONNX_FLOAT_FILE,
    SCHEMA_VERSION,
    SPEC_FILE,
    WEIGHTS_FILE,
    Spec,
)


def write_manifest(out: Path) -> dict:
    files = {}
    for f in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = f.relative_to(out).as_posix()
        if rel == MANIFEST_FILE:
            continue
        files[rel] = {"sha256": sha256(f), "size": f.stat().st_size}
    manifest = {"schema_version": SCHEMA_VERSION, "files": files}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def write_bundle(out: str | Path, spec: Spec, weights: dict, *, onnx_int: bytes | None = None,
                 onnx_float: bytes | None = None, crossbar=None, card: str | None = None,
                 overwrite: bool = True) -> Path:
    """Write a complete bundle; `crossbar` is an export.crossbar.Crossbar or None."""
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise FileExistsError(out)
        shutil.rmtree(out)
    out.mkdir(parents=True)
    check_weights(spec, weights, WEIGHTS_FILE)
    (out / SPEC_FILE).write_text(spec.to_json() + "\n")
    np.savez(out / WEIGHTS_FILE, **weights)
    if onnx_int is not None:
        (out / ONNX_FILE).write_bytes(onnx_int)
    if onnx_float is not None:
        (out / ONNX_FLOAT_FILE).write_bytes(onnx_float)
    if crossbar is not None:
        from .crossbar import write_crossbar

        write_crossbar(out, crossbar)
    if card:
        (out / "README.md").write_text(card)
    write_manifest(out)
    return out
