"""The local models: the registry of GGUF files the app registered (persisted in settings), and the runtime
that loads one on first use, runs it in the calling worker thread, and unloads it when idle or asked.

llama-cpp-python is imported on first use only (start-up does not pay for it, and the sidecar runs without
it: a request then fails with ``provider_not_installed``). Each model has one lock: its ``Llama`` object is
used by one thread at a time (generation, embedding, loading, unloading); the order of waiting requests is
kept by the ``local`` provider's FIFO concurrency limit, so the lock is rarely contended.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET

from ..errors import SidecarError
from ..protocols.base import text_of
from ..types import (
    AssistantMessage,
    Event,
    FinishReason,
    LocalModelInfo,
    RegisterLocalModelParams,
    StreamTextParams,
    SystemMessage,
    TextDeltaEvent,
    Usage,
    UserMessage,
)
from .gguf import GgufError, read_info

if TYPE_CHECKING:
    from ..settings import SettingsStore

log = logging.getLogger("sidecar.local")

PROVIDER = "local"
EXTRA = "local"
INSTALL_HINT = f"pip install 'llm-sidecar[{EXTRA}]'"
DEFAULT_MAX_CTX = 4096
"""the context size when the registration gives none: the model's own, at most this (memory grows with it)"""


def check_file(path_text: str) -> tuple[Path, int]:
    """The registered file, checked: absolute, a regular readable file; (path, size). Its content is never
    part of an error: a file that is not GGUF is refused by its magic alone."""
    path = Path(path_text)
    if not path.is_absolute():
        raise SidecarError("invalid_request", f"{path_text!r}: the path must be absolute")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SidecarError("invalid_request", f"{path_text!r}: no such file") from None
    except OSError as exc:
        raise SidecarError("invalid_request", f"{path_text!r}: cannot be read ({exc.strerror})") from None
    if not path.is_file():
        raise SidecarError("invalid_request", f"{path_text!r}: not a regular file")
    return path, st.st_size


def describe(params: RegisterLocalModelParams) -> LocalModelInfo:
    """A registration checked against its file, with what the file's header says (the weights are not read)."""
    path, size = check_file(params.path)
    try:
        info = read_info(path)
    except GgufError as exc:
        raise SidecarError("invalid_request", f"{params.path!r}: {exc}") from None
    except OSError as exc:
        raise SidecarError("invalid_request", f"{params.path!r}: cannot be read ({exc.strerror})") from None
    if info.tensor_count == 0:
        raise SidecarError("invalid_request", f"{params.path!r}: a GGUF file without weights (no tensors)")

    def opt(value: Any) -> Any:
        return UNSET if value is None else value

    return LocalModelInfo(
        id=params.id, path=str(path), embedding=params.embedding, idle_unload_s=params.idle_unload_s,
        n_ctx=params.n_ctx, n_threads=params.n_threads, n_gpu_layers=params.n_gpu_layers,
        chat_format=params.chat_format, architecture=opt(info.architecture), name=opt(info.name),
        context_length=opt(info.context_length), embedding_length=opt(info.embedding_length),
        chat_template=opt(info.chat_template), size_bytes=size,
    )


