"""Local models: a real GGUF (SmolLM2-135M-Instruct, scripts/test-model.sh) run by the real sidecar process
through llama-cpp-python. Without the file the tests skip, and fail under CI=true."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Sidecar, assert_clean, text_of

GGUF_ENV = "LLM_SIDECAR_TEST_GGUF"
DEFAULT_GGUF = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-sidecar-test" / (
    "SmolLM2-135M-Instruct.Q4_1.gguf")
ASK = [{"role": "user", "content": "What is the capital of France?"}]
LONG = [{"role": "user", "content": "Write a very long story about a dragon who learns to cook."}]


def _gguf() -> Path:
    path = Path(os.environ[GGUF_ENV]) if os.environ.get(GGUF_ENV) else DEFAULT_GGUF
    missing = []
    if not path.is_file():
        missing.append(f"no model: set {GGUF_ENV} (scripts/test-model.sh fetches it)")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        missing.append("llama-cpp-python is not installed (pip install -e '.[local]')")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))
    return path


@pytest.fixture(scope="module")
def gguf() -> Path:
    return _gguf()


@pytest.fixture(scope="module")
def smol(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One sidecar with the model registered as ``local:smol`` (embedding too)."""
    sc = Sidecar(tmp_path_factory.mktemp("data"))
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    sc.call("register_local_model", {"id": "smol", "path": str(gguf), "embedding": True})
    yield sc
    sc.kill()


def _done(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "done", events[-3:]
    return events[-1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# --- the bars --------------------------------------------------------------------------------------------------------


def test_register_then_stream_a_real_answer(smol: Sidecar, gguf: Path) -> None:
    [info] = [m for m in smol.call("list_local_models") if m["id"] == "smol"]
    # what SmolLM2's header says (read without loading the weights)
    assert (info["architecture"], info["context_length"], info["embedding_length"]) == ("llama", 8192, 576)
    assert "<|im_start|>" in info["chat_template"] and info["size_bytes"] == gguf.stat().st_size
    events = smol.stream({"model": "local:smol", "messages": ASK, "max_tokens": 40}, timeout=120)
    done = _done(events)
    assert text_of(events).strip()
    assert done["usage"]["input_tokens"] > 0 and done["usage"]["output_tokens"] > 0
    assert "estimated" not in done["usage"]  # counted by the model's own tokenizer
    assert done["model"] == "local:smol"
    assert_clean(smol)


def test_abort_mid_generation_then_the_next_request_works(smol: Sidecar) -> None:
    sid = smol.call("llm_stream_text", {"model": "local:smol", "messages": LONG, "max_tokens": 3000})["stream_id"]
    smol.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"].get("type") == "text_delta",
                  timeout=120)
    assert smol.call("llm_abort_stream", {"stream_id": sid})["aborted"] is True
    events = smol.wait_stream_end(sid, timeout=30)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "cancelled"
    done = _done(smol.stream({"model": "local:smol", "messages": ASK, "max_tokens": 8}, timeout=120))
    assert done["usage"]["output_tokens"] > 0


def test_a_text_file_named_gguf_is_refused_and_the_sidecar_keeps_serving(smol: Sidecar, tmp_path: Path) -> None:
    fake = tmp_path / "x.gguf"
    fake.write_text("root:$6$secret-hash:19000:0:99999:7:::\n")
    resp = smol.request("register_local_model", {"id": "fake", "path": str(fake)})
    err = resp["error"]["data"]
    assert err["code"] == "invalid_request" and str(fake) in err["message"] and "GGUF magic" in err["message"]
    assert "secret" not in json.dumps(resp)  # never the file's content
    assert "fake" not in [m["id"] for m in smol.call("list_local_models")]
    assert smol.call("list_providers")
    assert_clean(smol)


def test_embeddings_mean_something_and_batched_equals_one_at_a_time(gguf: Path, tmp_path: Path) -> None:
    from sidecar.local import LocalModels
    from sidecar.settings import SettingsStore
    from sidecar.types import RegisterLocalModelParams

    models = LocalModels(SettingsStore(tmp_path))
    models.register(RegisterLocalModelParams(id="smol", path=str(gguf), embedding=True))
    texts = ["The cat sat on the mat.", "A cat was sitting on the rug.", "Quarterly tax filings are due in April."]
    batched, tokens = asyncio.run(models.embed("smol", texts))
    alone = [asyncio.run(models.embed("smol", [t]))[0][0] for t in texts]
    models.unload_blocking("smol")
    assert [len(v) for v in batched] == [576, 576, 576] and tokens > len(texts)
    for b, a in zip(batched, alone, strict=True):
        assert _cos(b, a) > 0.999  # the rows of a batch are not noise
    assert _cos(batched[0], batched[1]) > _cos(batched[0], batched[2])


def test_registered_models_are_listed_with_the_providers_models(smol: Sidecar, gguf: Path) -> None:
    models = smol.call("llm_list_available_models", {"provider": "local"})
    smol_row = next(m for m in models if m["id"] == "local:smol")
    assert smol_row["provider"] == "local" and smol_row["context_window"] > 0
    smol.call("register_local_model", {"id": "smol-two", "path": str(gguf)})
    try:  # listed at once, not after the model-list cache expires
        assert "local:smol-two" in {m["id"] for m in smol.call("llm_list_available_models", {"provider": "local"})}
    finally:
        smol.call("unregister_local_model", {"id": "smol-two"})
    assert "local:smol-two" not in {m["id"] for m in smol.call("llm_list_available_models", {"provider": "local"})}


def test_llm_embed_on_a_registered_local_model(smol: Sidecar) -> None:
    """The bar: llm_embed on the model registered with embedding: true, through the real sidecar."""
    texts = ["The cat sat on the mat.", "A cat was sitting on the rug.", "Quarterly tax filings are due in April."]
    result = smol.call("llm_embed", {"model": "local:smol", "input": texts}, timeout=120)
    vectors = result["embeddings"]
    assert result["model"] == "local:smol" and [len(v) for v in vectors] == [576, 576, 576]
    assert result["usage"]["input_tokens"] > len(texts)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2])
    # a dimension other than the model's is refused before any work
    resp = smol.request("llm_embed", {"model": "local:smol", "input": ["x"], "dimensions": 8})
    assert resp["error"]["data"]["code"] == "invalid_request"


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_embedding_needs_a_model_registered_for_it(gguf: Path, tmp_path: Path) -> None:
    from sidecar.errors import SidecarError
    from sidecar.local import LocalModels
    from sidecar.settings import SettingsStore
    from sidecar.types import RegisterLocalModelParams

    models = LocalModels(SettingsStore(tmp_path))
    models.register(RegisterLocalModelParams(id="chat", path=str(gguf)))
    for model in ("chat", "nope"):
        with pytest.raises(SidecarError) as caught:
            asyncio.run(models.embed(model, ["hi"]))
        assert caught.value.info.code == "invalid_request" and f"local:{model}" in caught.value.info.message


