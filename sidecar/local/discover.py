"""Find GGUF files already on this machine: the app's ``models/`` folder, LM Studio's and Ollama's model
folders (Ollama's blobs have no extension: they are told by their magic). Only headers are read, and only
files that are GGUF are reported."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from msgspec import UNSET

from ..errors import SidecarError
from ..types import DiscoveredLocalModel
from .gguf import GgufError, has_magic, read_info

Source = Literal["data_dir", "lmstudio", "ollama", "dir"]
MAX_DEPTH = 5
MAX_FILES = 5_000
"""entries looked at per folder, at most"""
MAX_FOUND = 200
MIN_SIZE = 1 << 20
"""smaller files are not models (Ollama's blobs also hold templates and licences)"""


def default_dirs(data_dir: Path) -> list[tuple[Path, Source]]:
    home = Path.home()
    ollama = os.environ.get("OLLAMA_MODELS")
    dirs: list[tuple[Path, Source]] = [
        (data_dir / "models", "data_dir"),
        (home / ".lmstudio" / "models", "lmstudio"),
        (home / ".cache" / "lm-studio" / "models", "lmstudio"),
        (Path(ollama) / "blobs" if ollama else home / ".ollama" / "models" / "blobs", "ollama"),
        (Path("/usr/share/ollama/.ollama/models/blobs"), "ollama"),
    ]
    return [(d, s) for d, s in dirs if d.is_dir()]


def discover(dirs: list[tuple[Path, Source]]) -> list[DiscoveredLocalModel]:
    found: list[DiscoveredLocalModel] = []
    seen: set[Path] = set()
    for folder, source in dirs:
        for path in _files(folder, source):
            if len(found) >= MAX_FOUND:
                return found
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                size = path.stat().st_size
                if size < MIN_SIZE or not has_magic(path):
                    continue
                info = read_info(path)
            except (OSError, GgufError):
                continue
            found.append(DiscoveredLocalModel(
                path=str(path), size_bytes=size, source=source,
                architecture=info.architecture or UNSET, name=info.name or UNSET,
                context_length=UNSET if info.context_length is None else info.context_length))
    return found


def requested_dirs(dirs: list[str]) -> list[tuple[Path, Source]]:
    out: list[tuple[Path, Source]] = []
    for d in dirs:
        path = Path(d)
        if not path.is_absolute():
            raise SidecarError("invalid_request", f"{d!r}: the folder must be an absolute path")
        if path.is_dir():
            out.append((path, "dir"))
    return out


def _files(folder: Path, source: Source) -> Iterator[Path]:
    """GGUF candidates under ``folder``: ``*.gguf`` files, or every file of an Ollama blobs folder."""
    looked = 0
    stack = [(folder, 0)]
    while stack:
        current, depth = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            looked += 1
            if looked > MAX_FILES:
                return
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < MAX_DEPTH:
                        stack.append((Path(entry.path), depth + 1))
                elif entry.is_file() and (source == "ollama" or entry.name.lower().endswith(".gguf")):
                    yield Path(entry.path)
            except OSError:
                continue
