"""Find model servers running on this machine, telling them apart by their answers, not by port.

Ports collide (8080, 8000, even 11434 are used by several servers), so each open port is asked,
in order: ``/api/extra/version`` (KoboldCpp, which imitates Ollama's and OpenAI's routes, so it
must be recognised first and left out), ``GET /`` (Ollama answers "Ollama is running"),
``/props`` (llama.cpp), then the ``owned_by`` of ``/v1/models`` and LM Studio's ``/api/v0/models``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from ..types import DiscoveredProvider

DEFAULT_PORTS = (11434, 1234, 8080, 8000, 1337)
HOST = "127.0.0.1"

Get = Callable[[str], Awaitable["Answer | None"]]
"""GET a URL: its answer, or None when nothing answers there"""


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        if self.status != 200:
            return None
        try:
            return msgspec.json.decode(self.body)
        except msgspec.DecodeError:
            return None


def _model_ids(listing: Any) -> list[str]:
    if isinstance(listing, dict) and isinstance(listing.get("data"), list):
        return [m["id"] for m in listing["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    return []


def _owners(listing: Any) -> set[str]:
    if isinstance(listing, dict) and isinstance(listing.get("data"), list):
        return {str(m.get("owned_by")) for m in listing["data"] if isinstance(m, dict)}
    return set()


async def identify(port: int, get: Get) -> DiscoveredProvider | None:
    """What speaks on ``port``, if it is a model server we know."""
    root = f"http://{HOST}:{port}"
    home = await get(f"{root}/")
    if home is None:
        return None  # nothing listens
    kobold = await get(f"{root}/api/extra/version")
    if kobold is not None and isinstance(k := kobold.json(), dict) and k.get("result") == "KoboldCpp":
        return None
    if home.status == 200 and b"Ollama is running" in home.body:
        version = await get(f"{root}/api/version")
        tags = await get(f"{root}/api/tags")
        info = (version.json() if version else None) or {}
        listing = (tags.json() if tags else None) or {}
        models = [m["name"] for m in listing.get("models", []) if isinstance(m, dict) and "name" in m]
        found = DiscoveredProvider(provider="ollama", base_url=root, models=models)
        if isinstance(info.get("version"), str):
            found.version = info["version"]
        return found
    base = f"{root}/v1"
    models_answer = await get(f"{base}/models")
    listing = models_answer.json() if models_answer else None
    models, owners = _model_ids(listing), _owners(listing)
    props = await get(f"{root}/props")
    props_json = props.json() if props else None
    if "llamacpp" in owners or (isinstance(props_json, dict) and "default_generation_settings" in props_json):
        found = DiscoveredProvider(provider="llamacpp", base_url=base, models=models)
        build = props_json.get("build_info") if isinstance(props_json, dict) else None
        if isinstance(build, str):
            found.version = build
        return found
    if "vllm" in owners:
        version = await get(f"{root}/version")
        found = DiscoveredProvider(provider="vllm", base_url=base, models=models)
        v = version.json() if version else None
        if isinstance(v, dict) and isinstance(v.get("version"), str):
            found.version = v["version"]
        return found
    lmstudio = await get(f"{root}/api/v0/models")
    if "organization_owner" in owners or (lmstudio is not None and _model_ids(lmstudio.json())):
        return DiscoveredProvider(provider="lmstudio", base_url=base, models=models)
    if port == 1337 and models_answer is not None and models_answer.status in (200, 401):
        return DiscoveredProvider(provider="jan", base_url=base, models=models)  # Jan wants its key even here
    return None


async def discover(get: Get, ports: list[int], timeout: float) -> list[DiscoveredProvider]:
    """Probe every port at once; whatever has not answered within ``timeout`` is left out."""
    found: dict[int, DiscoveredProvider] = {}

    async def probe(port: int) -> None:
        result = await identify(port, get)
        if result is not None:
            found[port] = result

    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as tg:
            for port in dict.fromkeys(ports):
                tg.start_soon(probe, port)
    return [found[p] for p in ports if p in found]
