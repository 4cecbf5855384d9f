"""A token bucket shared by the load workers."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Allows ``rate`` items per second on average, with bursts up to one second's worth."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._tokens = float(rate or 0)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, n: int) -> None:
        if not self.rate:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= n or self._tokens >= self.rate:
                    self._tokens -= n
                    return
                wait = (n - self._tokens) / self.rate
            time.sleep(min(wait, 0.5))