# --- generation settings ---------------------------------------------------------------------------------------------


def test_max_tokens_ends_with_length(smol: Sidecar) -> None:
    done = _done(smol.stream({"model": "local:smol", "messages": LONG, "max_tokens": 5}, timeout=120))
    assert done["finish_reason"] == "length" and done["usage"]["output_tokens"] == 5


def test_stop_sequence_cuts_the_answer(smol: Sidecar) -> None:
    base = {"model": "local:smol", "messages": LONG, "max_tokens": 30, "temperature": 0.0, "seed": 1}
    full = text_of(smol.stream(base, timeout=120))
    words = full.split()
    assert len(words) > 6, full
    stop = words[5]
    cut = smol.stream({**base, "stop": [stop]}, timeout=120)
    assert text_of(cut) == full[: full.index(stop)]
    assert _done(cut)["finish_reason"] == "stop"


def test_seed_and_temperature_reproduce(smol: Sidecar) -> None:
    base = {"model": "local:smol", "messages": LONG, "max_tokens": 20, "temperature": 1.0, "top_p": 0.9}
    a = text_of(smol.stream({**base, "seed": 7}, timeout=120))
    b = text_of(smol.stream({**base, "seed": 7}, timeout=120))
    assert a == b and a.strip()


def test_json_response_format_uses_a_grammar(smol: Sidecar) -> None:
    events = smol.stream({"model": "local:smol", "max_tokens": 40, "response_format": {"type": "json_object"},
                          "messages": [{"role": "user", "content": "Give me a JSON object about a cat."}]},
                         timeout=120)
    assert text_of(events).lstrip().startswith("{")


def test_json_schema_response_format_constrains_the_answer(smol: Sidecar) -> None:
    schema = {"type": "object", "properties": {"capital": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}},
              "required": ["capital"]}
    events = smol.stream({"model": "local:smol", "max_tokens": 60, "messages": ASK,
                          "response_format": {"type": "json_schema", "name": "answer", "schema": schema}}, timeout=120)
    answer = json.loads(text_of(events))
    assert set(answer) == {"capital"} and answer["capital"] in ("Paris", "Rome", "Oslo")
    assert _done(events)["finish_reason"] == "stop"


# --- concurrency -----------------------------------------------------------------------------------------------------


