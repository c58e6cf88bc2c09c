"""Every line gets exactly one answer (issue 11, item 6), whatever it nests or escapes.

Deep nesting, lone UTF-16 surrogate escapes (what JavaScript's ``JSON.stringify`` writes for a string
cut inside an emoji) and the non-JSON constants ``NaN``/``Infinity`` used to take a lenient path that
either accepted what it should refuse or raised past the reader, so the client waited forever. Each
case here is sent to the sidecar (served in this process over real pipes; the tests marked
``ALSO_AS_PROCESS`` also to the real ``python -m sidecar``), every answer that follows is counted, and the
sidecar must then serve the next request.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from conftest import ALSO_AS_PROCESS
from harness import Sidecar, text_of

DEPTHS = (500, 750, 950, 1_000, 5_000)
LIMIT = 128  # the documented limit (README, "Errors"): deeper requests are refused
LONE = '"cut \\ud83d"'  # as JSON.stringify writes a string cut inside an emoji
PLAIN = '"plain"'
_seq = itertools.count(1)


def nested(kind: str, depth: int, leaf: str) -> str:
    """``depth`` levels of arrays or objects around ``leaf``, as JSON text."""
    if kind == "array":
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


def request_line(id_: str, where: str, depth: int, leaf: str) -> bytes:
    """A request whose nesting (``depth`` levels in all, the request object included) sits at ``where``."""
    if where == "params":  # inside a field that takes any JSON
        inner = nested("object", depth - 2, leaf)
        return (f'{{"jsonrpc":"2.0","id":"{id_}","method":"llm_stream_text","params":{{"model":"mock:echo",'
                f'"messages":[{{"role":"user","content":"hi"}}],"provider_options":{inner}}}}}\n').encode()
    inner = nested(where, depth - 1, leaf)
    return f'{{"jsonrpc":"2.0","id":"{id_}","method":"sidecar_info","extra":{inner}}}\n'.encode()


def stream_line(id_: str, content: str, extra: str = "") -> bytes:
    """An ``llm_stream_text`` request to ``mock:echo`` written by hand: ``content`` and ``extra`` go in as they are."""
    head = '{"jsonrpc":"2.0","id":"' + id_ + '","method":"llm_stream_text","params":{"model":"mock:echo",'
    return (head + '"messages":[{"role":"user","content":"' + content + '"}]' + extra + "}}\n").encode()


def answers_to(sc: Sidecar, data: bytes) -> list[dict[str, Any]]:
    """Send ``data``, then two probes one after the other; return every response that is not a probe's.

    The second probe is written only once the first was answered, so an answer that comes late has
    had a whole round trip to show up.
    """
    start = len(sc.messages)
    sc.send(data)
    probes = set()
    for _ in range(2):
        probe = sc.request("sidecar_info", timeout=60)
        assert "result" in probe, probe
        probes.add(probe["id"])
    got = [m for m in sc.messages[start:] if isinstance(m, dict) and "method" not in m]
    others = [m for m in got if m.get("id") not in probes]
    assert sc.proc.poll() is None, sc.stderr.decode()[-3000:]
    return others


def refused(answer: dict[str, Any], id_: Any) -> None:
    """-32600 with the request's id (it could be parsed), or -32700 with a null id (it could not)."""
    assert answer.get("jsonrpc") == "2.0" and "result" not in answer, answer
    code = answer["error"]["code"]
    assert code in (-32700, -32600), answer
    assert answer["id"] == (id_ if code == -32600 else None), answer
    assert "nested deeper than 128 levels" in answer["error"]["message"], answer


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("leaf", [LONE, PLAIN], ids=["lone-surrogate", "plain"])
@pytest.mark.parametrize("where", ["object", "array", "params"])
def test_deep_line_gets_exactly_one_answer(sc: Sidecar, depth: int, leaf: str, where: str) -> None:
    id_ = f"deep-{next(_seq)}"
    [answer] = answers_to(sc, request_line(id_, where, depth, leaf))
    refused(answer, id_)
    if depth < 900:  # msgspec parses it (its own limit is the interpreter's, near 1,000): the id is known
        assert answer["error"]["code"] == -32600, answer


@pytest.mark.parametrize("leaf", [LONE, PLAIN], ids=["lone-surrogate", "plain"])
@ALSO_AS_PROCESS
def test_nesting_at_the_limit_is_served(sc: Sidecar, leaf: str) -> None:
    id_ = f"limit-{next(_seq)}"
    [answer] = answers_to(sc, request_line(id_, "params", LIMIT, leaf))
    assert answer["id"] == id_ and "stream_id" in answer["result"], answer
    events = sc.wait_stream_end(answer["result"]["stream_id"])
    assert events[-1]["type"] == "done" and text_of(events) == "hi", events


@ALSO_AS_PROCESS
def test_one_level_over_the_limit_is_refused(sc: Sidecar) -> None:
    id_ = f"over-{next(_seq)}"
    [answer] = answers_to(sc, request_line(id_, "params", LIMIT + 1, PLAIN))
    refused(answer, id_)
    assert answer["error"]["code"] == -32600


