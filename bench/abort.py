"""How fast an abort stops the process and local transports: from ``llm_abort_stream``'s call
(``Engine.abort``) to the stream's ``cancelled`` event, which comes only once the work has stopped (the
child program and its process group reaped; the local model's generator closed in its worker thread).

    python bench/abort.py [--rounds N]

Uses the tests' doubles (tests/process_double.py: a Python child streaming JSON lines; tests/transport_doubles.py:
a generator producing a token every 10 ms in a worker thread), with the engine in this process. Prints medians
and maxima in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from transport_doubles import PYTHON, Counters, LocalModel, engine_with, process_protocol, provider  # noqa: E402

from sidecar.engine import Engine, EventSink  # noqa: E402
from sidecar.types import ErrorEvent, Event, StreamTextParams, TextDeltaEvent  # noqa: E402


def params(text: str) -> StreamTextParams:
    return msgspec.convert({"model": "x:m", "messages": [{"role": "user", "content": text}]}, StreamTextParams)


async def abort_ms(engine: Engine, prov: Any, request: StreamTextParams, after_deltas: int) -> float:
    deltas = 0
    started = anyio.Event()
    ended: list[float] = []

    async def notify(method: str, event: Event) -> None:
        nonlocal deltas
        if isinstance(event, TextDeltaEvent):
            deltas += 1
            if deltas >= after_deltas:
                started.set()
        if isinstance(event, ErrorEvent):
            assert event.error.code == "cancelled", event.error
            ended.append(time.perf_counter())

    prepared = await engine.prepare_for(request, prov, "m")
    scope = engine.reserve("b")
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run_stream, prepared, EventSink("b", notify), scope)
        await started.wait()
        t0 = time.perf_counter()
        engine.abort("b")
    return (ended[0] - t0) * 1000


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pidfile = Path(tmp) / "pids"
        process = engine_with(Path(tmp), {"double": process_protocol(Counters())})
        hang = params(json.dumps({"mode": "hang", "text": "first", "pidfile": str(pidfile)}))
        proc = [await abort_ms(process, provider("double", "process", PYTHON), hang, 2) for _ in range(rounds)]
        model = LocalModel(token_s=0.01)
        local = engine_with(Path(tmp), {"local-double": model.protocol()})
        loc = [await abort_ms(local, provider("local-double", "local"), params("forever"), 3) for _ in range(rounds)]
    for name, xs in (("process (SIGTERM to the group, reaped)", proc), ("local (10 ms tokens, generator closed)", loc)):
        print(f"{name}: abort to cancelled, median {statistics.median(xs):.1f} ms, max {max(xs):.1f} ms "
              f"({len(xs)} rounds)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    anyio.run(main, ap.parse_args().rounds)