def test_other_providers_answer_while_a_model_generates(smol: Sidecar) -> None:
    sid = smol.call("llm_stream_text", {"model": "local:smol", "messages": LONG, "max_tokens": 3000})["stream_id"]
    smol.wait_for(lambda m: m.get("method") == f"llm-stream-{sid}" and m["params"].get("type") == "text_delta",
                  timeout=120)
    echo = smol.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "ping"}]})
    assert text_of(echo) == "ping"
    assert smol.call("list_providers")
    assert smol.events(sid)[-1]["type"] not in ("done", "error")  # the model was still generating meanwhile
    smol.call("llm_abort_stream", {"stream_id": sid})
    smol.wait_stream_end(sid, timeout=30)


def test_requests_for_a_model_queue_in_order(smol: Sidecar) -> None:
    params = {"model": "local:smol", "messages": ASK, "max_tokens": 12}
    first = smol.call("llm_stream_text", params)["stream_id"]
    second = smol.call("llm_stream_text", params)["stream_id"]
    smol.wait_stream_end(second, timeout=120)
    smol.wait_stream_end(first, timeout=120)
    with smol._cond:
        order = [(m["method"], m["params"]["type"]) for m in smol.messages
                 if isinstance(m, dict) and m.get("method") in (f"llm-stream-{first}", f"llm-stream-{second}")]
    first_done = order.index((f"llm-stream-{first}", "done"))
    second_text = order.index((f"llm-stream-{second}", "text_delta"))
    assert first_done < second_text  # FIFO, one at a time: the second starts after the first ended


# --- memory ----------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_unload_frees_the_memory(gguf: Path, tmp_path: Path) -> None:
    sc = Sidecar(tmp_path)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        sc.call("register_local_model", {"id": "m", "path": str(gguf)})
        before = _rss_mb(sc.proc.pid)
        _done(sc.stream({"model": "local:m", "messages": ASK, "max_tokens": 4}, timeout=120))
        loaded = _rss_mb(sc.proc.pid)
        assert sc.call("list_local_models")[0]["loaded"] is True
        assert sc.call("unload_local_model", {"id": "m"}) == {"unloaded": True}
        after = _rss_mb(sc.proc.pid)
        assert sc.call("list_local_models")[0]["loaded"] is False
        assert loaded - before > 60, (before, loaded)  # the weights (~90 MB) and the context
        assert loaded - after > 60, (loaded, after)
        assert sc.call("unload_local_model", {"id": "m"}) == {"unloaded": False}
        _done(sc.stream({"model": "local:m", "messages": ASK, "max_tokens": 4}, timeout=120))  # loads again
    finally:
        sc.kill()


def test_idle_unload(gguf: Path, tmp_path: Path) -> None:
    sc = Sidecar(tmp_path)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        sc.call("register_local_model", {"id": "m", "path": str(gguf), "idle_unload_s": 0.2})
        _done(sc.stream({"model": "local:m", "messages": ASK, "max_tokens": 4}, timeout=120))
        for _ in range(200):
            if not sc.call("list_local_models")[0]["loaded"]:
                break
            time.sleep(0.05)
        assert sc.call("list_local_models")[0]["loaded"] is False
    finally:
        sc.kill()


# --- bad files -------------------------------------------------------------------------------------------------------


