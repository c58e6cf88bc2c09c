"""Read a GGUF file's metadata (the key/value section of its header) without loading its weights.

Only what registering a model needs is kept (architecture, name, context length, embedding length, pooling
type, chat template); everything else is skipped, arrays included (a tokenizer's 50 000 strings are read past,
not kept). Every count and length is bounded, so a hostile file can make this neither allocate much nor run
long; a file that is not GGUF is refused from its first four bytes and nothing of it is ever returned.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
MAX_KV = 100_000
MAX_KEY = 1 << 16
MAX_STRING = 1 << 20
"""a kept string value (a chat template is a few KB)"""
MAX_ARRAY = 1 << 24

# value type -> (struct format, size) for the fixed-size types
_FIXED = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4), 6: ("<f", 4),
          7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_STRING, _ARRAY = 8, 9


class GgufError(ValueError):
    """The file is not a readable GGUF file; the message says what is wrong (never what it contains)."""


@dataclass(frozen=True)
class GgufInfo:
    version: int
    tensor_count: int
    architecture: str | None
    name: str | None
    context_length: int | None
    embedding_length: int | None
    pooling_type: int | None
    chat_template: str | None


def has_magic(path: Path) -> bool:
    """Whether the file starts with the GGUF magic (False for anything that cannot be read)."""
    try:
        with path.open("rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def read_info(path: Path) -> GgufInfo:
    """The metadata of a GGUF file; GgufError when it is not one or its header is cut short."""
    with path.open("rb", buffering=1 << 16) as f:
        if f.read(4) != MAGIC:
            raise GgufError("not a GGUF file (it does not start with the GGUF magic)")
        reader = _Reader(f)
        version = reader.u32()
        if version not in (2, 3):
            raise GgufError(f"GGUF version {version} is not supported (2 and 3 are)")
        tensors, kv_count = reader.u64(), reader.u64()
        if kv_count > MAX_KV:
            raise GgufError(f"the header claims {kv_count} metadata entries")
        kv: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string(MAX_KEY)
            kv[key] = reader.value(reader.u32(), keep=_wanted(key))
    arch = kv.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def arch_int(suffix: str) -> int | None:
        value = kv.get(f"{arch}.{suffix}") if arch else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    template = kv.get("tokenizer.chat_template")
    name = kv.get("general.name")
    return GgufInfo(version, tensors, arch, name if isinstance(name, str) else None, arch_int("context_length"),
                    arch_int("embedding_length"), arch_int("pooling_type"),
                    template if isinstance(template, str) else None)


def _wanted(key: str) -> bool:
    return key in ("general.architecture", "general.name", "tokenizer.chat_template") or key.endswith(
        (".context_length", ".embedding_length", ".pooling_type"))


class _Reader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise GgufError("the file ends inside its header (truncated)")
        return data

    def skip(self, n: int) -> None:
        self.f.seek(n - 1, 1)
        self.take(1)  # a seek past the end does not fail: reading the last byte does

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.take(8))[0]
        return value

    def string(self, limit: int, keep: bool = True) -> str:
        n = self.u64()
        if not keep:
            if n:
                self.skip(n)
            return ""
        if n > limit:
            raise GgufError(f"a string in the header is {n} bytes long")
        return self.take(n).decode("utf-8", "replace")

    def value(self, kind: int, keep: bool) -> Any:
        fixed = _FIXED.get(kind)
        if fixed is not None:
            return struct.unpack(fixed[0], self.take(fixed[1]))[0]
        if kind == _STRING:
            return self.string(MAX_STRING, keep)
        if kind == _ARRAY:
            item, count = self.u32(), self.u64()
            if count > MAX_ARRAY:
                raise GgufError(f"an array in the header claims {count} items")
            if item in _FIXED:
                if count:
                    self.skip(count * _FIXED[item][1])
            elif item == _STRING:
                for _ in range(count):
                    self.string(0, keep=False)
            else:
                raise GgufError(f"an array of value type {item} in the header")
            return None
        raise GgufError(f"unknown value type {kind} in the header")