@dataclass
class _Slot:
    """One registered model's runtime state."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    llm: Any = None
    config: LocalModelInfo | None = None
    """the registration the loaded model was built from (a re-registration reloads)"""
    last_used: float = 0.0
    timer: threading.Timer | None = None


class LocalModels:
    """The registry and runtime of local models (``local:<id>``)."""

    def __init__(self, settings: SettingsStore, *, clock: Any = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        self.installed: bool | None = None
        """whether llama-cpp-python imports; None: not tried yet"""

    # --- the registry -------------------------------------------------------------------------------------

    def register(self, params: RegisterLocalModelParams) -> LocalModelInfo:
        info = describe(params)
        self.settings.upsert_local_model(info)
        return self._with_state(info)

    def all(self) -> list[LocalModelInfo]:
        return [self._with_state(m) for m in self.settings.value.local_models]

    def get(self, model_id: str) -> LocalModelInfo:
        for m in self.settings.value.local_models:
            if m.id == model_id:
                return m
        raise SidecarError("invalid_request", f"local:{model_id} is not a registered local model "
                           "(register_local_model)", provider=PROVIDER)

    def unregister(self, model_id: str) -> bool:
        removed = self.settings.remove_local_model(model_id)
        self.unload_blocking(model_id)
        return removed

    def _with_state(self, info: LocalModelInfo) -> LocalModelInfo:
        slot = self._slots.get(info.id)
        return msgspec.structs.replace(info, loaded=slot is not None and slot.llm is not None)

    # --- llama-cpp-python -----------------------------------------------------------------------------------

    def require_installed(self) -> None:
        """Raises ``provider_not_installed`` (naming the extra) without llama-cpp-python; imports it once."""
        if self.installed is None:
            try:
                import llama_cpp  # noqa: F401
            except ImportError:
                self.installed = False
            except OSError:  # the package is there but its shared library does not load
                log.warning("llama-cpp-python is installed but cannot load llama.cpp", exc_info=True)
                self.installed = False
            else:
                self.installed = True
        if not self.installed:
            raise SidecarError("provider_not_installed", f"local models need llama-cpp-python: {INSTALL_HINT}",
                               provider=PROVIDER)

    # --- loading ---------------------------------------------------------------------------------------------

    def _slot(self, model_id: str) -> _Slot:
        with self._slots_lock:
            slot = self._slots.get(model_id)
            if slot is None:
                slot = self._slots[model_id] = _Slot()
            return slot

    def _loaded(self, slot: _Slot, info: LocalModelInfo) -> Any:
        """The slot's model, loaded now when it is not (or was registered anew); the slot's lock is held."""
        if slot.llm is not None and slot.config == info:
            return slot.llm
        self._close(slot)
        self.require_installed()
        import llama_cpp

        n_ctx = info.n_ctx if isinstance(info.n_ctx, int) else min(
            info.context_length if isinstance(info.context_length, int) else DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
        kwargs: dict[str, Any] = {"n_ctx": n_ctx, "embedding": info.embedding, "verbose": False}
        for name in ("n_threads", "n_gpu_layers", "chat_format"):
            value = getattr(info, name)
            if value is not UNSET:
                kwargs[name] = value
        started = time.perf_counter()
        try:
            slot.llm = llama_cpp.Llama(info.path, **kwargs)
        except MemoryError:
            raise SidecarError("upstream_unavailable", f"local:{info.id}: not enough memory to load "
                               f"{info.path!r}", provider=PROVIDER) from None
        except Exception as exc:  # llama.cpp says ValueError("Failed to load model from file") and no more
            raise SidecarError("invalid_request", f"local:{info.id}: llama.cpp could not load {info.path!r} "
                               f"({type(exc).__name__}: the file may be corrupt or truncated, or memory short)",
                               provider=PROVIDER) from None
        slot.config = info
        log.info("local:%s loaded in %.2f s", info.id, time.perf_counter() - started)
        return slot.llm

    def _close(self, slot: _Slot) -> bool:
        llm, slot.llm, slot.config = slot.llm, None, None
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        if llm is None:
            return False
        llm.close()  # frees the context and unmaps the weights now, not when the garbage collector runs
        return True

    def unload_blocking(self, model_id: str) -> bool:
        """Unload a model (waiting for a request using it to end); False when it was not loaded."""
        slot = self._slots.get(model_id)
        if slot is None:
            return False
        with slot.lock:
            return self._close(slot)

    async def unload(self, model_id: str) -> bool:
        import anyio

        return await anyio.to_thread.run_sync(self.unload_blocking, model_id)

    def _used(self, model_id: str, slot: _Slot, info: LocalModelInfo) -> None:
        """After a use (the slot's lock is held): schedule the idle unload."""
        slot.last_used = self.clock()
        if slot.timer is not None:
            slot.timer.cancel()
        timer = threading.Timer(info.idle_unload_s, self._idle, (model_id, slot))
        timer.daemon = True
        slot.timer = timer
        timer.start()

    def _idle(self, model_id: str, slot: _Slot) -> None:
        if not slot.lock.acquire(blocking=False):
            return  # in use: its end schedules the next check
        try:
            config = slot.config
            if config is not None and self.clock() - slot.last_used >= config.idle_unload_s - 0.01:
                self._close(slot)
                log.info("local:%s unloaded (idle)", model_id)
        finally:
            slot.lock.release()

    # --- generation --------------------------------------------------------------------------------------------

    def generate(self, model_id: str, params: StreamTextParams) -> Generator[Event, None, tuple[FinishReason, Usage]]:
        """One answer, run in the calling (worker) thread: text deltas, then (finish, usage). Closing the
        generator stops the model at the next token."""
        info = self.get(model_id)
        slot = self._slot(model_id)
        with slot.lock:
            llm = self._loaded(slot, info)
            count = _TokenCount()
            stream = llm.create_chat_completion(messages=_messages(params), stream=True,
                                                logits_processor=[count], **_sampling(params))
            finish: FinishReason = "stop"
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        yield TextDeltaEvent(text=text)
                    if choice.get("finish_reason") == "length":
                        finish = "length"
            finally:
                stream.close()
                self._used(model_id, slot, info)
        return finish, Usage(input_tokens=count.prompt, output_tokens=count.sampled)

    async def count_tokens(self, model_id: str, params: StreamTextParams) -> int:
        """The prompt's tokens as the model reads it: its chat template applied, its own tokenizer."""
        import anyio

        self.get(model_id)
        self.require_installed()
        return await anyio.to_thread.run_sync(self.count_blocking, model_id, params)

    def count_blocking(self, model_id: str, params: StreamTextParams) -> int:
        info = self.get(model_id)
        slot = self._slot(model_id)
        with slot.lock:
            llm = self._loaded(slot, info)
            try:
                prompt, bos_added = _prompt(llm, _messages(params))
                return len(llm.tokenize(prompt.encode(), add_bos=not bos_added, special=True))
            finally:
                self._used(model_id, slot, info)

    # --- embeddings ---------------------------------------------------------------------------------------------

    async def embed(self, model_id: str, texts: list[str]) -> tuple[list[list[float]], int]:
        """Each text's vector (mean of its tokens' vectors, L2-normalised) and the input tokens counted."""
        import anyio

        info = self.get(model_id)
        if not info.embedding:
            raise SidecarError("invalid_request", f"local:{model_id} was not registered with embedding: true",
                               provider=PROVIDER)
        self.require_installed()
        return await anyio.to_thread.run_sync(self.embed_blocking, model_id, texts)

    def embed_blocking(self, model_id: str, texts: list[str]) -> tuple[list[list[float]], int]:
        info = self.get(model_id)
        slot = self._slot(model_id)
        with slot.lock:
            llm = self._loaded(slot, info)
            try:
                vectors, tokens = [], 0
                # One text per call: llama-cpp-python's batched path mixes the rows of a model that declares no
                # pooling (every row after the first came out as noise); one at a time they are right.
                for text in texts:
                    rows, n = llm.embed(text, normalize=False, truncate=True, return_count=True)
                    vectors.append(_pool(rows))
                    tokens += n
            finally:
                self._used(model_id, slot, info)
        return vectors, tokens


class _TokenCount:
    """A llama-cpp logits processor that only counts: it is called once per sampled token with every token so
    far, so its first call sees the prompt's length (the model's own tokenizer and chat template)."""

    def __init__(self) -> None:
        self.prompt = 0
        self.sampled = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.sampled == 0:
            self.prompt = len(input_ids)
        self.sampled += 1
        return scores


def _pool(rows: Any) -> list[float]:
    """Mean pooling over the tokens' vectors (a pooled vector is kept), then L2 normalisation."""
    if rows and isinstance(rows[0], float | int):
        vector = [float(x) for x in rows]
    else:
        n = len(rows)
        vector = [sum(col) / n for col in zip(*rows, strict=True)] if n else []
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def _prompt(llm: Any, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """The prompt llama-cpp-python's chat completion builds: the GGUF's chat template over the messages, with
    the opening of the answer (a model without a template: the texts, one a line); and whether it holds the
    BOS token already."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return "\n".join(m["content"] for m in messages), False
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token(i: int) -> str:
        return llm.detokenize([i], special=True).decode("utf-8", "replace") if i >= 0 else ""

    formatter = Jinja2ChatFormatter(template=template, eos_token=token(llm.token_eos()),
                                    bos_token=token(llm.token_bos()), add_generation_prompt=True)
    result = formatter(messages=messages)  # type: ignore[arg-type]
    return result.prompt, bool(result.added_special)


def _messages(params: StreamTextParams) -> list[dict[str, str]]:
    out = []
    for m in params.messages:
        role = ("system" if isinstance(m, SystemMessage) else "user" if isinstance(m, UserMessage)
                else "assistant" if isinstance(m, AssistantMessage) else "tool")
        out.append({"role": role, "content": text_of(m.content)})
    return out


def _sampling(params: StreamTextParams) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name in ("temperature", "top_p", "max_tokens", "seed", "stop"):
        value = getattr(params, name)
        if value is not UNSET:
            kwargs[name] = value
    fmt = params.response_format
    if fmt is not UNSET and fmt.type != "text":
        kwargs["response_format"] = {"type": "json_object", **({"schema": fmt.schema} if fmt.schema else {})}
    return kwargs

