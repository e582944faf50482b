"""Pure conversation threading over a minimal input type. See docs/threading.md.

Two questions, answered separately:

1. *Membership* (which messages form one conversation): the connected components of the graph
   whose nodes are messages and Message-IDs, with an edge from a message to its own id and to
   every id in its In-Reply-To and References (ids of absent messages, "ghosts", still join).
   Provider thread ids are extra edges (hints within one account), and a reply-prefixed message
   with no threading headers at all may join by subject within a time window.
2. *Display parent* (the tree inside a conversation): notmuch's rule (parent_id()), then, when
   that parent is absent, the deepest present message named in References; reference loops are
   broken at their oldest message.

Both are independent of input order except "first Message-ID wins" for duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.mail.subject import has_reply_prefix, normalize_subject
from bot.mail.types import ParsedMessage

_QUOTED_LOCAL_RE = re.compile(r'^"([^"\\\s]+)"@(.+)$')


@dataclass(frozen=True)
class ThreadInput:
    key: str  # caller's id for the message (unique)
    message_id: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    date: datetime | None
    provider_thread_id: str | None = None  # compared as-is: scope it to one account
    in_reply_to_clean: bool = True  # ParsedMessage.in_reply_to_clean; False = "dodgy" header

    @classmethod
    def of(
        cls, p: ParsedMessage, key: str | None = None, message_id: str | None = None
    ) -> ThreadInput:
        """A parsed message's threading input (`key` and `message_id` default to its own)."""
        own = p.message_id if message_id is None else message_id
        return cls(
            key=own if key is None else key,
            message_id=own,
            in_reply_to=tuple(p.in_reply_to),
            references=tuple(p.references),
            subject=p.subject,
            date=p.date,
            in_reply_to_clean=p.in_reply_to_clean,
        )


@dataclass
class Node:
    key: str | None  # the caller's message key, None for a phantom (absent) message
    message_id: str
    date: datetime | None = None  # the message's date; for a phantom, its earliest descendant's
    children: list[Node] = field(default_factory=list)

    @property
    def is_phantom(self) -> bool:
        return self.key is None

    def walk(self) -> Iterable[Node]:
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass
class Thread:
    roots: list[Node]  # top-level nodes, sorted by date then key
    keys: list[str]  # every message in the thread, sorted by date then key
    message_ids: set[str]  # every id connected to the thread, ghosts included

    @property
    def root(self) -> Node:
        return self.roots[0]

    @property
    def root_key(self) -> str | None:
        """The first top-level message (None only if every top-level node is a phantom)."""
        for node in self.roots:
            if node.key is not None:
                return node.key
        return None


_INVALID_ID_CHAR_RE = re.compile(r"[\s<>]")


def normalize_id(value: str) -> str:
    """Strip brackets and whitespace; unquote a quoted local part ("a"@b == a@b)."""
    v = value.strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1].strip()
    m = _QUOTED_LOCAL_RE.match(v)
    return f"{m.group(1)}@{m.group(2)}" if m else v


def _valid(ident: str) -> bool:
    # \s in a str pattern is str.isspace(); one regex scan instead of a Python loop per char.
    return bool(ident) and _INVALID_ID_CHAR_RE.search(ident) is None


def _ids(values: Iterable[str], exclude: str) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        ident = normalize_id(value)
        if _valid(ident) and ident != exclude and ident not in seen:
            seen.add(ident)
            out.append(ident)
    return out


def parent_id(msg: ThreadInput) -> str | None:
    """notmuch's display parent: In-Reply-To if it is exactly one clean id; else the last
    References id; else the first In-Reply-To id."""
    own = normalize_id(msg.message_id or "")
    irt = _ids(msg.in_reply_to, own)
    refs = _ids(msg.references, own)
    if len(irt) == 1 and msg.in_reply_to_clean:
        return irt[0]
    if refs:
        return refs[-1]
    return irt[0] if irt else None


def link_ids(msg: ThreadInput) -> tuple[str, ...]:
    """Every Message-ID that connects this message to a conversation: own, In-Reply-To,
    References (normalized, de-duplicated, order kept). Use it to find a stored conversation."""
    own = normalize_id(msg.message_id or "")
    out = [own] if _valid(own) else []
    # `_ids` de-duplicates with a set and leaves `own` out: testing each id against the list
    # here was quadratic (a 2 MB References header took minutes, security-review #1).
    out.extend(_ids((*msg.in_reply_to, *msg.references), own))
    return tuple(out)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # Deterministic: the smaller name becomes the representative.
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def _dkey(date: datetime | None) -> datetime:
    # Aware and naive datetimes cannot be compared; normalise naive ones to "as if UTC".
    if date is None:
        return datetime.min
    return date.replace(tzinfo=None) - (date.utcoffset() or timedelta(0))