@ALSO_AS_PROCESS
def test_lone_surrogate_in_a_shallow_request_is_still_served(sc: Sidecar) -> None:
    id_ = f"lone-{next(_seq)}"
    text = json.dumps({"jsonrpc": "2.0", "id": id_, "method": "llm_stream_text",
                       "params": {"model": "mock:echo", "messages": [{"role": "user", "content": "cut \ud83d"}]}})
    assert "\\ud83d" in text
    [answer] = answers_to(sc, text.encode() + b"\n")
    assert answer["id"] == id_ and "result" in answer, answer
    events = sc.wait_stream_end(answer["result"]["stream_id"])
    assert text_of(events) == "cut \ufffd", events


@ALSO_AS_PROCESS
def test_surrogate_pairs_and_escaped_backslashes_are_kept(sc: Sidecar) -> None:
    """Only lone surrogates are replaced: a pair stays the emoji, and ``\\\\ud800`` is text, not an escape."""
    id_ = f"pair-{next(_seq)}"
    content = '\\ud83d\\ude00 \\\\ud800 \\udc00\\ud83d'  # pair, escaped backslash + "ud800", two lone ones
    [answer] = answers_to(sc, stream_line(id_, content))
    events = sc.wait_stream_end(answer["result"]["stream_id"])
    assert text_of(events) == "\U0001f600 \\ud800 \ufffd\ufffd", events


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("escape", [False, True], ids=["alone", "with-u-escape"])
def test_nan_and_infinity_are_refused(sc: Sidecar, constant: str, escape: bool) -> None:
    id_ = f"const-{next(_seq)}"
    text = "caf\\u00e9" if escape else "cafe"
    [answer] = answers_to(sc, stream_line(id_, text, f',"temperature":{constant}'))
    assert answer["error"]["code"] == -32700 and answer["id"] is None, answer


@ALSO_AS_PROCESS
def test_nan_next_to_a_lone_surrogate_is_refused(sc: Sidecar) -> None:
    data = (b'{"jsonrpc":"2.0","id":"nan-lone","method":"llm_stream_text","params":{"model":"mock:echo",'
            b'"messages":[{"role":"user","content":"\\ud83d"}],"temperature":NaN}}\n')
    [answer] = answers_to(sc, data)
    assert answer["error"]["code"] == -32700 and answer["id"] is None, answer


# --- batches --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [500, 950])
@pytest.mark.parametrize("leaf", [LONE, PLAIN], ids=["lone-surrogate", "plain"])
def test_batch_with_a_deep_member_answers_every_member(sc: Sidecar, depth: int, leaf: str) -> None:
    """The deep member is refused with its id, its neighbours are served, all in one array."""
    n = next(_seq)
    deep = request_line(f"b{n}-deep", "object", depth - 1, leaf).rstrip(b"\n")  # one level goes to the batch
    ok = b'{"jsonrpc":"2.0","id":"b%d-ok","method":"get_active_provider"}' % n
    shallow_lone = (b'{"jsonrpc":"2.0","id":"b%d-lone","method":"no_such_method","params":{"s":"\\udfff"}}' % n)
    start = len(sc.raw_lines)
    answers = answers_to(sc, b"[" + b",".join([ok, deep, shallow_lone]) + b"]\n")
    assert len(answers) == 3, answers
    by_id = {a["id"]: a for a in answers}
    assert by_id[f"b{n}-ok"] == {"jsonrpc": "2.0", "id": f"b{n}-ok", "result": None}
    refused(by_id[f"b{n}-deep"], f"b{n}-deep")
    assert by_id[f"b{n}-lone"]["error"]["code"] == -32601
    batch_lines = [json.loads(raw) for raw in sc.raw_lines[start:] if raw.startswith(b"[")]
    assert len(batch_lines) == 1 and len(batch_lines[0]) == 3, batch_lines


@pytest.mark.parametrize("depth", [1_000, 5_000])
@pytest.mark.parametrize("leaf", [LONE, PLAIN], ids=["lone-surrogate", "plain"])
def test_batch_too_deep_to_parse_gets_one_parse_error(sc: Sidecar, depth: int, leaf: str) -> None:
    n = next(_seq)
    deep = request_line(f"b{n}-deep", "array", depth, leaf).rstrip(b"\n")
    ok = b'{"jsonrpc":"2.0","id":"b%d-ok","method":"get_active_provider"}' % n
    [answer] = answers_to(sc, b"[" + ok + b"," + deep + b"]\n")
    refused(answer, None)
    assert answer["error"]["code"] == -32700


@pytest.mark.parametrize("constant", ["NaN", "-Infinity"])
@ALSO_AS_PROCESS
def test_batch_with_nan_and_an_escape_is_refused(sc: Sidecar, constant: str) -> None:
    second = b'{"jsonrpc":"2.0","id":"x2","method":"no_such","params":{"s":"\\u00e9","n":' + constant.encode() + b"}}"
    data = b'[{"jsonrpc":"2.0","id":"x1","method":"get_active_provider"},' + second + b"]\n"
    [answer] = answers_to(sc, data)
    assert answer["error"]["code"] == -32700 and answer["id"] is None, answer
