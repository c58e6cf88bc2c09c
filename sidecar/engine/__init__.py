"""The engine: prepare a request once, run it through its provider's transport (HTTP, a child process,
a model in this process, or the built-in offline one) with retries and fallbacks, and keep streams by id so each
ends in exactly one terminal event.

- ``prepare``: resolve, check, fetch the key, encode once (failures are the RPC error);
- ``runner``: start, warnings, attempts with retries and fallbacks, outcomes for the usage log;
- ``streams``: reserve, abort, release, and ``run_to_terminal``;
- ``models``: model lists and connection tests;
- ``embed``: embeddings (``llm_embed``), in batches of the provider's limit;
- ``decoding``: the one decoder driver; ``watchdog``: first-byte and idle timers;
- ``transports``: one module per transport.
"""

from .decoding import Decoding
from .engine import Engine
from .request import Emit, Options, Prepared, RunState
from .runner import FALLBACK_ON, Outcome
from .streams import EventSink, Streams, stream_id_of

__all__ = [
    "FALLBACK_ON",
    "Decoding",
    "Emit",
    "Engine",
    "EventSink",
    "Options",
    "Outcome",
    "Prepared",
    "RunState",
    "Streams",
    "stream_id_of",
]
