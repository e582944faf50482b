"""What each way of sending takes, checked in the compose modal before anything is sent
(providers-review.md finding 2): the limit is named."""

from __future__ import annotations

from bot.compose.files import size_problem

MB = 1024 * 1024


def test_gmail_counts_the_encoded_size_of_the_whole_email() -> None:
    assert size_problem("gmail", [20 * MB]) is None
    problem = size_problem("gmail", [20 * MB, 10 * MB])  # 30 MB of files: ~40 MB encoded
    assert problem is not None and "35 MB" in problem


def test_microsoft_365_takes_large_files_through_upload_sessions() -> None:
    assert size_problem("graph", [24 * MB, 24 * MB]) is None  # over the 4 MB sendMail cap


def test_every_file_is_capped() -> None:
    for provider in ("imap", "gmail", "graph"):
        problem = size_problem(provider, [26 * MB])
        assert problem is not None and "25 MB" in problem
    assert size_problem("imap", []) is None
