"""The `qs4d` command: subcommands dispatched with lazy imports.

Each subcommand lives in a module exposing `main(argv: list[str]) -> int`; it is imported only
when called, so `qs4d kws` works on a runtime-only install without torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from qs4d.runtime.cliargs import ArgParser

COMMANDS = {
    "train": ("qs4d.models.train", "train a model (float pre-training, QAT fine-tuning)"),
    "export": ("qs4d.export.cli", "checkpoint -> bundle (integer ONNX, crossbar tables)"),
    "verify": ("qs4d.runtime.verify", "parity among the executors of a bundle"),
    "data": ("qs4d.models.data.cli", "build data sets (kws, ecg)"),
    "kws": ("qs4d.apps.kws", "keyword spotting from a microphone or WAV file"),
    "ecg": ("qs4d.apps.ecg", "streaming ECG beat classification"),
    "ecg-report": ("qs4d.apps.ecg_report", "AAMI inter-patient report over WFDB records"),
    "models": ("qs4d.apps.models", "the zoo's bundles with their headline figures"),
    "kws-bench": ("qs4d.lab.kws_stream_bench",
                  "keyword detection rate vs false alarms per hour on real speech"),
    "profile": ("qs4d.lab.profile", "latency, throughput, memory and energy per backend"),
    "sweep": ("qs4d.lab.sweep", "grids of training and evaluation runs"),
}


# Commands that run bundles: numpy's BLAS gets one thread (set before numpy loads), like
# ONNX Runtime's sessions. The runtime's matrices are small; a second BLAS thread gains little
# and, on a loaded machine, spin-waits for a core (the numpy chunk runner ran 5-100x slower).
RUNTIME_COMMANDS = ("kws", "ecg", "ecg-report", "profile", "verify")
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usage() -> str:
    lines = ["usage: qs4d [--debug] COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {doc}" for name, (_, doc) in COMMANDS.items()]
    lines += ["", "Errors print one line and exit 1 (2: a usage error); --debug keeps the "
              "traceback."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch; expected failures (docs/errors.md) become one line on stderr and exit code 1
    (2 for a usage error); `--debug` anywhere before `--` keeps their tracebacks."""
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end] or os.environ.get("QS4D_DEBUG") == "1"
    argv = [a for i, a in enumerate(argv) if a != "--debug" or i >= end]
    try:
        return _main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("qs4d: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        code = expected_failure(e)
        if code is None or debug:
            raise
        name = argv[0] if argv and argv[0] in COMMANDS else ""
        print(f"qs4d{' ' + name if name else ''}: {one_line(e)}", file=sys.stderr)
        return code


def expected_failure(e: BaseException) -> int | None:
    """The exit code of an expected failure (2 usage, 1 runtime), None for a bug."""
    from qs4d.runtime.errors import Qs4dError, UsageError

    if isinstance(e, UsageError):
        return 2
    if isinstance(e, (Qs4dError, OSError, MemoryError)):
        return 1
    return None


def one_line(e: BaseException) -> str:
    """The error's message on one line (a file system error with its path)."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        msg = f"{e.filename}: {e.strerror}"
    elif isinstance(e, MemoryError):
        msg = f"out of memory ({e})" if str(e) else "out of memory"
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from qs4d import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"qs4d: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    if name in RUNTIME_COMMANDS:
        for var in BLAS_THREAD_VARS:
            os.environ.setdefault(var, "1")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name in ("torch", "onnx", "sounddevice", "wfdb", "ray", "tqdm"):
            print(f"qs4d {name}: needs the optional package {e.name!r}; "
                  f"install it (for example `pip install 'qs4d[train]'`)", file=sys.stderr)
            return 3
        raise
    # every subcommand's argparse errors become UsageErrors (one line, exit code 2), also in
    # the modules that build a plain ArgumentParser
    saved = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = ArgParser.error
    try:
        return int(module.main(rest) or 0)
    finally:
        argparse.ArgumentParser.error = saved
