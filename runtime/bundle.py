"""Reading and checking a bundle (DESIGN section 4). Nothing is ever unpickled.

A bundle that fails its manifest (missing file, size or sha256 mismatch), its schema or its
shape and dtype checks is refused with a `BundleError` that names the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .quant import qrange
from .spec import (
    MANIFEST_FILE,
    SPEC_FILE,
    WEIGHTS_FILE,
    Spec,
    SpecError,
    weight_shapes,
)


class BundleError(SpecError):
    """A bundle file is missing, corrupted or inconsistent; the message names file and field."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    spec: Spec
    weights: dict
    manifest: dict

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise BundleError(f"{self.path / MANIFEST_FILE}: no file {name!r} in this bundle")
        return self.path / name


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path) -> dict:
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing (is {path} a qs4d bundle?)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from e
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise BundleError(f"{mpath}.files: missing or not an object")
    return manifest


def check_files(path: Path, manifest: dict) -> None:
    """Every listed file present with its size and sha256; the required files listed."""
    mpath = path / MANIFEST_FILE
    for name in (SPEC_FILE, WEIGHTS_FILE):
        if name not in manifest["files"]:
            raise BundleError(f"{mpath}.files: required file {name!r} not listed")
    for name, entry in manifest["files"].items():
        f = path / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise BundleError(f"{mpath}.files: path {name!r} leaves the bundle")
        if not isinstance(entry, dict) or not {"sha256", "size"} <= set(entry):
            raise BundleError(f"{mpath}.files[{name!r}]: needs sha256 and size")
        if not f.is_file():
            raise BundleError(f"{f}: missing (listed in {MANIFEST_FILE})")
        if f.stat().st_size != entry["size"]:
            raise BundleError(f"{f}: size {f.stat().st_size}, manifest says {entry['size']}")
        if sha256(f) != entry["sha256"]:
            raise BundleError(f"{f}: sha256 mismatch with {MANIFEST_FILE} (corrupted or edited)")


def read_weights(path: Path) -> dict:
    f = path / WEIGHTS_FILE
    try:
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise BundleError(f"{f}: unreadable ({e})") from e


def check_weights(spec: Spec, w: dict, where: str) -> None:
    """Keys, shapes, dtypes and value ranges of weights.npz against the spec."""
    want = weight_shapes(spec)
    missing, extra = sorted(set(want) - set(w)), sorted(set(w) - set(want))
    if missing:
        raise BundleError(f"{where}: missing tensor(s) {missing}")
    if extra:
        raise BundleError(f"{where}: unexpected tensor(s) {extra}")
    for key, (shape, kind) in want.items():
        a = w[key]
        if tuple(a.shape) != tuple(shape):
            raise BundleError(f"{where}[{key!r}]: shape {tuple(a.shape)}, expected {tuple(shape)}")
        if kind in ("scale", "float"):
            if a.dtype != np.float32:
                raise BundleError(f"{where}[{key!r}]: dtype {a.dtype}, expected float32")
            if not np.all(np.isfinite(a)):
                raise BundleError(f"{where}[{key!r}]: NaN or Inf")
            if kind == "scale" and not np.all(a > 0):
                raise BundleError(f"{where}[{key!r}]: scales must be > 0")
        else:
            if a.dtype.kind != "i":
                raise BundleError(f"{where}[{key!r}]: dtype {a.dtype}, expected an integer type")
            lo, hi = _code_range(spec, key, kind)
            if a.size and (a.min() < lo or a.max() > hi):
                raise BundleError(f"{where}[{key!r}]: values outside [{lo}, {hi}]")


def _code_range(spec: Spec, key: str, kind: str) -> tuple[int, int]:
    q = spec.quant
    if kind == "acc":
        return -(2**31), 2**31 - 1
    name = key.split(".")[-2] if key.endswith(".table") else key.split(".")[-1]
    if kind == "table":
        qmin, qmax = qrange(q.act.bits, q.act.narrow)  # both tables output activation codes
        return (0, qmax) if name == "sig" else (qmin, qmax)
    group = {"A": q.A, "B": q.B, "C": q.C, "D": q.D}.get(name, q.weights)
    return qrange(group.bits, group.narrow)


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check a bundle directory; raise BundleError naming the file and field."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    manifest = read_manifest(path)
    if verify:
        check_files(path, manifest)
    spec = Spec.from_json((path / SPEC_FILE).read_text(errors="replace"), str(path / SPEC_FILE))
    weights = read_weights(path)
    check_weights(spec, weights, str(path / WEIGHTS_FILE))
    return Bundle(path=path, spec=spec, weights=weights, manifest=manifest)
