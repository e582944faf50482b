"""The CLI against a temporary SQLite database, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.devtools.mailgen import write_maildir, write_mbox
from bot.store.ingest import IngestItem
from tests.store.helpers import raw_mail


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "MAILROOM_LOG_LEVEL": "WARNING"}


def run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_import_mbox_then_threads_json(tmp_path: Path, env: dict[str, str]) -> None:
    mails = [
        raw_mail(
            "r@x", "Re: Plan", irt="p@x", refs=["p@x"], date="Mon, 01 Jan 2024 11:00:00 +0000"
        ),
        raw_mail("p@x", "Plan", date="Mon, 01 Jan 2024 10:00:00 +0000"),
        raw_mail(
            "o@x",
            "Other",
            sender="Ann <ann@client.example>",
            date="Tue, 02 Jan 2024 10:00:00 +0000",
        ),
        raw_mail("p@x", "Plan", date="Mon, 01 Jan 2024 10:00:00 +0000"),  # duplicate
    ]
    box = tmp_path / "in.mbox"
    write_mbox(box, mails)
    (tmp_path / "clients.csv").write_text("name,company,emails,domains\nAnn,,ann@client.example,\n")
    run(env, "clients", "import", str(tmp_path / "clients.csv"))
    out = run(env, "import", str(box), "--account", "team@ours.example")
    assert "3 new, 1 already known" in out
    threads = json.loads(run(env, "threads", "--json"))
    assert [
        (t["subject"], t["message_ids"], t["client"], t["unread"], t["archived"]) for t in threads
    ] == [
        ("Other", ["o@x"], "Ann", True, False),
        ("Plan", ["p@x", "r@x"], None, True, False),  # Message-IDs oldest first
    ]
    assert {t["id"] for t in json.loads(run(env, "threads", "--filter", "linked", "--json"))} == {
        threads[0]["id"]
    }
    hits = json.loads(run(env, "search", "plan", "--json"))
    assert [h["message_id"] for h in hits] == ["r@x", "p@x"]
    assert {"message_id", "subject", "from", "date", "conversation_id", "snippet"} <= set(hits[0])
    assert hits[0]["conversation_id"] == threads[1]["id"]


def test_import_maildir_and_bad_files_are_skipped(tmp_path: Path, env: dict[str, str]) -> None:
    tmp_path = tmp_path / "src"  # the database lives next to it, not inside
    tmp_path.mkdir()
    md = tmp_path / "Maildir"
    write_maildir(md, [raw_mail("a@x", "A"), raw_mail("b@x", "B")])
    (tmp_path / "notes.txt").write_text("# just some notes\n\nnot a mail\n")
    (tmp_path / "empty.eml").write_bytes(b"")
    (tmp_path / "one.eml").write_bytes(raw_mail("c@x", "C"))
    result = CliRunner().invoke(
        cli, ["import", str(tmp_path), "--account", "t@ours.example"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "3 new, 0 already known, 2 skipped" in result.stdout
    assert "notes.txt" in result.stderr and "empty.eml" in result.stderr


def test_clients_commands_and_csv_errors(tmp_path: Path, env: dict[str, str]) -> None:
    run(
        env,
        "clients",
        "add",
        "Acme",
        "--company",
        "Acme Inc",
        "--email",
        "a@acme.example; b@acme.example",
        "--domain",
        "acme.example",
    )
    csv = tmp_path / "c.csv"
    csv.write_text(
        "name,company,emails,domains\nGood,,g@good.example,\n,,x@y.example,\nBad,,nope,\n"
    )
    result = CliRunner().invoke(cli, ["clients", "import", str(csv)], env=env)
    assert result.exit_code == 1
    assert f"{csv}:3: missing name" in result.stderr and f"{csv}:4:" in result.stderr
    rows = json.loads(run(env, "clients", "list", "--json"))
    assert [(r["name"], r["emails"]) for r in rows] == [
        ("Acme", ["a@acme.example", "b@acme.example"]),
        ("Good", ["g@good.example"]),
    ]
    run(
        env,
        "clients",
        "edit",
        str(rows[0]["id"]),
        "--name",
        "Acme2",
        "--remove-email",
        "b@acme.example",
    )
    run(env, "clients", "delete", str(rows[1]["id"]), "--yes")
    rows = json.loads(run(env, "clients", "list", "--json"))
    assert [(r["name"], r["emails"], r["domains"]) for r in rows] == [
        ("Acme2", ["a@acme.example"], ["acme.example"])
    ]
    bad = CliRunner().invoke(cli, ["clients", "add", "X", "--domain", "gmail.com"], env=env)
    assert bad.exit_code != 0 and "webmail" in bad.output


def test_import_isolates_a_message_that_cannot_be_stored(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch fails as a whole; the import then stores message by message, reports the bad
    one and keeps the rest (here the store refuses one Message-ID, as a database error
    would)."""
    import bot.cli.mail_import as mail_cli

    poison = raw_mail("poison@x", "Poison")
    box = tmp_path / "in.mbox"
    write_mbox(box, [raw_mail(f"m{i}@x", f"M{i}") for i in range(5)] + [poison])
    real_batch, real_one = mail_cli.ingest_batch, mail_cli.ingest_message

    def batch(session: object, account: object, items: list[IngestItem]) -> object:
        if any(b"poison@x" in i.raw for i in items):
            raise RuntimeError("database said no")
        return real_batch(session, account, items)  # type: ignore[arg-type]

    def one(session: object, account: object, raw: bytes, **kw: object) -> object:
        if b"poison@x" in raw:
            raise RuntimeError("database said no")
        return real_one(session, account, raw, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(mail_cli, "ingest_batch", batch)
    monkeypatch.setattr(mail_cli, "ingest_message", one)
    result = CliRunner().invoke(cli, ["import", str(box), "--account", "t@ours.example"], env=env)
    assert result.exit_code == 0, result.output
    assert "5 new, 0 already known, 1 skipped" in result.stdout
    assert "#6: RuntimeError: database said no" in result.stderr
    threads = json.loads(run(env, "threads", "--json"))
    assert sorted(m for t in threads for m in t["message_ids"]) == [f"m{i}@x" for i in range(5)]
