"""Progress lines for long work (rows, rate, ETA), to the log that Airflow and the CLI show."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("cutover")


class Progress:
    def __init__(self, label: str, total: int | None, unit: str = "rows", every: float = 2.0):
        self.label = label
        self.total = total
        self.unit = unit
        self.every = every
        self.started = time.perf_counter()
        self._last = self.started

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.every:
            return
        self._last = now
        log.info(self.line(done, now))

    def line(self, done: int, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({done / self.total:.0%})"
            if rate > 0 and done < self.total:
                text += f", ETA {(self.total - done) / rate:,.0f}s"
        else:
            text += f" {self.unit}"
        return text + f", {rate:,.0f} {self.unit}/s"

    def done(self, count: int) -> None:
        self.update(count, force=True)
