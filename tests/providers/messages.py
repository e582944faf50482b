"""Small raw RFC 5322 messages for provider tests."""

from __future__ import annotations

import secrets


def make_message(
    subject: str = "Hello",
    *,
    message_id: str | None = None,
    sender: str = "alice@example.org",
    to: str = "team@mailroom.test",
    body: str = "Hi there.\r\n",
    padding: int = 0,
) -> tuple[bytes, str]:
    """``(raw, message_id)``; ``padding`` adds that many body bytes (for size tests)."""
    mid = message_id or f"{secrets.token_hex(8)}@example.org"
    text = body + ("x" * 76 + "\r\n") * (padding // 78)
    raw = (
        f"From: Alice <{sender}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{mid}>\r\n"
        "Date: Mon, 02 Sep 2024 10:00:00 +0200\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{text}"
    ).encode()
    return raw, mid