def test_truncated_file_is_a_load_error_and_the_sidecar_survives(smol: Sidecar, gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with gguf.open("rb") as src:
        cut.write_bytes(src.read(gguf.stat().st_size // 2))  # the header is whole; half the weights are missing
    smol.call("register_local_model", {"id": "cut", "path": str(cut)})  # the header reads fine
    events = smol.stream({"model": "local:cut", "messages": ASK, "max_tokens": 4}, timeout=120)
    err = events[-1]["error"]
    assert events[-1]["type"] == "error" and err["code"] == "invalid_request" and str(cut) in err["message"]
    assert "could not load" in err["message"]
    assert _done(smol.stream({"model": "local:smol", "messages": ASK, "max_tokens": 4}, timeout=120))
    smol.call("unregister_local_model", {"id": "cut"})
    assert_clean(smol)


def test_corrupt_header_is_refused(smol: Sidecar, gguf: Path, tmp_path: Path) -> None:
    cases = {
        "short.gguf": b"GGUF\x03\x00",  # ends inside the header
        "huge.gguf": b"GGUF\x03\x00\x00\x00" + (1).to_bytes(8, "little") + (10**12).to_bytes(8, "little"),
        "version.gguf": b"GGUF\x09\x00\x00\x00" + bytes(64),
    }
    with gguf.open("rb") as src:  # a real header whose first key's length is garbage
        head = bytearray(src.read(4096))
    head[24:32] = (2**40).to_bytes(8, "little")
    cases["garbled.gguf"] = bytes(head)
    expected = {"short.gguf": "truncated", "huge.gguf": "metadata entries", "version.gguf": "version 9",
                "garbled.gguf": "string in the header"}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        err = smol.request("register_local_model", {"id": "bad", "path": str(path)})["error"]["data"]
        assert err["code"] == "invalid_request" and str(path) in err["message"], err
        assert expected[name] in err["message"], err
    for path, why in ((tmp_path / "none.gguf", "no such file"), (tmp_path, "not a regular file")):
        err = smol.request("register_local_model", {"id": "bad", "path": str(path)})["error"]["data"]
        assert err["code"] == "invalid_request" and why in err["message"], err
    err = smol.request("register_local_model", {"id": "bad", "path": "models/x.gguf"})["error"]["data"]
    assert "absolute" in err["message"]
    assert_clean(smol)


# --- registry, discovery, the missing extra --------------------------------------------------------------------------


def test_registry_persists_and_unregisters(gguf: Path, tmp_path: Path) -> None:
    sc = Sidecar(tmp_path)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    sc.call("register_local_model", {"id": "m", "path": str(gguf), "n_ctx": 512, "chat_format": "chatml"})
    sc.kill()
    sc = Sidecar(tmp_path)
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        [m] = sc.call("list_local_models")
        assert (m["id"], m["path"], m["n_ctx"], m["chat_format"], m["loaded"]) == ("m", str(gguf), 512, "chatml", False)
        done = _done(sc.stream({"model": "local:m", "messages": ASK, "max_tokens": 4}, timeout=120))
        assert done["usage"]["input_tokens"] > 0
        assert sc.call("unregister_local_model", {"id": "m"}) == {"removed": True}
        assert sc.call("list_local_models") == []
        err = sc.request("llm_stream_text", {"model": "local:m", "messages": ASK})["error"]["data"]
        assert err["code"] == "invalid_request" and "local:m" in err["message"]
    finally:
        sc.kill()


def test_discover_finds_gguf_files_and_ollama_blobs(gguf: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    blobs = home / ".ollama" / "models" / "blobs"
    blobs.mkdir(parents=True)
    with gguf.open("rb") as src:  # Ollama's blobs have no extension; only the header is read
        (blobs / "sha256-aaaa").write_bytes(src.read(2 << 20))
    (blobs / "sha256-bbbb").write_bytes(b"{{ .Prompt }}" * 100_000)  # a template blob: not GGUF
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / "mine.gguf").symlink_to(gguf)
    (data / "models" / "notes.gguf").write_bytes(b"just text " * 200_000)
    sc = Sidecar(data, env={"HOME": str(home), "OLLAMA_MODELS": ""})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        found = {(Path(d["path"]).name, d["source"], d.get("architecture")) for d in
                 sc.call("discover_local_models", {}, timeout=60)}
        assert found == {("mine.gguf", "data_dir", "llama"), ("sha256-aaaa", "ollama", "llama")}
        found = sc.call("discover_local_models", {"dirs": [str(data / "models")]}, timeout=60)
        assert [(Path(d["path"]).name, d["source"]) for d in found] == [("mine.gguf", "dir")]
        err = sc.request("discover_local_models", {"dirs": ["relative"]})["error"]["data"]
        assert err["code"] == "invalid_request"
    finally:
        sc.kill()


def test_without_llama_cpp_python_local_requests_name_the_extra(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "llama_cpp"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    sc = Sidecar(tmp_path / "data", env={"PYTHONPATH": str(shim.parent)})
    sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
    try:
        err = sc.request("llm_stream_text", {"model": "local:any", "messages": ASK})["error"]["data"]
        assert err["code"] == "provider_not_installed" and "llm-sidecar[local]" in err["message"]
        assert text_of(sc.stream({"model": "mock:echo", "messages": [{"role": "user", "content": "ok"}]})) == "ok"
    finally:
        sc.kill()


def test_count_tokens_is_exact_by_the_models_own_tokenizer_and_template(smol: Sidecar) -> None:
    """count_tokens for a local model says what the model then reads: the prompt length the generation itself
    reports (llama.cpp's count of the templated prompt) for the same messages."""
    messages = [{"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": "What is the capital of France? Think about the Seine."},
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "And of Italy?"}]
    counted = smol.call("count_tokens", {"model": "local:smol", "messages": messages}, timeout=120)
    assert counted["exact"] is True
    done = _done(smol.stream({"model": "local:smol", "messages": messages, "max_tokens": 2}, timeout=120))
    assert counted["input_tokens"] == done["usage"]["input_tokens"] > 20
