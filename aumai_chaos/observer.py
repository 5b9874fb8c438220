"""The observer: a thread-safe record of what happened during an experiment."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Generator
from contextlib import contextmanager
from datetime import UTC, datetime

from aumai_chaos.models import ObservationPoint

__all__ = ["ExperimentObserver"]


class ExperimentObserver:
    """Collects observation points from any number of threads.

    Args:
        max_points: Keep only the newest this many points, dropping the oldest, so
            a long run cannot grow memory without limit. None (the default) keeps
            every point.

    Raises:
        ValueError: If ``max_points`` is less than 1.
    """

    def __init__(self, max_points: int | None = None) -> None:
        if max_points is not None and max_points < 1:
            raise ValueError(
                f"max_points: expected 1 or more, or None, got {max_points!r}"
            )
        self._lock = threading.Lock()
        self._points: deque[ObservationPoint] = deque(maxlen=max_points)

    @property
    def max_points(self) -> int | None:
        """How many points are kept, or None when unbounded."""
        return self._points.maxlen

    def observe(
        self,
        component: str,
        event: str,
        details: dict[str, object] | None = None,
    ) -> None:
        """Record an event on ``component`` now, with optional structured details.

        ``details`` is copied, so later changes to the caller's dict do not alter
        the record.
        """
        point = ObservationPoint(
            timestamp=datetime.now(UTC),
            component=component,
            event=event,
            details=dict(details) if details else {},
        )
        self.record(point)

    def record(self, point: ObservationPoint) -> None:
        """Append a point someone else built, such as the proxy's request points."""
        with self._lock:
            self._points.append(point)

    def get_observations(self) -> list[ObservationPoint]:
        """Return the recorded points, oldest first, as a new list."""
        with self._lock:
            return list(self._points)

    def clear(self) -> None:
        """Discard every recorded point."""
        with self._lock:
            self._points.clear()

    def __len__(self) -> int:
        """Return how many points are held now."""
        with self._lock:
            return len(self._points)

    @contextmanager
    def scope(
        self, component: str, event_prefix: str = ""
    ) -> Generator[None, None, None]:
        """Record the start and the end, or the failure, of a block of code.

        Records ``{event_prefix}_start`` on entry, then ``{event_prefix}_end`` or
        ``{event_prefix}_error`` on exit (``start``, ``end``, ``error`` with no
        prefix). Exit events carry ``elapsed_ms``; the error event also carries
        ``error_type`` and ``error`` (the exception's message). The exception is
        always re-raised.
        """
        self.observe(component, _event_name(event_prefix, "start"))
        started = time.perf_counter()
        try:
            yield
        # BaseException: a cancelled or interrupted block is worth recording too.
        except BaseException as exc:
            self.observe(
                component,
                _event_name(event_prefix, "error"),
                {
                    "error_type": type(exc).__name__,
                    "error": str(exc),
                    "elapsed_ms": _elapsed_ms(started),
                },
            )
            raise
        self.observe(
            component,
            _event_name(event_prefix, "end"),
            {"elapsed_ms": _elapsed_ms(started)},
        )


def _event_name(prefix: str, suffix: str) -> str:
    return f"{prefix}_{suffix}" if prefix else suffix


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
