"""Caches a pool worker keeps while it runs one kind of task, and drops between steps (see pool.py)."""

from __future__ import annotations

from typing import Callable

_RELEASERS: list[Callable[[], None]] = []


def release_between_steps(clear: Callable[[], None]) -> Callable[[], None]:
    """Register a cache's `clear`: a worker calls it after a step, or when it moves on to another kind of task."""
    _RELEASERS.append(clear)
    return clear


def release_all() -> None:
    for clear in _RELEASERS:
        clear()
