from conftest import register_upstream
from harness import Reply, check_stream_invariants, fixture_body, text_of


def test_replay_text_fixture(sidecar, upstream):
    register_upstream(sidecar, upstream)
    upstream.replies["m1"] = Reply(chunks=fixture_body("openai-chat/text-usage-chunk.sse"))
    events = sidecar.stream({"model": "loopback:m1", "messages": [{"role": "user", "content": "hi"}]})
    check_stream_invariants(events)
    assert events[-1]["type"] == "done", events[-1]
    assert text_of(events)
