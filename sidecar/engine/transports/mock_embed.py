"""The offline provider's embeddings (``mock:embed``): deterministic vectors with no model, for building and
testing a search (RAG) frontend offline.

Each word (lower-cased letters and digits) adds ``1`` or ``-1`` to one dimension, both chosen by a hash of the
word (BLAKE2b, so the same on every machine and run); the vector is then scaled to length 1. Texts sharing
words are close by cosine, texts sharing none are near 0, an empty text is all zeros. The usage counts words."""

from __future__ import annotations

import hashlib
import math
import re

DIMENSIONS = 64
"""the size of a vector when the request gives no ``dimensions``"""

_WORD = re.compile(r"[^\W_]+")


def embed_words(texts: list[str], dimensions: int | None) -> tuple[list[list[float]], int]:
    """(one vector per text, the number of words in all)."""
    size = dimensions or DIMENSIONS
    vectors: list[list[float]] = []
    words = 0
    for text in texts:
        vector = [0.0] * size
        for word in _WORD.findall(text.lower()):
            words += 1
            digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            vector[digest % size] += 1.0 if digest >> 63 else -1.0
        norm = math.sqrt(sum(v * v for v in vector))
        vectors.append([v / norm for v in vector] if norm else vector)
    return vectors, words
