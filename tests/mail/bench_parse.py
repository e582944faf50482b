"""Throughput of parse_message over the shared corpora (not a test; run by hand).

.venv/bin/python -m tests.mail.bench_parse
"""

from __future__ import annotations

import time
from email import message_from_bytes, policy

from bot.mail.parse import parse_message
from tests.mail.corpora import MAIL_PARSER, NOTMUCH, corpus_files, fedora_messages


def _rate(fn: object, raws: list[bytes], rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for raw in raws:
            fn(raw)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return len(raws) / best


def main() -> None:
    groups = {
        "notmuch": [p.read_bytes() for p in corpus_files(NOTMUCH)],
        "fedora": fedora_messages(),
        "mail-parser (big attachments)": [p.read_bytes() for p in corpus_files(MAIL_PARSER)],
    }
    for name, raws in groups.items():
        ours = _rate(parse_message, raws)
        base = _rate(lambda r: message_from_bytes(r, policy=policy.compat32), raws)
        print(
            f"{name:32} {len(raws):4} msgs  parse_message {ours:7.0f}/s  compat32 only {base:7.0f}/s"
        )


if __name__ == "__main__":
    main()
