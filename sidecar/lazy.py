"""A service built on first use, so start-up does not pay for it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()  # a warm-up thread and the event loop may ask at once: one build

    def get(self) -> T:
        """The service, built now if it was not yet (a build that raises is tried again next time)."""
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    @property
    def built(self) -> T | None:
        """The service if it was built, else None (without building it)."""
        return self._value
