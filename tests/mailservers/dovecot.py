"""A private Dovecot IMAP server on loopback, with its own config and maildirs in a temp dir.

Start one with :func:`start_dovecot`; stop it with :meth:`DovecotServer.stop`. Each test
makes its own user (:meth:`DovecotServer.new_user`) so tests never share a mailbox.
"""

from __future__ import annotations

import atexit
import contextlib
import imaplib
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.mailservers.tls import TlsMaterial

MAIL_DOMAIN = "mailroom.test"

# (name, SPECIAL-USE attribute) of the folders every user gets.
SPECIAL_USE_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Archive", "\\Archive"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
)

# Names Microsoft-style servers use, without SPECIAL-USE: tests the name fallback.
NAME_ONLY_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("Drafts", None),
    ("Sent Items", None),
    ("Deleted Items", None),
    ("Junk E-mail", None),
)

# Post-login capabilities of a plain IMAP4rev1 server with IDLE and UIDPLUS but
# without MOVE, CONDSTORE, QRESYNC or SPECIAL-USE, to exercise the fallbacks.
REDUCED_CAPABILITY = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ UIDPLUS NAMESPACE "
    "CHILDREN LIST-EXTENDED UNSELECT"
)

_counter = itertools.count(1)


class DovecotNotInstalled(RuntimeError):
    """The ``dovecot`` binary is missing: install Debian's ``dovecot-imapd``."""


def find_dovecot() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class MailUser:
    username: str
    password: str

    @property
    def address(self) -> str:
        return f"{self.username}@{MAIL_DOMAIN}"


