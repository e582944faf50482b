"""`/inbox` command text → what to do (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.blocks.search import FILTERS

HELP = """*Mailroom: `/inbox` commands* (only you see the answers)
• `/inbox search QUERY`: search the mail you can see. `from:` `to:` `subject:` `client:` `account:` `has:attachment` `is:unread` `before:`/`after:YYYY-MM-DD`, `"exact phrase"`
• `/inbox list [all|unread|archived|linked|unlinked|mine|unassigned|waiting|snoozed|unanswered]`: conversations with counts, newest first
• `/inbox assign THREAD @person|me|nobody`: give a conversation (its `#42` from search and list results, or a Slack thread link) an owner
• `/inbox link ADDRESS-OR-THREAD CLIENT`: link a conversation (its `#42` from search and list results, or a Slack thread link) to a client, or add an address to a client and link its conversations
• `/inbox unlink ADDRESS-OR-THREAD`: remove a conversation's link, or an address from its client
• `/inbox client NAME`: a client's timeline
• `/inbox clients [QUERY]`: browse clients, or find them by name, company, address or domain; each with Edit and Timeline
• `/inbox clients add`: add a client
• `/inbox compose`: write a new email (in an account's channel, from that account)
• `/inbox help`: this help
Also: the *Compose email* shortcut (the ⚡ or `/` menu) writes a new email from anywhere, and Mailroom's *Home* tab (click the app's name) shows your counts, recent mail and a *New email* button.
You see the mail of an account only if you are a member of its channel."""


@dataclass(frozen=True)
class Command:
    name: str  # help|search|list|link|unlink|client|clients|clients_add|compose|assign|unknown
    args: tuple[str, ...] = ()
    error: str | None = None


_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def unwrap(text: str) -> str:
    """Slack escapes links as <url|label> and <mailto:a@b|a@b>: keep the target."""

    def repl(m: re.Match[str]) -> str:
        target = m.group(1)
        if target.startswith("mailto:"):
            return target[len("mailto:") :]
        if target.startswith(("http://", "https://")):
            return target
        return m.group(2) or target

    return _LINK.sub(repl, text)


_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^<>]*)?>")


def _parse_assign(rest: str) -> Command:
    """`assign THREAD WHO`; WHO is `<@U…>` (escaped mention), `me`, `nobody` or `@name`.
    Parsed before `unwrap`, which would turn a mention into its label."""
    target, _, who = rest.strip().partition(" ")
    who = who.strip()
    usage = "Usage: `/inbox assign #42 @person` (or `me`, or `nobody`)."
    if not target or not who:
        return Command("assign", error=usage)
    m = _MENTION.fullmatch(who)
    if m:
        return Command("assign", (unwrap(target), "id:" + m.group(1)))
    lowered = who.lower()
    if lowered in {"me", "myself"}:
        return Command("assign", (unwrap(target), "me"))
    if lowered in {"nobody", "none", "noone", "-"}:
        return Command("assign", (unwrap(target), "nobody"))
    return Command("assign", (unwrap(target), "name:" + who.lstrip("@")))


def parse_command(text: str) -> Command:
    raw = (text or "").strip()
    if raw.split(" ", 1)[0].lower() == "assign":
        return _parse_assign(raw[len("assign") :])
    text = unwrap(text or "").strip()
    if not text:
        return Command("help")
    verb, _, rest = text.partition(" ")
    verb = verb.lower()
    rest = rest.strip()
    if verb in {"help", "?", "-h", "--help"}:
        return Command("help")
    if verb == "search":
        if not rest:
            return Command("search", error="Tell me what to search for: `/inbox search invoice`.")
        return Command("search", (rest,))
    if verb == "list":
        which = (rest or "all").lower()
        if which not in FILTERS:
            return Command("list", error=f"`list` takes one of: {', '.join(FILTERS)}.")
        return Command("list", (which,))
    if verb == "link":
        target, _, client = rest.partition(" ")
        if not target or not client.strip():
            return Command("link", error="Usage: `/inbox link ADDRESS-OR-THREAD CLIENT`.")
        return Command("link", (target, client.strip()))
    if verb == "unlink":
        if not rest or " " in rest:
            return Command("unlink", error="Usage: `/inbox unlink ADDRESS-OR-THREAD`.")
        return Command("unlink", (rest,))
    if verb == "client":
        if not rest:
            return Command("client", error="Usage: `/inbox client NAME`.")
        return Command("client", (rest,))
    if verb == "clients":
        if rest.lower() in {"add", "new"}:
            return Command("clients_add")
        return Command("clients", (rest,))  # browse, or find by name/company/address/domain
    if verb in {"compose", "new", "write"}:
        return Command("compose")
    return Command("unknown", (text,))


@dataclass(frozen=True)
class ThreadRef:
    conversation_id: int | None = None
    channel_id: str | None = None
    ts: str | None = None


_PERMALINK = re.compile(
    r"https?://[^/\s]+/archives/(?P<channel>[A-Z0-9]+)/p(?P<ts>\d{10})(?P<frac>\d{6})"
    r"(?:\?(?P<query>\S*))?",
)


def parse_thread_ref(text: str) -> ThreadRef | None:
    """`#42`, `42`, or a Slack message link (a reply's link points at its thread)."""
    text = text.strip()
    if re.fullmatch(r"#?\d{1,12}", text):
        return ThreadRef(conversation_id=int(text.lstrip("#")))
    m = _PERMALINK.fullmatch(text)
    if not m:
        return None
    query = m.group("query") or ""
    thread = re.search(r"(?:^|&)thread_ts=(\d+\.\d+)", query)
    ts = thread.group(1) if thread else f"{m.group('ts')}.{m.group('frac')}"
    return ThreadRef(channel_id=m.group("channel"), ts=ts)


def looks_like_address(text: str) -> bool:
    return bool(re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", text.strip()))
