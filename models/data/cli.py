"""`qs4d data kws|ecg ...`: build the data sets."""

from __future__ import annotations

import importlib
import sys

BUILDERS = {
    "kws": "qs4d.models.data.kws_build",
    "ecg": "qs4d.models.data.ecg_build",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BUILDERS:
        print(f"usage: qs4d data {{{'|'.join(BUILDERS)}}} --out DIR [options]", file=sys.stderr)
        return 2
    return int(importlib.import_module(BUILDERS[argv[0]]).main(argv[1:]) or 0)
