"""A stand-in for a command-line model (the ``claude`` program): reads one JSON request on stdin, answers in
JSON lines on stdout. The process-transport tests run it as a real child process.

Request: ``{"mode": ..., "text": ..., "pidfile": ..., "marker": ...}``; modes:
- ``stream``: the text word by word as ``{"text": ...}`` lines, then ``{"done": true, "usage": ...}``;
- ``hang``: one word, starts a grandchild (``sleep``) in its group, writes both pids to ``pidfile``, waits;
- ``crash``: one word, then ``boom`` on stderr and exit status 3;
- ``long``: one line of 100 000 bytes;
- ``idle``: one word, then silence (still running);
- ``fail_once``: exit 75 with ``try again`` on stderr unless ``marker`` exists (then created), else ``stream``;
- ``lingers``: the whole answer, then keeps running (the transport stops it).
With ``seenfile``, it first writes there its working directory, the files in it and its environment's names.
"""

import json
import os
import subprocess
import sys
import time


def line(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> None:
    req = json.loads(sys.stdin.read())
    mode, words = req["mode"], req.get("text", "").split()
    if req.get("pidfile"):
        with open(req["pidfile"], "a") as f:
            f.write(f"{os.getpid()}\n")
    if req.get("seenfile"):  # where it ran and what it was given
        with open(req["seenfile"], "w") as f:
            json.dump({"cwd": os.getcwd(), "files": os.listdir("."), "env": sorted(os.environ)}, f)
    if mode == "fail_once" and not os.path.exists(req["marker"]):
        open(req["marker"], "w").close()
        sys.stderr.write("try again\n")
        sys.exit(75)
    if mode == "long":
        line({"text": "x" * 100_000})
        return
    if mode in ("hang", "crash", "idle"):
        line({"text": words[0] + " "})
        if mode == "crash":
            sys.stderr.write("boom\n")
            sys.exit(3)
        if mode == "hang":
            child = subprocess.Popen(["sleep", "60"])
            with open(req["pidfile"], "a") as f:
                f.write(f"{child.pid}\n")
            line({"text": "ready "})
        time.sleep(60)
        return
    for w in words:
        line({"text": w + " "})
    line({"done": True, "usage": {"input_tokens": 7, "output_tokens": len(words)}})
    if mode == "lingers":
        time.sleep(60)


main()
