"""A dependency-free progress bar on stderr (quiet when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", stream=None, min_interval: float = 0.2):
        self.total, self.desc, self.n = max(1, total), desc, 0
        self.stream = stream or sys.stderr
        self.live = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = self.last = time.time()
        self.min_interval = min_interval
        self.postfix = ""

    def update(self, k: int = 1, **postfix) -> None:
        self.n += k
        if postfix:
            self.postfix = " ".join(f"{a}={b}" for a, b in postfix.items())
        now = time.time()
        if self.live and (now - self.last >= self.min_interval or self.n >= self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(1.0, self.n / self.total)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        rate = self.n / max(1e-9, now - self.t0)
        eta = (self.total - self.n) / max(1e-9, rate)
        self.stream.write(f"\r{self.desc} [{bar}] {self.n}/{self.total} "
                          f"{rate:.1f}/s eta {eta:.0f}s {self.postfix}")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self._draw(time.time())
            self.stream.write("\n")
            self.stream.flush()