def thread(
    messages: Sequence[ThreadInput],
    *,
    subject_fallback: bool = True,
    subject_window: timedelta = timedelta(days=7),
    prune_phantoms: bool = True,
    subject_prefixes: Sequence[str] = (),
) -> list[Thread]:
    """Group messages into conversations and build each conversation's reply tree.

    ``subject_prefixes`` adds reply prefixes beyond the built-in localized list.
    Threads are returned oldest first (by their earliest message).
    """
    # Step 1: identities. Keys must be unique; the first message to claim a Message-ID owns it,
    # later duplicates keep only their caller key (they still link through their headers).
    msgs: dict[str, ThreadInput] = {}
    own_id: dict[str, str | None] = {}
    by_id: dict[str, str] = {}
    dates: dict[str, datetime] = {}
    for m in messages:
        if m.key in msgs:
            continue
        msgs[m.key] = m
        dates[m.key] = _dkey(m.date)
        ident = normalize_id(m.message_id or "")
        if _valid(ident) and ident not in by_id:
            by_id[ident] = m.key
            own_id[m.key] = ident
        else:
            own_id[m.key] = None

    def order(key: str) -> tuple[bool, datetime, str]:
        return (msgs[key].date is None, dates[key], key)

    # Step 2: membership by header links (ghost ids included) and provider hints.
    uf = _UnionFind()
    links: dict[str, list[str]] = {}
    provider_first: dict[str, str] = {}
    for key, m in msgs.items():
        node = "m:" + key
        uf.find(node)
        own = own_id[key]
        exclude = own or normalize_id(m.message_id or "")
        if own:
            uf.union(node, "i:" + own)
        ls = _ids((*m.in_reply_to, *m.references), exclude)
        links[key] = ls
        for link in ls:
            uf.union(node, "i:" + link)
        if m.provider_thread_id:
            first = provider_first.setdefault(m.provider_thread_id, key)
            uf.union(node, "m:" + first)

    # Step 3: subject fallback, only for reply-prefixed messages without any threading header,
    # joining the closest earlier message with the same base subject inside the window.
    subject_parent: dict[str, str] = {}
    if subject_fallback:
        base = {k: normalize_subject(m.subject or "", subject_prefixes) for k, m in msgs.items()}
        by_subject: dict[str, list[str]] = {}
        for k in sorted(msgs, key=order):
            if base[k] and msgs[k].date is not None:
                by_subject.setdefault(base[k], []).append(k)
        for k in sorted(msgs, key=order):
            m = msgs[k]
            if links[k] or m.date is None or not base[k]:
                continue
            if not has_reply_prefix(m.subject or "", subject_prefixes):
                continue
            best: str | None = None
            for other in by_subject.get(base[k], ()):
                if other == k or order(other) >= order(k):
                    continue
                if dates[k] - dates[other] > subject_window:
                    continue
                if uf.find("m:" + other) == uf.find("m:" + k):
                    continue
                best = other  # candidates are in date order: the last one is the closest
            if best is not None:
                uf.union("m:" + k, "m:" + best)
                subject_parent[k] = best

    # Step 4: display parents. notmuch's choice first (only if present and not itself) ...
    parent: dict[str, str] = {}
    for key, m in msgs.items():
        pid = parent_id(m)
        target = by_id.get(pid) if pid else None
        if target is not None and target != key:
            parent[key] = target
        elif key in subject_parent:
            parent[key] = subject_parent[key]
    _break_cycles(parent, order)

    # ... then orphans hang under the deepest present message they reference (pruned view),
    # or under phantom containers for their absent parents (unpruned view).
    # Depths are taken from the tree as it stands now and not updated while orphans are
    # attached, as notmuch does; on a tie the earliest reference wins.
    frozen_depth = {key: _depth(key, parent) for key in msgs}
    phantom_parent: dict[str, str] = {}  # message key or "i:"+ghost id -> ghost id
    ghost_up: dict[str, str] = {}  # ghost id -> parent ("m:key" or "i:ghost")
    for key in sorted(msgs, key=order):
        if key in parent or not links[key]:
            continue
        if prune_phantoms:
            best_key: str | None = None
            best_depth = -1
            for ref in _ids(msgs[key].references, own_id[key] or ""):
                cand = by_id.get(ref)
                if cand is None or cand == key or _is_descendant(cand, key, parent):
                    continue
                depth = frozen_depth[cand]
                if depth > best_depth:
                    best_key, best_depth = cand, depth
            if best_key is not None:
                parent[key] = best_key
        else:
            pid = parent_id(msgs[key])
            if pid is None or pid in by_id:
                continue
            phantom_parent[key] = pid
            refs = _ids(msgs[key].references, own_id[key] or "")
            child = pid
            while child in refs:
                i = refs.index(child)
                if i == 0 or child in ghost_up:
                    break
                up = refs[i - 1]
                if up in by_id:
                    ghost_up[child] = "m:" + by_id[up]
                    break
                if _ghost_reaches(up, child, ghost_up):
                    break
                ghost_up[child] = "i:" + up
                child = up

    # Step 5: assemble one Thread per component.
    components: dict[str, list[str]] = {}
    for key in msgs:
        components.setdefault(uf.find("m:" + key), []).append(key)
    ids_by_comp: dict[str, set[str]] = {}
    for node in uf.parent:
        if node.startswith("i:"):
            ids_by_comp.setdefault(uf.find(node), set()).add(node[2:])

    threads: list[Thread] = []
    for rep, keys in components.items():
        keys.sort(key=order)
        nodes = {k: Node(key=k, message_id=own_id[k] or "", date=msgs[k].date) for k in keys}
        ghosts: dict[str, Node] = {}

        def ghost(ident: str, ghosts: dict[str, Node] = ghosts) -> Node:
            if ident not in ghosts:
                ghosts[ident] = Node(key=None, message_id=ident)
            return ghosts[ident]

        roots: list[Node] = []
        for k in keys:
            if k in parent:
                nodes[parent[k]].children.append(nodes[k])
            elif k in phantom_parent:
                ghost(phantom_parent[k]).children.append(nodes[k])
            else:
                roots.append(nodes[k])
        # Attach each phantom to its own parent; attaching may create further phantoms.
        pending = list(ghosts)
        while pending:
            gid = pending.pop()
            above = ghost_up.get(gid)
            if above is None:
                roots.append(ghosts[gid])
            elif above.startswith("m:"):
                nodes[above[2:]].children.append(ghosts[gid])
            else:
                if above[2:] not in ghosts:
                    pending.append(above[2:])
                ghost(above[2:]).children.append(ghosts[gid])
        for r in roots:
            _finish(r)
        roots.sort(key=_node_order)
        threads.append(Thread(roots=roots, keys=keys, message_ids=ids_by_comp.get(rep, set())))
    threads.sort(key=lambda t: order(t.keys[0]))
    return threads