class DovecotServer:
    """One running Dovecot instance. Use :func:`start_dovecot` to make one."""

    host = "127.0.0.1"

    def __init__(
        self,
        root: Path,
        *,
        tls: TlsMaterial | None,
        capability: str | None = None,
        mailboxes: Sequence[tuple[str, str | None]] = SPECIAL_USE_MAILBOXES,
    ) -> None:
        self.root = root
        self.tls = tls
        self.capability = capability
        self.mailboxes = tuple(mailboxes)
        self.port = free_port()
        self.ssl_port = free_port() if tls else None
        self.config_path = root / "dovecot.conf"
        self.log_path = root / "dovecot.log"
        self.users_path = root / "users"
        self.mail_root = root / "mail"
        self._users: dict[str, MailUser] = {}
        self._lock = threading.Lock()
        self._running = False
        self._binary = find_dovecot()
        if self._binary is None:
            raise DovecotNotInstalled(
                "dovecot is not installed: `apt-get install dovecot-imapd` (Debian) to run "
                "the IMAP tests"
            )
        self._uid, self._gid, self._internal_user, self._login_user = _accounts()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.mail_root.mkdir(parents=True, exist_ok=True)
        # Mail processes run as an unprivileged user: it must own the mail and home trees.
        for path in (self.mail_root, self.root / "home"):
            os.chown(path, self._uid, self._gid)
        self.users_path.mkdir(exist_ok=True)
        self.users_path.chmod(0o755)
        self.config_path.write_text(self._config())
        # The daemon inherits stdout/stderr: point them at a file, not a pipe we wait on.
        startup = self.root / "startup.err"
        with startup.open("wb") as err:
            proc = subprocess.run(
                [self._binary or "dovecot", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=30,
            )
        if proc.returncode != 0:
            raise RuntimeError(
                f"dovecot failed to start (exit {proc.returncode}): "
                f"{startup.read_text(errors='replace').strip()}\nlog: {self.log_text()}"
            )
        self._running = True
        atexit.register(self.stop)
        self._wait_ready(self.port)

    def stop(self) -> None:
        """SIGTERM the master; it finishes shutting down in the background.

        ``dovecot stop`` would wait ~3 s for its children; nothing here needs that, as
        every instance uses its own ports and directory.
        """
        if not self._running:
            return
        self._running = False
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.root / "run" / "master.pid").read_text().strip())
            os.kill(pid, signal.SIGTERM)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + 20
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, port), timeout=1) as s:
                    if s.recv(64).startswith(b"* OK"):
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer on port {port}: {last}\n{self.log_text()}")

    # -- users and mail ----------------------------------------------------------------

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        """Create a fresh user with an empty mailbox; returns ``(username, password)``."""
        username = f"{prefix}{next(_counter)}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        with self._lock:
            self._users[username] = MailUser(username, password)
        # One passwd-file per user (the config's path has %u): Dovecot re-checks a file
        # at most once a second, so appending to a shared file races with logins.
        line = (
            f"{username}:{{PLAIN}}{password}:{self._uid}:{self._gid}::"
            f"{self.root / 'home' / username}::\n"
        )
        tmp = self.users_path / f".{username}.tmp"
        tmp.write_text(line)
        tmp.chmod(0o644)
        tmp.replace(self.users_path / username)
        return username, password

    def user(self, username: str) -> MailUser:
        return self._users[username]

    def password(self, username: str) -> str:
        return self._users[username].password

    def username_for_address(self, address: str) -> str | None:
        local, _, domain = address.strip("<>").rpartition("@")
        if domain.lower() != MAIL_DOMAIN or local not in self._users:
            return None
        return local

    def check_login(self, username: str, password: str) -> bool:
        user = self._users.get(username)
        return user is not None and secrets.compare_digest(user.password, password)

    def address(self, username: str) -> str:
        return self._users[username].address

    @contextlib.contextmanager
    def admin(self, username: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib IMAP connection as ``username`` (plain, loopback)."""
        conn = imaplib.IMAP4(self.host, self.port, timeout=30)
        try:
            conn.login(username, self.password(username))
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def deliver(
        self,
        username: str,
        raw: bytes,
        folder: str = "INBOX",
        *,
        flags: Sequence[str] = (),
    ) -> int:
        """Put ``raw`` into ``folder`` of ``username`` (unseen unless ``flags`` say so).

        Uses IMAP APPEND as the user, which a real MTA delivery looks like to other
        clients (EXISTS, RECENT, IDLE wake-up). Returns the new UID.
        """
        with self.admin(username) as conn:
            flag_text = "(" + " ".join(flags) + ")" if flags else None
            typ, data = conn.append(_quote(folder), flag_text, None, raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND to {folder} failed: {data!r}")
            match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            if not match:
                raise RuntimeError(f"no APPENDUID in {data!r}")
            return int(match.group(1))

    def reset_uidvalidity(self, username: str, folder: str = "INBOX") -> int:
        """Give ``folder`` a new UIDVALIDITY, as a server rebuild would; returns it.

        The messages stay; their UIDs are now meaningless to a client that cached them.
        Uses ``doveadm mailbox update``, which needs no client connection.
        """
        with self.admin(username) as conn:
            _typ, data = conn.status(_quote(folder), "(UIDVALIDITY)")
            old = int(re.search(rb"UIDVALIDITY (\d+)", data[0] or b"").group(1))  # type: ignore[union-attr]
        new = old + 1000 + secrets.randbelow(1000)
        self._doveadm("mailbox", "update", "-u", username, "--uid-validity", str(new), folder)
        return new

    def _doveadm(self, *args: str) -> str:
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        proc = subprocess.run(
            [doveadm, "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    # -- config ------------------------------------------------------------------------

    def _config(self) -> str:
        r = self.root
        mailbox_lines = []
        for name, special in self.mailboxes:
            body = "auto = subscribe"
            if special:
                body += f"\n    special_use = {special}"
            mailbox_lines.append(f'  mailbox "{name}" {{\n    {body}\n  }}')
        mailboxes = "\n".join(mailbox_lines)
        if self.tls:
            ssl = f"ssl = yes\nssl_cert = <{self.tls.cert_path}\nssl_key = <{self.tls.key_path}\n"
            imaps = f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.ssl_port}\n    ssl = yes\n  }}\n"
        else:
            ssl = "ssl = no\n"
            imaps = "  inet_listener imaps {\n    port = 0\n  }\n"
        capability = f"imap_capability = {self.capability}\n" if self.capability else ""
        return f"""# Private test instance, written by tests/mailservers/dovecot.py
protocols = imap
listen = 127.0.0.1
instance_name = mailroom-test-{os.getpid()}-{self.port}
base_dir = {r}/run
state_dir = {r}/state
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
default_internal_user = {self._internal_user}
default_internal_group = {self._internal_user_group()}
default_login_user = {self._login_user}
first_valid_uid = {min(self._uid, 100) if self._uid else 0}
first_valid_gid = 0
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{self.mail_root}/%u
mail_fsync = never
mail_plugins =
imap_idle_notify_interval = 1 secs
{capability}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_path}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.users_path}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
{imaps}  process_min_avail = 0
}}
service anvil {{
  chroot =
  # No per-IP auth penalty: a wrong-password test must not slow the next login.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  chroot =
}}
"""

    def _internal_user_group(self) -> str:
        import grp

        return grp.getgrgid(pwd.getpwnam(self._internal_user).pw_gid).gr_name


def _accounts() -> tuple[int, int, str, str]:
    """(mail uid, mail gid, internal user, login user) for this process's privileges."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name
    # As root: Dovecot refuses to serve mail as root, so use unprivileged system users.
    internal = "dovecot" if _has_user("dovecot") else "nobody"
    login = "dovenull" if _has_user("dovenull") else "nobody"
    mail = pwd.getpwnam("nobody")
    return mail.pw_uid, mail.pw_gid, internal, login


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_dovecot(
    *,
    tls: TlsMaterial | None = None,
    capability: str | None = None,
    mailboxes: Sequence[tuple[str, str | None]] = SPECIAL_USE_MAILBOXES,
) -> DovecotServer:
    """Start a private Dovecot on free loopback ports; the caller must ``stop()`` it."""
    root = Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
    # mkdtemp makes 0700; Dovecot's unprivileged processes must reach into it.
    root.chmod(0o755)
    server = DovecotServer(root, tls=tls, capability=capability, mailboxes=mailboxes)
    server.start()
    return server
