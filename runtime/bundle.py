"""Reading and checking a bundle (DESIGN section 4). Nothing is ever unpickled.

A bundle that fails its manifest (missing file, size or sha256 mismatch), its schema or its
shape and dtype checks is refused with a `BundleError` that names the file and the field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import safe_io
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


# Caps on what a bundle may declare, checked before anything is read, allocated or inflated.
MAX_FILE_BYTES = 256 << 20  # any one file (the zoo's largest is 4 MB)
MAX_FILES = 100_000  # files listed in the manifest
MAX_SPEC_BYTES = 4 << 20  # spec.json
MAX_WEIGHT_BYTES = 256 << 20  # the tensors of weights.npz, as their .npy headers declare them


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

    @property
    def digest(self) -> str:
        """sha256 over the sha256 of spec.json and weights.npz (from the checked manifest): the
        model's identity, unchanged by a re-export of its graphs or its model card."""
        files = self.manifest["files"]
        sums = [files[n]["sha256"] if isinstance(files.get(n), dict) else sha256(self.path / n)
                for n in (SPEC_FILE, WEIGHTS_FILE)]  # (a bundle loaded with verify=False)
        text = "\n".join(f"{n} {h}" for n, h in zip((SPEC_FILE, WEIGHTS_FILE), sums))
        return hashlib.sha256(text.encode()).hexdigest()


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
    manifest = safe_io.read_json(mpath, BundleError, MAX_FILES * 200, "a bundle manifest")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise BundleError(f"{mpath}.files: missing or not an object")
    if len(files) > MAX_FILES:
        raise BundleError(f"{mpath}.files: {len(files)} files, more than {MAX_FILES}")
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
        size, digest = entry["size"], entry["sha256"]
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            raise BundleError(f"{mpath}.files[{name!r}].size: an integer in 0..{MAX_FILE_BYTES}"
                              f", got {size!r:.40}")
        if not isinstance(digest, str) or len(digest) != 64:
            raise BundleError(f"{mpath}.files[{name!r}].sha256: 64 hex digits, got "
                              f"{digest!r:.80}")
        if not f.is_file():
            raise BundleError(f"{f}: missing (listed in {MANIFEST_FILE})")
        if f.stat().st_size != entry["size"]:
            raise BundleError(f"{f}: size {f.stat().st_size}, manifest says {entry['size']}")
        if sha256(f) != entry["sha256"]:
            raise BundleError(f"{f}: sha256 mismatch with {MANIFEST_FILE} (corrupted or edited)")


def read_weights(path: Path, spec: Spec | None = None) -> dict:
    """weights.npz; with a spec, every tensor's name, shape and dtype kind is checked against
    it from the .npy headers, before its data is read."""
    f = path / WEIGHTS_FILE
    check = None
    if spec is not None:
        want = weight_shapes(spec)

        def check(key, shape, dtype):
            if key not in want:
                return f"unexpected tensor (the spec has no {key!r})"
            if shape != tuple(want[key][0]):
                return f"shape {shape}, expected {tuple(want[key][0])}"
            if (dtype.kind == "f") != (want[key][1] in ("scale", "float")):
                return f"dtype {dtype} for a tensor of kind {want[key][1]!r}"
            return None

    return safe_io.read_npz(f, BundleError, check, MAX_WEIGHT_BYTES)


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
    spath = path / SPEC_FILE
    spec = Spec.from_dict(safe_io.read_json(spath, BundleError, MAX_SPEC_BYTES, "a spec"), str(spath))
    weights = read_weights(path, spec)
    check_weights(spec, weights, str(path / WEIGHTS_FILE))
    return Bundle(path=path, spec=spec, weights=weights, manifest=manifest)
