"""Data corruption: the real body, with some bytes changed and its length unchanged.

Bytes are changed as they stream, so ``Content-Length`` stays true and a client only
finds out by parsing or checking the body. Compressed bodies are corrupted as bytes
(the proxy never decodes them), which is what a flipped bit on the wire would do.
About one byte in every KiB is changed, and always at least one in the first chunk
that has any bytes; each is XORed with a non-zero value, so it really differs.
"""

from __future__ import annotations

import random

__all__ = ["BYTES_PER_CHANGE", "Corruptor"]

BYTES_PER_CHANGE = 1024


class Corruptor:
    """A body filter that changes some bytes of every chunk it is fed."""

    def __init__(self, rng: random.Random) -> None:
        """Use ``rng`` (seeded from the injector) to choose positions and values."""
        self._rng = rng
        self.changed = 0

    @property
    def finished(self) -> bool:
        """Corruption never cuts a body short."""
        return False

    def feed(self, chunk: bytes) -> bytes:
        """Return ``chunk`` with about one byte per KiB changed."""
        if not chunk:
            return chunk

        count = len(chunk) // BYTES_PER_CHANGE
        if self.changed == 0:
            count = max(count, 1)
        if count == 0:
            return chunk

        data = bytearray(chunk)
        for _ in range(count):
            position = self._rng.randrange(len(data))
            data[position] ^= self._rng.randrange(1, 256)
        self.changed += count

        return bytes(data)
