"""Writing a bundle directory (DESIGN section 4): spec.json, weights.npz, step.onnx,
step_float.onnx, crossbar/, manifest.json (sha256 and size of every file)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from qs4d.runtime.bundle import check_weights, read_manifest, sha256
from qs4d.runtime.errors import UsageError
from qs4d.runtime.spec import (
    MANIFEST_FILE,
    ONNX_FILE,
    ONNX_FLOAT_FILE,
    SCHEMA_VERSION,
    SPEC_FILE,
    WEIGHTS_FILE,
    Spec,
    SpecError,
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


def is_bundle_dir(path: Path) -> bool:
    """A folder that holds exactly a bundle: a readable manifest.json listing every file in it
    (so replacing it deletes nothing that an export did not write)."""
    try:
        files = read_manifest(path)["files"]
    except SpecError:
        return False
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir()}
    return present == set(files) | {MANIFEST_FILE}


def check_out(out: str | Path, force: bool = False) -> Path:
    """Where a bundle may be written: a new path, an empty folder, or a bundle (replaced);
    a file or a folder holding anything else only with force. Raises UsageError."""
    out = Path(out)
    if force or not (out.exists() or out.is_symlink()):
        return out
    if out.is_dir() and not out.is_symlink() and (not any(out.iterdir()) or is_bundle_dir(out)):
        return out
    what = "a file" if not out.is_dir() or out.is_symlink() else "a folder that is not a bundle"
    raise UsageError(f"{out}: {what}; an export replaces only a bundle (use --force to "
                     f"replace it anyway)")


def write_bundle(out: str | Path, spec: Spec, weights: dict, *, onnx_int: bytes | None = None,
                 onnx_float: bytes | None = None, crossbar=None, card: str | None = None,
                 force: bool = False) -> Path:
    """Write a complete bundle; `crossbar` is an export.crossbar.Crossbar or None. The bundle
    is written into a new folder beside `out`, then renamed into place, so a failed export
    leaves `out` as it was; an existing `out` must be empty or a bundle (`check_out`) unless
    force."""
    out = Path(out)
    check_out(out, force)
    check_weights(spec, weights, WEIGHTS_FILE)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".new", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
    try:
        _write(tmp, spec, weights, onnx_int, onnx_float, crossbar, card)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace(new: Path, out: Path) -> None:
    """Rename the written folder onto `out`; an old `out` is renamed aside first and removed
    once the new one is in place (two renames: a reader never sees a half-written bundle)."""
    old = None
    if out.exists() or out.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.rmdir(old)
        os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


def _write(out: Path, spec: Spec, weights: dict, onnx_int, onnx_float, crossbar, card) -> None:
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
