"""A loopback OpenAI-style upstream for the relay benchmark (run as its own process).

``python bench/upstream.py [--batch N]`` listens on 127.0.0.1, prints its port on stdout
and serves until its stdin closes. Every POST is answered with a chunked
``text/event-stream`` of ``n`` chat chunks, where ``n`` comes from the request's model
name (``n-20000``), then a finish chunk, a usage chunk and ``data: [DONE]``.

The body is built once per ``n`` and sent as fast as the socket takes it: each SSE event
is its own HTTP chunk, and ``--batch`` events go out per ``send`` (1: every event is
flushed on its own). Connections are kept alive, so a pooled client reuses them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading

CHUNK = (
    b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
)
FINISH = (
    b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{},"finish_reason":"stop"}]}\n\n'
)
USAGE = (
    b'data: {"id":"x","object":"chat.completion.chunk","choices":[],'
    b'"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}}\n\n'
)
DONE = b"data: [DONE]\n\n"
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
DEFAULT_CHUNKS = 20_000


def events(n: int) -> list[bytes]:
    """The SSE events of one reply, without HTTP framing."""
    return [*([CHUNK] * n), FINISH, USAGE % (n, n + 10), DONE]


def body_pieces(n: int, batch: int) -> list[bytes]:
    """The reply's body as the socket writes it: chunked-encoded, ``batch`` events per piece."""
    framed = [b"%x\r\n%s\r\n" % (len(e), e) for e in events(n)]
    pieces = [b"".join(framed[i : i + batch]) for i in range(0, len(framed), batch)]
    pieces[-1] += b"0\r\n\r\n"
    return pieces


def chunks_for(model: str) -> int:
    _, sep, count = model.rpartition("n-")
    return int(count) if sep and count.isdigit() else DEFAULT_CHUNKS


class Server:
    def __init__(self, batch: int) -> None:
        self.batch = batch
        self._bodies: dict[int, list[bytes]] = {}
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]

    def body(self, n: int) -> list[bytes]:
        with self._lock:
            if n not in self._bodies:
                self._bodies[n] = body_pieces(n, self.batch)
            return self._bodies[n]

    def serve_forever(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.connection, args=(conn,), daemon=True).start()

    def connection(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                raw, buf = buf[:length], buf[length:]
                try:
                    model = str(json.loads(raw).get("model", "")) if raw else ""
                except ValueError:
                    model = ""
                conn.sendall(HEAD)
                for piece in self.body(chunks_for(model)):
                    conn.sendall(piece)
        except OSError:
            pass
        finally:
            conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1, help="SSE events per send() (default 1)")
    args = ap.parse_args()
    server = Server(max(1, args.batch))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdout.write(f"{server.port}\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # until the benchmark goes away
    os._exit(0)


if __name__ == "__main__":
    main()
