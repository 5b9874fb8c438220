"""Partial failure: the status, the headers and part of the body, then a closed socket.

The client sees a response that starts well and breaks off: a ``Content-Length`` it
never receives in full, or a chunked body with no last chunk. With a known length the
first half is sent; without one, the first chunk the upstream sent. The connection is
then closed (FIN after the sent bytes, not a reset, so they do arrive).
"""

from __future__ import annotations

__all__ = ["Truncator"]


class Truncator:
    """A body filter that lets through part of the body and then stops it."""

    def __init__(self, content_length: int | None) -> None:
        """Prepare to pass half of ``content_length`` bytes, or one chunk if unknown."""
        self._remaining = content_length // 2 if content_length is not None else None
        self._finished = content_length is not None and self._remaining == 0

    @property
    def finished(self) -> bool:
        """Whether the cut has been reached."""
        return self._finished

    def feed(self, chunk: bytes) -> bytes:
        """Return the part of ``chunk`` still to be sent before the cut."""
        if self._remaining is None:
            self._finished = True
            return chunk

        sent = chunk[: self._remaining]
        self._remaining -= len(sent)
        self._finished = self._remaining == 0

        return sent
