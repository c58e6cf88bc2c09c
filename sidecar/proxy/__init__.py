"""A local OpenAI-compatible HTTP proxy inside the sidecar, for tools that only speak the OpenAI API.

Nothing here imports Starlette or Uvicorn at import time: they load when the proxy starts,
so the sidecar's start-up does not pay for them.
"""

from .manager import ProxyManager

__all__ = ["ProxyManager"]
