"""The error contract of qs4d (docs/errors.md): every expected failure raises a `Qs4dError`
whose message names the file, field or value; the `qs4d` command prints it as one line on
stderr and exits 1 (2 for a `UsageError`). Anything else is a bug and keeps its traceback.

- `SpecError` (runtime.spec_base): a spec, config or bundle field; `BundleError` and
  `CrossbarError` are SpecErrors naming a bundle file;
- `InputError`: samples, features, files of samples, a saved stream state;
- `UsageError`: a command-line value that cannot work (exit code 2).
All but `Qs4dError` itself are also ValueErrors.
"""

from __future__ import annotations


class Qs4dError(Exception):
    """An expected failure with a message for the user (the file, field or value named)."""


class InputError(Qs4dError, ValueError):
    """Input data (samples, features, a signal file, a stream state) that cannot be used."""


class UsageError(Qs4dError, ValueError):
    """A command-line argument that cannot work; the command exits with code 2."""
