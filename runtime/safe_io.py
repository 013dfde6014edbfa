"""Reading untrusted bundle and state files within bounds: JSON of a capped size and depth,
and .npz archives whose members are checked (name, dtype, shape, declared size) from their
.npy headers before a byte of their data is inflated. Nothing is ever unpickled.

Every failure raises the caller's error class (a `Qs4dError`) naming the file and member:
corrupt zip structure, bad deflate data, truncation, a .npy posing as an .npz, an object
array, a member declaring more bytes than the caller allows.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

MAX_JSON_BYTES = 64 << 20  # a spec or crossbar manifest of a very large model is a few MB
MAX_NPY_HEADER = 10000  # numpy's own default limit on a .npy header
# What a malformed file can make numpy's and zipfile's readers raise (zipfile raises
# NotImplementedError for a member stored with an unknown compression method).
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError,
               UnicodeDecodeError, NotImplementedError, RuntimeError, struct.error,
               OverflowError, TypeError, SyntaxError, MemoryError, RecursionError)


def read_json(path: Path, error: type, max_bytes: int = MAX_JSON_BYTES, what: str = "JSON"):
    """The JSON value of a file of at most max_bytes; `error` names the file otherwise."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {size} bytes, more than the {max_bytes} allowed for {what}")
        return parse_json(path.read_bytes(), error, str(path))
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from e


def parse_json(data: bytes | str, error: type, where: str):
    """json.loads with every failure (bad UTF-8, syntax, nesting too deep) as `error`."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{where}: not valid JSON ({e})") from e
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None


def npy_nbytes(shape: tuple, dtype: np.dtype) -> int:
    n = dtype.itemsize
    for d in shape:
        n *= int(d)
    return n


def read_npz(path: Path, error: type, check: Callable | None = None,
             max_bytes: int = 1 << 30, max_members: int = 4096, kinds: str = "biuf") -> dict:
    """{name: array} of an .npz archive. Before any member's data is read, its .npy header must
    give a plain numeric or bool dtype, and `check(name, shape, dtype)` (when given) must return
    None (else a message: the member is refused); the members' declared sizes must add up to at
    most max_bytes. Only the declared bytes are inflated. kinds: the dtype kinds allowed
    (numpy's letters; "U" adds text)."""
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            raise error(f"{path}: not an .npz archive (a zip of .npy arrays)")
        out: dict = {}
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > max_members:
                raise error(f"{path}: {len(infos)} members, more than {max_members}")
            total = 0
            for info in infos:
                name = info.filename
                if not name.endswith(".npy") or name[:-4] in out:
                    raise error(f"{path}: member {name!r} is not a (unique) .npy array")
                key = name[:-4]
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read(f, max_header_size=MAX_NPY_HEADER)
                    if dtype.hasobject or dtype.kind not in kinds or dtype.fields:
                        raise error(f"{path}: member {key!r} has dtype {dtype} (numbers only; "
                                    f"nothing is unpickled)")
                    if check is not None:
                        msg = check(key, tuple(shape), dtype)
                        if msg:
                            raise error(f"{path}[{key!r}]: {msg}")
                    nbytes = npy_nbytes(shape, dtype)
                    total += nbytes
                    if total > max_bytes:
                        raise error(f"{path}[{key!r}]: the members declare more than "
                                    f"{max_bytes} bytes")
                    data = f.read(nbytes)
                    if len(data) != nbytes:
                        raise error(f"{path}[{key!r}]: truncated ({len(data)} of {nbytes} "
                                    f"bytes)")
                    if f.read(1):  # also reaches the member's end: zipfile checks its CRC-32
                        raise error(f"{path}[{key!r}]: data beyond the {nbytes} bytes its "
                                    f"header declares")
                a = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
                out[key] = a.copy()
        return out
    except READ_ERRORS as e:
        if isinstance(e, error):
            raise
        raise error(f"{path}: unreadable ({type(e).__name__}: {e})") from None
