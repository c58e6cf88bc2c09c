"""bench/README.md holds each benchmark's figures between its own markers; ``--write`` replaces them."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_section(name: str, section: str, intro: str = "") -> None:
    """Put ``section`` between ``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->``; where the
    markers are missing, they are appended at the end, after ``intro`` (a heading and a method note)."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    text = README.read_text(encoding="utf-8") if README.exists() else "# Benchmarks\n"
    if begin not in text or end not in text:
        text = text.rstrip("\n") + "\n\n" + (f"{intro}\n\n" if intro else "") + f"{begin}\n{end}\n"
    head, _, tail = text.partition(begin)
    _, _, tail = tail.partition(end)
    README.write_text(f"{head}{begin}\n{section.strip(chr(10))}\n{end}{tail}", encoding="utf-8")
