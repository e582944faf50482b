"""Load the shared public corpora and their expected threads (tests skip if absent)."""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

CORPORA = Path(__file__).resolve().parents[3] / "shared" / "corpora"
NOTMUCH = CORPORA / "notmuch"
FEDORA = CORPORA / "fedora-devel-2010-01"
MAIL_PARSER = CORPORA / "mail-parser-tests"
CONFORMANCE = CORPORA / "mail-threading-conformance" / "conformance"

_MBOX_FROM = re.compile(rb"\n(?=From \S+ +\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}\n)")
_ENTRY = re.compile(r"^(?P<indent> *)- (?:(?P<msg>msg\d{5}) )?`<(?P<id>[^`]*)>`")


def corpus_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".md"))


def fedora_messages() -> list[bytes]:
    """The pipermail mbox split on its "From " separator lines (separator line dropped)."""
    data = gzip.decompress((FEDORA / "2010-January.txt.gz").read_bytes())
    return [part.split(b"\n", 1)[1] for part in _MBOX_FROM.split(data)]


@dataclass
class ExpectedThread:
    name: str
    parent: dict[str, str | None]  # message id -> display parent id (None = top-level)
    depth: dict[str, int]
    label: dict[str, str]  # message id -> "msg00012" (fedora) or the id itself


def parse_threads_md(path: Path) -> dict[str, list[ExpectedThread]]:
    """Sections ("default/", "lkml/", "fedora") -> threads, from a THREADS.md listing."""
    sections: dict[str, list[ExpectedThread]] = {}
    section = "fedora"
    current: ExpectedThread | None = None
    stack: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# `"):
            section = line.split("`")[1].rstrip("/")
            current = None
            continue
        if line.startswith("## "):
            if not re.match(r"## [TF]\d+", line):
                current = None
                continue
            current = ExpectedThread(line[3:].split()[0], {}, {}, {})
            sections.setdefault(section, []).append(current)
            stack = []
            continue
        m = _ENTRY.match(line)
        if m is None or current is None:
            continue
        depth = len(m.group("indent")) // 2
        ident = m.group("id")
        stack = stack[:depth]
        current.parent[ident] = stack[-1] if stack else None
        current.depth[ident] = depth
        current.label[ident] = m.group("msg") or ident
        stack.append(ident)
    return sections
