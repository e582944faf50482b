"""Attachment extraction benchmark (run by hand, not in tests).

    .venv/bin/python bench/attachments_bench.py [--counts 500,1000,2000] [--sample 100]

Builds one email with n small attachments and times
1. `bot.mail.attachments.extract_attachments`: every attachment from one parse and one walk
   (what the Slack upload and the forward use);
2. the old way, `bot.mail.parse.extract_attachment` once per attachment (a full re-parse each
   time), timed over `sample` attachments and extrapolated to n.
Security review #15: the old way was O(parts x size) in the outbox loop.
"""

from __future__ import annotations

import argparse
import sys
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.mail.attachments import extract_attachments
from bot.mail.parse import extract_attachment, parse_message


def build(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@client.example", "b@ours.example", "files"
    msg.set_content("body")
    for i in range(n):
        msg.add_attachment(
            f"data {i}".encode(), maintype="application", subtype="octet-stream", filename=f"f{i}"
        )
    return bytes(msg)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="500,1000,2000")
    parser.add_argument("--sample", type=int, default=100)
    args = parser.parse_args()
    for n in (int(c) for c in args.counts.split(",")):
        raw = build(n)
        indexes = [a.part_index for a in parse_message(raw).attachments]
        start = time.perf_counter()
        got = extract_attachments(raw, indexes)
        walk = time.perf_counter() - start
        sample = indexes[: args.sample]
        start = time.perf_counter()
        for index in sample:
            extract_attachment(raw, index)
        old = (time.perf_counter() - start) / max(1, len(sample)) * len(indexes)
        print(
            f"{n:>6} attachments: one walk {walk:.3f} s ({len(got)} parts); "
            f"one parse each {old:.1f} s (extrapolated from {len(sample)})"
        )


if __name__ == "__main__":
    main()
