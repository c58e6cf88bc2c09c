"""Models run inside the sidecar: GGUF files the app registers, run by llama-cpp-python (an optional extra)."""

from __future__ import annotations

from .models import LocalModels

__all__ = ["LocalModels"]