def _node_order(n: Node) -> tuple[bool, datetime, str]:
    return (n.date is None, _dkey(n.date), n.key or "\uffff" + n.message_id)


def _finish(root: Node) -> None:
    """Give phantoms the date of their earliest descendant and sort every child list."""
    post: list[Node] = list(root.walk())
    for node in reversed(post):
        node.children.sort(key=_node_order)
        if node.key is None:
            dated = [c.date for c in node.children if c.date is not None]
            node.date = min(dated, key=_dkey) if dated else None


def _break_cycles(
    parent: dict[str, str], order: Callable[[str], tuple[bool, datetime, str]]
) -> None:
    """A parent chain that loops is cut at its oldest member, which becomes top-level."""
    state: dict[str, int] = {}  # 1 = on current path, 2 = done
    for start in list(parent):
        path: list[str] = []
        node: str | None = start
        while node is not None and state.get(node) is None:
            state[node] = 1
            path.append(node)
            node = parent.get(node)
        if node is not None and state.get(node) == 1:
            cycle = path[path.index(node) :]
            oldest = min(cycle, key=order)
            del parent[oldest]
        for p in path:
            state[p] = 2


def _depth(key: str, parent: dict[str, str]) -> int:
    depth = 0
    seen = {key}
    while key in parent:
        key = parent[key]
        if key in seen:
            break
        seen.add(key)
        depth += 1
    return depth


def _is_descendant(candidate: str, ancestor: str, parent: dict[str, str]) -> bool:
    seen: set[str] = set()
    node: str | None = candidate
    while node is not None and node not in seen:
        if node == ancestor:
            return True
        seen.add(node)
        node = parent.get(node)
    return False


def _ghost_reaches(start: str, target: str, ghost_up: dict[str, str]) -> bool:
    node = start
    seen: set[str] = set()
    while node not in seen:
        if node == target:
            return True
        seen.add(node)
        up = ghost_up.get(node)
        if up is None or not up.startswith("i:"):
            return False
        node = up[2:]
    return False
