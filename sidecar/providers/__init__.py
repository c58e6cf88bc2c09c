"""Providers are data: a catalog entry or a user's custom config, never a class per provider."""

from .model import Model, Provider
from .registry import Registry, check_url, split_model

__all__ = ["Model", "Provider", "Registry", "check_url", "split_model"]
