"""The bounded SSE/NDJSON reader (sidecar/framing.py) against a plain reading of the SSE spec written
here, on random streams cut into random chunks (inside a UTF-8 character, between CR and LF, ...),
and the limits at their exact edges. The end-to-end behaviour is in test_bounded.py.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from sidecar.errors import SidecarError
from sidecar.framing import MessageReader, pieces

WORDS = ["x", "héllo", "😀", "{\"a\": 1}", "", " lead", "data: inner", "€€", "tab\tend"]


def reference_sse(stream: str) -> list[tuple[str, str]]:
    """The spec's event-stream interpretation (id and retry ignored; an event needs data or a name)."""
    out: list[tuple[str, str]] = []
    name, data = "", []
    for line in re.split(r"\r\n|\r|\n", stream)[:-1]:  # what follows the last line end is not a line
        if not line:
            if data or name:
                out.append((name, "\n".join(data)))
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    return out


def random_sse(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 30)):
        lines = []
        if rng.random() < 0.3:
            lines.append(f"event: {rng.choice(['message_start', 'delta', ''])}")
        if rng.random() < 0.2:
            lines.append(": keep-alive " + rng.choice(WORDS))
        if rng.random() < 0.1:
            lines.append("id: 7")
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
            lines.append(rng.choice(["data: ", "data:", "data"]) + "".join(rng.choices(WORDS, k=rng.randint(0, 4))))
        end = rng.choice(["\n", "\r\n", "\r"])
        parts.append(end.join(lines) + end + end)
    return "".join(parts)


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 40)))) if len(data) > 1 else []
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def read(framing: str, chunks: list[bytes], limit: int = 1 << 20) -> list[tuple[str, str]]:
    reader = MessageReader(framing, limit, "p")
    out: list[tuple[str, str]] = []
    for c in chunks:
        out += reader.feed(c)
    return out + reader.end()


@pytest.mark.parametrize("seed", range(300))
def test_sse_matches_the_spec_in_any_chunking(seed: int) -> None:
    rng = random.Random(seed)
    stream = random_sse(rng)
    data = stream.encode()
    assert read("sse", cut(data, rng)) == reference_sse(stream)
    assert read("sse", [data]) == reference_sse(stream)


@pytest.mark.parametrize("seed", range(100))
def test_ndjson_lines_in_any_chunking(seed: int) -> None:
    rng = random.Random(seed)
    lines = [json.dumps({"message": {"content": "".join(rng.choices(WORDS, k=3))}}) for _ in range(rng.randint(1, 20))]
    body = "".join(line + rng.choice(["\n", "\r\n", "\n\n", "\n  \n"]) for line in lines)
    if rng.random() < 0.5:
        body = body.rstrip()  # the last line without its newline still counts
    assert read("ndjson", cut(body.encode(), rng)) == [("", line) for line in lines]


@pytest.mark.parametrize("chunking", ["whole", "bytes", "random"])
def test_the_event_limit_at_its_edge(chunking: str) -> None:
    limit = 4096
    rng = random.Random(1)

    def chunks(data: bytes) -> list[bytes]:
        if chunking == "whole":
            return [data]
        return [data[i:i + 1] for i in range(len(data))] if chunking == "bytes" else cut(data, rng)

    prefix = b"data: ok\n\n"
    # an event's size: its lines with their line ends; "data: " + n + "\n" == limit fits
    fits = prefix + b"data: " + b"a" * (limit - 7) + b"\n\n" + prefix
    assert [d for _, d in read("sse", chunks(fits), limit)] == ["ok", "a" * (limit - 7), "ok"]
    over = prefix + b"data: " + b"a" * (limit - 6) + b"\n\n"
    with pytest.raises(SidecarError) as caught:
        read("sse", chunks(over), limit)
    assert caught.value.info.code == "protocol_error"
    assert caught.value.info.message == ("p: one server-sent event is larger than the limit of 4 KiB "
                                         "(max_event_bytes); the connection was closed")
    two_lines = b"data: " + b"a" * 3000 + b"\ndata: " + b"b" * 3000 + b"\n\n"  # each line fits, the event not
    with pytest.raises(SidecarError):
        read("sse", chunks(two_lines), limit)
    never_ends = b"data: " + b"z" * (3 * limit)
    with pytest.raises(SidecarError):
        read("sse", chunks(never_ends), limit)
    assert read("ndjson", chunks(b"{" + b"a" * (limit - 1) + b"\n"), limit) == [("", "{" + "a" * (limit - 1))]
    with pytest.raises(SidecarError):
        read("ndjson", chunks(b"{" + b"a" * limit + b"\n"), limit)


def test_a_refused_event_is_refused_before_its_end_arrives() -> None:
    reader = MessageReader("sse", 1024, "p")
    reader.feed(b"data: " + b"a" * 1000)
    with pytest.raises(SidecarError):
        reader.feed(b"a" * 100)  # no line end yet: refused on the bytes alone


@pytest.mark.parametrize("limit", [6, 7, 8, 64, 1000])
def test_pieces_keep_characters_and_surrogate_pairs_whole(limit: int) -> None:
    text = "a€😀é\ud83d\ude00b" * 50 + "\ud800" + "z" * 10  # with a pair kept as two code points, and a lone one
    got = list(pieces(text, limit))
    assert "".join(got) == text
    for p in got:
        assert 0 < len(p.encode("utf-8", "surrogatepass")) <= limit
    starts = [sum(len(p) for p in got[:i]) for i in range(1, len(got))]
    for s in starts:  # never between the halves of a pair written as two code points
        assert not ("\ud800" <= text[s - 1] <= "\udbff" and "\udc00" <= text[s] <= "\udfff")
