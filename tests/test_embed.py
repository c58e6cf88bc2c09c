"""llm_embed on every protocol that has embeddings, against a loopback fake of each API; the proxy's
``/v1/embeddings`` driven by the official ``openai`` package.

The fake embeds text ``t<n>`` as a vector whose first value is ``n`` (and second the text's length), so the
order of the answer can be checked against the input without trusting the sidecar; it reports input tokens
as one per text plus one per character, except where the real API reports none (Gemini)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import ModuleSidecar
from harness import Sidecar, Upstream

OPENAI_KEY = "sk-Q7wE9rT2yU4iO6pA8sD0fG1hXk"
GEMINI_KEY = "AIzaSyQ0w1e2r3t4y5u6i7o8p9SECRET"
COHERE_KEY = "Zx8Cv6Bn4Mm2Lk0Jh9Gf7Ds5Qa"
AZURE_KEY = "Pq1Wr3Ty5Ui7Op9As2Df4Gh6Za"
KEYS = (OPENAI_KEY, GEMINI_KEY, COHERE_KEY, AZURE_KEY)


def texts(n: int, start: int = 0) -> list[str]:
    return [f"t{i}" for i in range(start, start + n)]


def vector(text: str, dims: int | None) -> list[float]:
    """``t17`` -> [17.0, 3.0, 0.5, ...]: what the fake answers for a text."""
    number = float(text[1:]) if text[1:].isdigit() else -1.0
    return ([number, float(len(text))] + [0.5] * 30)[: dims or 3]


def reported_tokens(batch: list[str]) -> int:
    return sum(1 + len(t) for t in batch)


@dataclass
class Got:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeEmbeddings:
    """OpenAI, Azure, Gemini, Cohere and Ollama embedding endpoints on one loopback server."""

    seen: list[Got] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    """answered first, one per request, before any embedding"""

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw)
                fake.seen.append(Got("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if fake.failures:
                    status, headers, payload = fake.failures.pop(0)
                    return self._send(status, payload, headers)
                self._send(200, json.dumps(fake.answer(self.path, body)).encode())

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith(":batchEmbedContents"):
            return {"embeddings": [{"values": vector(r["content"]["parts"][0]["text"], r.get("outputDimensionality"))}
                                   for r in body["requests"]]}
        if path == "/v2/embed":
            return {"id": "x", "embeddings": {"float": [vector(t, body.get("output_dimension"))
                                                        for t in body["texts"]]},
                    "texts": body["texts"], "meta": {"billed_units": {"input_tokens": reported_tokens(body["texts"])}}}
        if path == "/api/embed":
            found = [vector(t, body.get("dimensions")) for t in body["input"]]
            if body["model"] == "short":
                found = found[:-1]
            return {"model": body["model"], "embeddings": found, "prompt_eval_count": reported_tokens(body["input"])}
        # OpenAI and Azure: the data in shuffled order, each with its index (as the API allows)
        data = [{"object": "embedding", "index": i, "embedding": vector(t, body.get("dimensions"))}
                for i, t in enumerate(body["input"])]
        random.shuffle(data)
        tokens = reported_tokens(body["input"])
        return {"object": "list", "data": data, "model": body.get("model", "deployment"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeEmbeddings]:
    server = FakeEmbeddings()
    yield server
    server.close()


@pytest.fixture
def sc(module_sidecar: ModuleSidecar, fake: FakeEmbeddings) -> Iterator[Sidecar]:
    """The catalog's providers, moved to the fake by the app's trusted side (so their env keys go there)."""
    sidecar = module_sidecar.get(
        "--base-url", f"openai={fake.url}/v1", "--base-url", f"gemini={fake.url}/v1beta",
        "--base-url", f"cohere={fake.url}", "--base-url", f"ollama={fake.url}",
        "--base-url", f"azure-openai={fake.url}/openai",
        env={"OPENAI_API_KEY": OPENAI_KEY, "GEMINI_API_KEY": GEMINI_KEY, "COHERE_API_KEY": COHERE_KEY,
             "AZURE_OPENAI_API_KEY": AZURE_KEY})
    fake.seen.clear()
    fake.failures.clear()
    yield sidecar
    assert sidecar.bad_lines == []
    assert_no_leak(sidecar)


def assert_no_leak(sc: Sidecar) -> None:
    out = b"".join(sc.raw_lines).decode() + sc.stderr.decode(errors="replace")
    for secret in KEYS:
        for i in range(len(secret) - 5):
            assert secret[i:i + 6] not in out, f"a part of a key leaked: {secret[i:i + 6]!r}"


def error_of(resp: dict[str, Any]) -> dict[str, Any]:
    assert resp.get("error", {}).get("code") == -32000, resp
    return {**resp["error"]["data"], "message": resp["error"]["message"]}


def first_values(result: dict[str, Any]) -> list[float]:
    return [v[0] for v in result["embeddings"]]


# --- each protocol: the request it sent, the answer in order, usage -------------------------------------


def test_openai_request_dimensions_and_order(sc: Sidecar, fake: FakeEmbeddings) -> None:
    result = sc.call("llm_embed", {"model": "openai:text-embedding-3-small", "input": ["t0", "t1", "t22"],
                                   "dimensions": 2})
    assert result["embeddings"] == [[0.0, 2.0], [1.0, 2.0], [22.0, 3.0]]
    assert result["model"] == "openai:text-embedding-3-small"
    assert result["usage"] == {"input_tokens": 3 + 2 + 2 + 3, "output_tokens": 0}
    [got] = fake.seen
    assert (got.method, got.path) == ("POST", "/v1/embeddings")
    assert got.body == {"model": "text-embedding-3-small", "input": ["t0", "t1", "t22"], "dimensions": 2}
    assert got.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert got.headers["content-type"] == "application/json"


def test_openai_batches_at_2048_in_order(sc: Sidecar, fake: FakeEmbeddings) -> None:
    inputs = texts(4100)
    result = sc.call("llm_embed", {"model": "openai:text-embedding-3-large", "input": inputs, "dimensions": 3},
                     timeout=60)
    assert [len(g.body["input"]) for g in fake.seen] == [2048, 2048, 4]
    assert [g.body["input"][0] for g in fake.seen] == ["t0", "t2048", "t4096"]
    assert first_values(result) == [float(i) for i in range(4100)]
    assert result["usage"]["input_tokens"] == reported_tokens(inputs)


def test_azure_deployment_url_and_key_header(sc: Sidecar, fake: FakeEmbeddings) -> None:
    result = sc.call("llm_embed", {"model": "azure-openai:my-embed", "input": ["t5"]})
    assert result["embeddings"] == [[5.0, 2.0, 0.5]]
    [got] = fake.seen
    assert got.path == "/openai/deployments/my-embed/embeddings?api-version=2024-10-21"
    assert got.body == {"input": ["t5"]}
    assert got.headers["api-key"] == AZURE_KEY and "authorization" not in got.headers


def test_gemini_batch_embed_contents_at_100(sc: Sidecar, fake: FakeEmbeddings) -> None:
    inputs = texts(250)
    result = sc.call("llm_embed", {"model": "gemini:gemini-embedding-001", "input": inputs, "dimensions": 4})
    assert [len(g.body["requests"]) for g in fake.seen] == [100, 100, 50]
    got = fake.seen[0]
    assert got.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert got.body["requests"][1] == {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "t1"}]},
                                       "outputDimensionality": 4}
    assert got.headers["x-goog-api-key"] == GEMINI_KEY and "key=" not in got.path
    assert first_values(result) == [float(i) for i in range(250)]
    assert all(len(v) == 4 for v in result["embeddings"])
    # Gemini reports no tokens: estimated, and not zero
    assert result["usage"]["estimated"] is True and result["usage"]["input_tokens"] > 0


def test_gemini_provider_options_reach_each_request(sc: Sidecar, fake: FakeEmbeddings) -> None:
    sc.call("llm_embed", {"model": "gemini:text-embedding-004", "input": ["t1", "t2"],
                          "provider_options": {"taskType": "RETRIEVAL_QUERY"}})
    assert [r["taskType"] for r in fake.seen[0].body["requests"]] == ["RETRIEVAL_QUERY", "RETRIEVAL_QUERY"]


def test_cohere_v2_embed_at_96(sc: Sidecar, fake: FakeEmbeddings) -> None:
    inputs = texts(200)
    result = sc.call("llm_embed", {"model": "cohere:embed-v4.0", "input": inputs, "dimensions": 5})
    assert [len(g.body["texts"]) for g in fake.seen] == [96, 96, 8]
    got = fake.seen[0]
    assert got.path == "/v2/embed"
    assert got.body == {"model": "embed-v4.0", "texts": texts(96), "input_type": "search_document",
                        "embedding_types": ["float"], "output_dimension": 5}
    assert got.headers["authorization"] == f"Bearer {COHERE_KEY}"
    assert first_values(result) == [float(i) for i in range(200)]
    assert result["usage"] == {"input_tokens": reported_tokens(inputs), "output_tokens": 0}


def test_cohere_input_type_from_provider_options(sc: Sidecar, fake: FakeEmbeddings) -> None:
    sc.call("llm_embed", {"model": "cohere:embed-english-v3.0", "input": ["t1"],
                          "provider_options": {"input_type": "search_query"}})
    assert fake.seen[0].body == {"model": "embed-english-v3.0", "texts": ["t1"], "input_type": "search_query",
                                 "embedding_types": ["float"]}


def test_ollama_api_embed_unknown_model_goes_through(sc: Sidecar, fake: FakeEmbeddings) -> None:
    inputs = texts(130)
    result = sc.call("llm_embed", {"model": "ollama:nomic-embed-text", "input": inputs})
    assert [len(g.body["input"]) for g in fake.seen] == [64, 64, 2]
    got = fake.seen[0]
    assert got.path == "/api/embed" and got.body == {"model": "nomic-embed-text", "input": texts(64)}
    assert "authorization" not in got.headers
    assert first_values(result) == [float(i) for i in range(130)]
    assert result["usage"]["input_tokens"] == reported_tokens(inputs) and "estimated" not in result["usage"]


def test_fewer_vectors_than_texts_is_a_protocol_error(sc: Sidecar, fake: FakeEmbeddings) -> None:
    err = error_of(sc.request("llm_embed", {"model": "ollama:short", "input": ["t1", "t2"]}))
    assert err["code"] == "protocol_error" and "1 vectors came back for 2 texts" in err["message"]


# --- refused before the network ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["openai:gpt-4o-mini", "cohere:command-a-03-2025", "anthropic:claude-haiku-4-5",
                                   "gemini:gemini-2.5-flash", "mock:echo"])
def test_chat_model_refused_before_the_network(sc: Sidecar, fake: FakeEmbeddings, model: str) -> None:
    err = error_of(sc.request("llm_embed", {"model": model, "input": ["t1"]}))
    assert err["code"] == "invalid_request" and "chat model" in err["message"]
    assert fake.seen == []


def test_provider_without_embeddings_refused(sc: Sidecar, fake: FakeEmbeddings) -> None:
    err = error_of(sc.request("llm_embed", {"model": "anthropic:some-future-model", "input": ["t1"]}))
    assert err["code"] == "invalid_request" and "no embeddings" in err["message"]
    assert fake.seen == []


@pytest.mark.parametrize("params", [{"model": "openai:text-embedding-3-small", "input": []},
                                    {"model": "openai:text-embedding-3-small", "input": ["a"], "dimensions": 0},
                                    {"model": "mock:embed", "input": ["a"], "dimensions": 65537},
                                    {"model": "openai:text-embedding-3-small", "input": [[1, 2]]},
                                    {"model": "openai:text-embedding-3-small", "input": "a"},
                                    {"model": "nocolon", "input": ["a"]}])
def test_bad_params(sc: Sidecar, fake: FakeEmbeddings, params: dict[str, Any]) -> None:
    resp = sc.request("llm_embed", params)
    assert "error" in resp and "result" not in resp
    assert fake.seen == []
    assert sc.call("sidecar_info")["version"]


def test_embedding_model_in_the_list_and_refused_for_chat(sc: Sidecar, fake: FakeEmbeddings) -> None:
    models = {m["id"]: m for m in sc.call("llm_list_available_models", {"provider": "cohere"})}
    assert models["cohere:embed-v4.0"]["supports_embedding"] is True
    assert "supports_embedding" not in models["cohere:command-a-03-2025"]
    err = error_of(sc.request("llm_stream_text", {"model": "cohere:embed-v4.0",
                                                  "messages": [{"role": "user", "content": "hi"}]}))
    assert err["code"] == "invalid_request" and "llm_embed" in err["message"]


# --- errors and retries -------------------------------------------------------------------------------


def test_401_is_authentication_failed_not_retried(sc: Sidecar, fake: FakeEmbeddings) -> None:
    fake.failures.append((401, {}, b'{"error":{"message":"Incorrect API key provided: sk-Q7w***hXk",'
                                   b'"type":"invalid_request_error","code":"invalid_api_key"}}'))
    err = error_of(sc.request("llm_embed", {"model": "openai:text-embedding-3-small", "input": ["t1"]}))
    assert err["code"] == "authentication_failed" and err["status"] == 401
    assert len(fake.seen) == 1


def test_429_then_ok_is_retried(sc: Sidecar, fake: FakeEmbeddings) -> None:
    fake.failures.append((429, {"retry-after": "0"}, b'{"error":{"message":"Rate limit reached","code":"rate_limit"}}'))
    result = sc.call("llm_embed", {"model": "cohere:embed-v4.0", "input": ["t3", "t4"]})
    assert first_values(result) == [3.0, 4.0]
    assert len(fake.seen) == 2 and fake.seen[0].body == fake.seen[1].body


def test_429_every_time_is_rate_limited(sc: Sidecar, fake: FakeEmbeddings) -> None:
    body = b'{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}'
    fake.failures += [(429, {"retry-after": "0"}, body)] * 3
    err = error_of(sc.request("llm_embed", {"model": "gemini:gemini-embedding-001", "input": ["t1"]}))
    assert err["code"] == "rate_limited" and err["status"] == 429
    assert len(fake.seen) == 3  # the first try and two retries


def test_failure_in_a_later_batch_fails_the_call(sc: Sidecar, fake: FakeEmbeddings) -> None:
    first = {"model": "m", "embeddings": [vector(t, None) for t in texts(64)]}
    fake.failures += [(200, {}, json.dumps(first).encode()),
                      (400, {}, b'{"error":"the input length exceeds the context length"}')]
    err = error_of(sc.request("llm_embed", {"model": "ollama:nomic-embed-text", "input": texts(100)}))
    assert err["code"] == "context_length_exceeded" and err["status"] == 400  # Ollama's words for it
    assert "exceeds the context length" in err["message"]
    assert len(fake.seen) == 2


# --- the key goes only to its host -------------------------------------------------------------------------


def test_key_never_goes_to_another_host(sc: Sidecar, fake: FakeEmbeddings) -> None:
    try:
        other = Upstream(host="127.0.0.2")
    except OSError as exc:  # pragma: no cover - Linux routes all of 127/8 to lo
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    try:
        sc.call("configure_provider", {"id": "openai", "base_url": other.base_url})
        err = error_of(sc.request("llm_embed", {"model": "openai:text-embedding-3-small", "input": ["t1"]}))
        assert err["code"] == "key_host_mismatch"
        assert other.connections == 0 and other.seen == []
    finally:
        sc.call("configure_provider", {"id": "openai", "base_url": None})
        other.close()
    assert sc.call("llm_embed", {"model": "openai:text-embedding-3-small", "input": ["t1"]})["embeddings"]
    assert fake.seen[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"


# --- the proxy, through the official openai package ------------------------------------------------------


@pytest.fixture
def client(sc: Sidecar) -> openai.OpenAI:
    started = sc.call("start_llm_proxy", {})
    return openai.OpenAI(base_url=started["url"], api_key=started["token"], max_retries=0)


def test_proxy_embeddings_with_the_openai_package(sc: Sidecar, fake: FakeEmbeddings, client: openai.OpenAI) -> None:
    # the package asks for base64 unless told otherwise, and decodes it
    answer = client.embeddings.create(model="cohere:embed-v4.0", input=["t7", "t8", "t9"], dimensions=3)
    assert [d.embedding for d in answer.data] == [[7.0, 2.0, 0.5], [8.0, 2.0, 0.5], [9.0, 2.0, 0.5]]
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert answer.model == "cohere:embed-v4.0"
    assert answer.usage.prompt_tokens == reported_tokens(["t7", "t8", "t9"])
    assert fake.seen[-1].headers["authorization"] == f"Bearer {COHERE_KEY}"

    one = client.embeddings.create(model="openai:text-embedding-3-small", input="t42", encoding_format="float")
    assert [d.embedding for d in one.data] == [[42.0, 3.0, 0.5]]


def test_proxy_embeddings_errors_are_openai_shaped(sc: Sidecar, fake: FakeEmbeddings, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(model="openai:text-embedding-3-small", input=[[1, 2, 3]])
    assert "token arrays" in str(bad.value)
    with pytest.raises(openai.BadRequestError) as chat:
        client.embeddings.create(model="openai:gpt-4o", input="t1")
    assert "chat model" in str(chat.value)
    assert fake.seen == []
    fake.failures += [(429, {"retry-after": "0"}, b'{"error":{"message":"slow down","code":"rate_limit"}}')] * 3
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="openai:text-embedding-3-small", input="t1")
    fake.failures.append((401, {}, b'{"error":{"message":"bad key","code":"invalid_api_key"}}'))
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model="openai:text-embedding-3-small", input="t1")
    with pytest.raises(openai.AuthenticationError):  # the proxy's own token
        openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0).embeddings.create(
            model="openai:text-embedding-3-small", input="t1")


# --- the local provider: see tests/test_local_models.py (llm_embed on a real GGUF) -------------------------


# --- offline: mock:embed -------------------------------------------------------------------------------------


def test_mock_embed_offline(sc: Sidecar, fake: FakeEmbeddings) -> None:
    import math

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))

    texts_ = ["The cat sat on the mat", "the CAT sat on a mat!", "Quarterly revenue grew", ""]
    result = sc.call("llm_embed", {"model": "mock:embed", "input": texts_})
    a, b, c, empty = result["embeddings"]
    assert len(a) == 64 and all(len(v) == 64 for v in result["embeddings"])
    assert math.isclose(math.hypot(*a), 1.0)
    assert cos(a, b) > 0.7 > cos(a, c)
    assert empty == [0.0] * 64
    assert result["usage"]["input_tokens"] == 6 + 6 + 3
    huge = error_of(sc.request("llm_embed", {"model": "mock:embed", "input": ["a"] * 1000, "dimensions": 65536}))
    assert huge["code"] == "invalid_request" and "max_body_bytes" in huge["message"]
    again = sc.call("llm_embed", {"model": "mock:embed", "input": texts_[:1], "dimensions": 16})
    assert len(again["embeddings"][0]) == 16
    assert sc.call("llm_embed", {"model": "mock:embed", "input": texts_[:1]})["embeddings"][0] == a
    assert fake.seen == []


def test_embeddings_in_the_usage_log(sc: Sidecar, fake: FakeEmbeddings) -> None:
    inputs = texts(150, start=1000)
    sc.call("llm_embed", {"model": "cohere:embed-multilingual-v3.0", "input": inputs})
    fake.failures.append((401, {}, b'{"message":"invalid api token"}'))
    error_of(sc.request("llm_embed", {"model": "cohere:embed-multilingual-v3.0", "input": ["t1"]}))
    error_of(sc.request("llm_embed", {"model": "cohere:command-a-03-2025", "input": ["t1"]}))  # refused: not logged
    groups = {g["key"]: g for g in sc.call("get_usage_stats", {"group_by": "model"})["groups"]}
    group = groups["cohere:embed-multilingual-v3.0"]
    assert (group["requests"], group["errors"]) == (2, 1)
    assert (group["input_tokens"], group["output_tokens"]) == (reported_tokens(inputs), 0)
    assert group["cost_usd"] == pytest.approx(reported_tokens(inputs) * 0.1 / 1e6)
    assert "cohere:command-a-03-2025" not in groups


def test_proxy_embeddings_bad_bodies(sc: Sidecar, fake: FakeEmbeddings, client: openai.OpenAI) -> None:
    for body, words in [({"model": "openai:text-embedding-3-small", "input": []}, "at least one text"),
                        ({"model": "openai:text-embedding-3-small", "input": "a", "dimensions": 0}, "dimensions"),
                        ({"model": "openai:text-embedding-3-small"}, "input"),
                        ({"model": "openai:text-embedding-3-small", "input": ["a", 5]}, "input[1]")]:
        with pytest.raises(openai.BadRequestError) as bad:
            client.post("/embeddings", body=body, cast_to=object)
        assert words in str(bad.value), (body, str(bad.value))
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="a")  # no provider: unknown model
    assert fake.seen == []


def test_proxy_embeddings_behind_the_same_gate(sc: Sidecar, fake: FakeEmbeddings, client: openai.OpenAI) -> None:
    import httpx

    url = f"{client.base_url}embeddings"
    body = {"model": "openai:text-embedding-3-small", "input": "t1"}
    auth = {"authorization": f"Bearer {client.api_key}"}
    from_page = httpx.post(url, json=body, headers={**auth, "origin": "http://evil.example"})
    assert from_page.status_code == 403 and from_page.json()["error"]["code"] == "permission_denied"
    rebound = httpx.post(url, json=body, headers={**auth, "host": f"evil.example:{client.base_url.port}"})
    assert rebound.status_code == 403
    assert httpx.post(url, json=body).status_code == 401
    assert fake.seen == []
    ok = httpx.post(url, json=body, headers=auth)
    assert ok.status_code == 200 and ok.json()["data"][0]["embedding"] == [1.0, 2.0, 0.5]


# --- bounded: one call's answers share the body limit ----------------------------------------------------


def test_answers_of_one_call_are_bounded(fake: FakeEmbeddings, tmp_path: Path) -> None:
    """With --max-body-bytes 1 MiB: the first batch is sized for large vectors, the next by the size measured,
    and a call whose answers pass the limit in all is refused, naming it."""
    sc = Sidecar(tmp_path, "--max-body-bytes", "1MiB", "--base-url", f"ollama={fake.url}")
    try:
        sc.wait_for(lambda m: m.get("method") == "sidecar-ready")
        fake.seen.clear()
        result = sc.call("llm_embed", {"model": "ollama:nomic-embed-text", "input": texts(200)})
        sizes = [len(g.body["input"]) for g in fake.seen]
        assert sizes[0] < 64 and sum(sizes) == 200, sizes  # a guess: 3,072-dimensional vectors
        assert sizes[1:-1] == [64] * (len(sizes) - 2) and 0 < sizes[-1] <= 64, sizes  # then Ollama's batch
        assert first_values(result) == [float(i) for i in range(200)]
        # 8,000 vectors of 32 floats (about 1.3 MB of JSON) do not fit in 1 MiB
        err = error_of(sc.request("llm_embed", {"model": "ollama:nomic-embed-text", "input": texts(8000),
                                                "dimensions": 32}, timeout=60))
        assert err["code"] == "protocol_error" and "max_body_bytes" in err["message"]
        assert "send fewer texts" in err["message"]
        assert sc.call("sidecar_info")["version"]
    finally:
        sc.kill()
