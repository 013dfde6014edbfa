"""Command-line parsing for the `qs4d` subcommands: a usage error is a `UsageError` (one line
on stderr, exit code 2, by `qs4d.cli`), and argument types that refuse values that cannot
work (a rate of 0, a negative duration) by name."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .errors import UsageError


class ArgParser(argparse.ArgumentParser):
    """argparse that raises UsageError("PROG: MESSAGE") instead of printing usage and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _float(text: str, ok, want: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
    if not math.isfinite(v) or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
    return v


def int_in(lo: int, hi: int):
    """An argument type: an integer in lo..hi."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in {lo}..{hi}, got {text!r}")
        return v
    return parse


def float_in(lo: float, hi: float):
    """An argument type: a finite number in [lo, hi]."""
    return lambda text: _float(text, lambda v: lo <= v <= hi, f"a number in {lo:g}..{hi:g}")


def positive_float(text: str) -> float:
    return _float(text, lambda v: v > 0, "a finite number > 0")


def nonneg_float(text: str) -> float:
    return _float(text, lambda v: v >= 0, "a finite number >= 0")


def finite_float(text: str) -> float:
    return _float(text, lambda v: True, "a finite number")


def output_file(text: str) -> str:
    """A file to write later: its folder must exist now (not after a whole run)."""
    folder = Path(text).expanduser().parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} of {text!r} does not exist")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file name")
    return text
