"""One-line logging, back-off and deadlines for the agent's retry loops."""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from errors import Terminated


class Log:
    def __init__(self, command: str, stream: Any = None):
        self.prefix = f"member-agent {command}:"
        self.stream = stream
        self.last = ""

    def __call__(self, message: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"{self.prefix} {message}\n")
        stream.flush()
        self.last = message


# Refusals that clear within seconds without anyone acting: etcd wants every voter connected for
# 5 s before a membership change, a learner in sync before its promotion, and one change at a time.
SOON_OVER = (
    "unhealthy cluster",
    "too many learner",
    "in sync with leader",
    "not enough started members",
    "another member change is in flight",
)


class Backoff:
    def __init__(self, first: float = 1.0, cap: float = 10.0):
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next(self, why: str = "") -> float:
        """The next delay; a refusal etcd lifts by itself within seconds is polled every second."""
        if any(phrase in why for phrase in SOON_OVER):
            return round(self.first * random.uniform(0.8, 1.2), 1)
        delay = min(self.cap, self.first * 2.0**self.attempt) * random.uniform(0.8, 1.2)
        self.attempt += 1
        return round(delay, 1)

    def reset(self) -> None:
        self.attempt = 0


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds if seconds > 0 else None

    def expired(self, after: float = 0.0) -> bool:
        return self.end is not None and time.monotonic() + after > self.end


def wait_or_give_up(
    log: Log, backoff: Backoff, deadline: Deadline, seen: str, why: str, detail: str = ""
) -> bool:
    """Log and sleep the next back-off delay (True), or log giving up (False) when the deadline
    comes first. `detail` is only logged."""
    delay = backoff.next(why)
    said = f"{why} ({detail})" if detail else why
    if deadline.expired(delay):
        log(f"{seen} -> giving up (--timeout): {said}")
        return False
    log(f"{seen} -> waiting {delay}s: {said}")
    time.sleep(delay)
    return True


def raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()
