"""A clock whose `sleep` advances time instantly, so retry and pacing logic can be tested without waiting."""

from __future__ import annotations

import time


class FakeClock:
    """`monotonic()` starts at 0 and moves only by `sleep`; `time()` is the real wall clock plus the
    slept amount (the client compares it with the server's rate-limit reset header)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time() + self.now
