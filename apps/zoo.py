"""The package's own zoo: the bundle an app runs when the command line names none."""

from __future__ import annotations

from pathlib import Path

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"  # qs4d/models/zoo
DEFAULT = {"kws": "sc12-qat4", "ecg": "ecg-qat4"}


def default_bundle(app: str) -> Path | None:
    """The zoo bundle `qs4d APP` uses without a BUNDLE argument, or None when it is absent."""
    path = ZOO / DEFAULT[app]
    return path if (path / "spec.json").is_file() else None
