"""ImapProvider against a real Dovecot on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from imapclient import IMAPClient

from bot.providers.errors import FolderNotFound, NotSupported
from bot.providers.imap import ImapProvider, assign_roles, parse_uid_set, uid_set
from bot.providers.types import ImapSettings
from tests.mailservers.dovecot import DovecotServer, MailUser
from tests.mailservers.fixtures import imap_settings_for
from tests.providers.messages import make_message

pytestmark = pytest.mark.dovecot


@pytest.fixture
def imap(imap_settings: ImapSettings, imap_user: MailUser) -> Iterator[ImapProvider]:
    with ImapProvider(imap_settings, imap_user.password) as provider:
        yield provider


def other_client(server: DovecotServer, user: MailUser) -> IMAPClient:
    """A second, independent client ("someone's phone") on the same mailbox."""
    client = IMAPClient(server.host, port=server.port, ssl=False, timeout=10)
    client.login(user.username, user.password)
    return client


def all_fetched(provider: ImapProvider, folder: str, after_uid: int, **kw: int) -> list:
    return [m for batch in provider.fetch_new(folder, after_uid, **kw) for m in batch]


# -- folders ----------------------------------------------------------------------------


def test_list_folders_reports_special_use_roles(imap: ImapProvider) -> None:
    roles = {f.name: f.role for f in imap.list_folders()}
    assert roles == {
        "INBOX": "inbox",
        "Sent": "sent",
        "Archive": "archive",
        "Trash": "trash",
        "Drafts": "drafts",
        "Junk": "junk",
    }
    assert {"IDLE", "MOVE", "UIDPLUS", "CONDSTORE", "SPECIAL-USE"} <= imap.capabilities


def test_roles_fall_back_to_common_names_without_special_use(
    dovecot_reduced: DovecotServer,
) -> None:
    user, password = dovecot_reduced.new_user()
    with ImapProvider(imap_settings_for(dovecot_reduced, user), password) as imap:
        roles = {f.name: f.role for f in imap.list_folders()}
        assert roles["Sent Items"] == "sent"
        assert roles["Deleted Items"] == "trash"
        assert roles["Junk E-mail"] == "junk"
        assert roles["Drafts"] == "drafts"
        assert imap.folder_for_role("archive") is None
        assert imap.folder_for_role("archive", create=True) == "Archive"
        assert imap.folder_for_role("archive") == "Archive"


def test_assign_roles_prefers_special_use_and_skips_noselect() -> None:
    infos = assign_roles(
        [
            ("INBOX", "/", ()),
            ("Sent", "/", ()),  # a name match, but SPECIAL-USE says otherwise
            ("Sent Items", "/", ("\\Sent",)),
            ("[Gmail]", "/", ("\\Noselect",)),
            ("[Gmail]/All Mail", "/", ("\\HasNoChildren",)),
            ("Projects/Trash", "/", ()),
            ("Trash", "/", ()),
        ]
    )
    roles = {i.name: i.role for i in infos}
    assert roles["Sent Items"] == "sent"
    assert roles["Sent"] is None
    assert roles["[Gmail]"] is None
    assert roles["[Gmail]/All Mail"] == "all"
    assert roles["Trash"] == "trash"  # top level wins over the nested one
    assert roles["Projects/Trash"] is None


def test_modified_utf7_folder_names_are_decoded(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    with dovecot.admin(imap_user.username) as conn:
        conn.create('"Kunden-Entw&APw-rfe"')  # modified UTF-7 for "Kunden-Entwürfe"
    assert "Kunden-Entwürfe" in {f.name for f in imap.list_folders()}
    raw, _ = make_message("Umlaut folder")
    assert imap.append("Kunden-Entwürfe", raw) is not None
    assert imap.select("Kunden-Entwürfe").exists == 1


def test_select_missing_folder_raises_folder_not_found(imap: ImapProvider) -> None:
    with pytest.raises(FolderNotFound) as info:
        imap.select("No Such Folder")
    assert info.value.folder == "No Such Folder"
    assert "does not exist" in str(info.value)


# -- fetching ---------------------------------------------------------------------------


def test_fetch_new_is_incremental_and_in_batches(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    uids = [dovecot.deliver(imap_user.username, make_message(f"m{i}")[0]) for i in range(7)]
    status = imap.select("INBOX")
    assert status.exists == 7
    assert status.uidnext == uids[-1] + 1

    batches = list(imap.fetch_new("INBOX", 0, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    got = [m for b in batches for m in b]
    assert [m.uid for m in got] == uids
    assert b"Subject: m0\r\n" in got[0].raw
    assert all(not m.truncated and m.size == len(m.raw) for m in got)
    assert isinstance(got[0].internaldate, datetime)
    assert got[0].internaldate.tzinfo is not None

    # Only what came after the cursor.
    assert [m.uid for m in all_fetched(imap, "INBOX", uids[4])] == uids[5:]


def test_fetch_new_filters_the_n_star_quirk(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    last = [dovecot.deliver(imap_user.username, make_message(f"m{i}")[0]) for i in range(3)][-1]
    # "UID last+1:*" matches the highest message on the server: it must not come back.
    assert all_fetched(imap, "INBOX", last) == []
    assert all_fetched(imap, "INBOX", last + 50) == []


def test_fetch_new_does_not_mark_messages_seen(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    dovecot.deliver(imap_user.username, make_message("unread")[0])
    fetched = all_fetched(imap, "INBOX", 0)
    assert "\\Seen" not in fetched[0].flags
    assert "\\Recent" not in fetched[0].flags
    flags = imap.all_flags("INBOX")
    assert flags[0].uid == fetched[0].uid and "\\Seen" not in flags[0].flags


def test_oversize_message_is_fetched_header_only(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    small_uid = dovecot.deliver(imap_user.username, make_message("small")[0])
    big_raw, _ = make_message("big", padding=200_000)
    big_uid = dovecot.deliver(imap_user.username, big_raw)
    got = {m.uid: m for m in all_fetched(imap, "INBOX", 0, max_size=100_000)}
    assert not got[small_uid].truncated
    big = got[big_uid]
    assert big.truncated
    assert big.size == len(big_raw)
    assert big.raw.endswith(b"\r\n\r\n") and b"Subject: big\r\n" in big.raw
    assert b"xxxx" not in big.raw
    full = imap.fetch_raw("INBOX", big_uid)
    assert full is not None and full.raw == big_raw


# -- flags and expunges -----------------------------------------------------------------


def test_changed_flags_sees_another_clients_change(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    uids = [dovecot.deliver(imap_user.username, make_message(f"m{i}")[0]) for i in range(3)]
    before = imap.select("INBOX")
    assert before.highestmodseq is not None
    assert imap.changed_flags("INBOX", before.highestmodseq) == []

    other = other_client(dovecot, imap_user)
    try:
        other.select_folder("INBOX")
        other.add_flags([uids[1]], [b"\\Seen"])
    finally:
        other.logout()

    changes = imap.changed_flags("INBOX", before.highestmodseq)
    assert [(c.uid, "\\Seen" in c.flags) for c in changes] == [(uids[1], True)]
    after = imap.select("INBOX")
    assert after.highestmodseq is not None and after.highestmodseq > before.highestmodseq
    assert imap.changed_flags("INBOX", after.highestmodseq) == []


def test_all_flags_checks_given_uids(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    uids = [dovecot.deliver(imap_user.username, make_message(f"m{i}")[0]) for i in range(4)]
    dovecot.deliver(imap_user.username, make_message("seen")[0], flags=["\\Seen"])
    imap.set_seen("INBOX", [uids[0], uids[2]], True)
    subset = imap.all_flags("INBOX", [uids[0], uids[1], uids[2]])
    assert [(c.uid, "\\Seen" in c.flags) for c in subset] == [
        (uids[0], True),
        (uids[1], False),
        (uids[2], True),
    ]
    assert len(imap.all_flags("INBOX")) == 5


def test_set_seen_round_trip_is_visible_to_other_clients(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    uid = dovecot.deliver(imap_user.username, make_message("x")[0])
    imap.set_seen("INBOX", [uid], True)
    other = other_client(dovecot, imap_user)
    try:
        other.select_folder("INBOX", readonly=True)
        assert b"\\Seen" in other.get_flags([uid])[uid]
        imap.set_seen("INBOX", [uid], False)
        other.noop()
        assert b"\\Seen" not in other.get_flags([uid])[uid]
    finally:
        other.logout()


def test_list_uids_detects_expunge_by_another_client(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    uids = [dovecot.deliver(imap_user.username, make_message(f"m{i}")[0]) for i in range(3)]
    assert imap.list_uids("INBOX") == set(uids)
    other = other_client(dovecot, imap_user)
    try:
        other.select_folder("INBOX")
        other.delete_messages([uids[1]])
        other.uid_expunge([uids[1]])
    finally:
        other.logout()
    assert set(uids) - imap.list_uids("INBOX") == {uids[1]}


# -- move, append, search ---------------------------------------------------------------


def test_move_with_move_capability_reports_new_uids(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    uids = [dovecot.deliver(imap_user.username, make_message(f"m{i}")[0]) for i in range(3)]
    mapping = imap.move("INBOX", uids[:2], "Archive")
    assert set(mapping) == set(uids[:2])
    assert imap.list_uids("INBOX") == {uids[2]}
    assert imap.list_uids("Archive") == set(mapping.values())
    moved = {m.uid: m for m in all_fetched(imap, "Archive", 0)}
    assert b"Subject: m0" in moved[mapping[uids[0]]].raw


def test_move_fallback_without_move_only_expunges_moved_messages(
    dovecot_reduced: DovecotServer,
) -> None:
    user, password = dovecot_reduced.new_user()
    u1 = dovecot_reduced.deliver(user, make_message("keep me")[0])
    u2 = dovecot_reduced.deliver(user, make_message("move me")[0])
    # Another client marked u1 \Deleted but has not expunged: a plain EXPUNGE would lose it.
    with dovecot_reduced.admin(user) as conn:
        conn.select("INBOX")
        conn.uid("STORE", str(u1), "+FLAGS.SILENT", "(\\Deleted)")
    with ImapProvider(imap_settings_for(dovecot_reduced, user), password) as imap:
        assert "MOVE" not in imap.capabilities and "CONDSTORE" not in imap.capabilities
        mapping = imap.move("INBOX", [u2], "Deleted Items")
        assert list(mapping) == [u2]
        assert imap.list_uids("INBOX") == {u1}
        assert imap.list_uids("Deleted Items") == {mapping[u2]}


def test_changed_flags_without_condstore_is_not_supported(
    dovecot_reduced: DovecotServer,
) -> None:
    user, password = dovecot_reduced.new_user()
    with ImapProvider(imap_settings_for(dovecot_reduced, user), password) as imap:
        status = imap.select("INBOX")
        assert status.highestmodseq is None
        with pytest.raises(NotSupported, match="CONDSTORE"):
            imap.changed_flags("INBOX", 1)


def test_move_to_missing_folder_raises_folder_not_found(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    uid = dovecot.deliver(imap_user.username, make_message("x")[0])
    with pytest.raises(FolderNotFound):
        imap.move("INBOX", [uid], "Nope")


def test_append_returns_uid_and_find_message_id_finds_it(imap: ImapProvider) -> None:
    raw, mid = make_message("sent reply", message_id="reply.1234+x@mailroom.test")
    other_raw, _ = make_message("other", message_id="reply.12345@mailroom.test")
    when = datetime(2024, 9, 2, 8, 0, tzinfo=UTC)
    uid = imap.append("Sent", raw, when=when)
    imap.append("Sent", other_raw)
    assert uid is not None
    assert imap.find_message_id("Sent", mid) == [uid]
    assert imap.find_message_id("Sent", f"<{mid}>") == [uid]
    assert imap.find_message_id("Sent", "nobody@nowhere") == []
    got = all_fetched(imap, "Sent", uid - 1)[0]
    assert got.uid == uid and got.raw == raw
    assert "\\Seen" in got.flags
    assert got.internaldate == when
    with pytest.raises(ValueError):
        imap.find_message_id("Sent", "a\r\nb")


def test_uidvalidity_change_is_visible_through_select(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    dovecot.deliver(imap_user.username, make_message("x")[0])
    before = imap.select("INBOX")
    imap.close()
    new_value = dovecot.reset_uidvalidity(imap_user.username)
    imap.connect()
    after = imap.select("INBOX")
    assert after.uidvalidity == new_value != before.uidvalidity


def test_uid_set_helpers() -> None:
    assert uid_set([7, 1, 2, 3, 9, 10]) == "1:3,7,9:10"
    assert parse_uid_set("1:3,7,9:10") == [1, 2, 3, 7, 9, 10]
    assert parse_uid_set("5:3") == [5, 4, 3]


def test_reads_on_an_empty_folder_return_nothing(imap: ImapProvider) -> None:
    status = imap.select("Trash")
    assert status.exists == 0
    assert imap.all_flags("Trash") == []
    assert imap.list_uids("Trash") == set()
    assert all_fetched(imap, "Trash", 0) == []
    assert imap.changed_flags("Trash", 0) == []
