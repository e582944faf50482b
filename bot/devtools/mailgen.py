"""A deterministic generator of realistic mailboxes, for tests and benchmarks.

Same seed, same bytes. Threads of 1-20 messages interleaved in time the way a real inbox
receives them, with proper Message-ID / In-Reply-To / References (a few replies drop
References, a few drop every threading header and keep only "Re:"), ~500 senders in ~100
domains (public webmail included), plain and HTML bodies, attachments, utf-8 / iso-8859-1 in
8bit, quoted-printable and base64, and a small share of broken messages.

    gen = MailGen(seed=1)
    for raw in gen.messages(1000): ...
    write_mbox(path, gen.messages(1000)); write_maildir(path, MailGen(seed=1).messages(1000))
"""

from __future__ import annotations

import base64
import heapq
import mailbox
import quopri
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.utils import format_datetime
from pathlib import Path

WEBMAIL = [
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "live.com",
    "yahoo.com", "yahoo.fr", "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com",
    "gmx.de", "gmx.net", "web.de", "mail.ru", "yandex.ru", "qq.com", "163.com",
]  # fmt: skip
_PREFIX = ["north", "blue", "alpen", "river", "stone", "bright", "silver", "oak", "delta", "nova",
           "summit", "harbor", "pixel", "green", "atlas", "cedar", "orbit", "lumen", "vista", "terra"]  # fmt: skip
_SUFFIX = ["works", "labs", "logistics", "media", "foods", "systems", "partners", "health",
           "energy", "retail"]  # fmt: skip
_TLDS = ["com", "de", "fr", "co.uk", "io", "net", "nl", "es"]
FIRST = ["Anna", "Ben", "Chloé", "David", "Élodie", "Farid", "Greta", "Hiroshi", "Inès", "Jonas",
         "Katarzyna", "Liam", "María", "Noah", "Olivia", "Paweł", "Quentin", "Rosa", "Søren",
         "Tomás", "Ursula", "Viktor", "Wen", "Xavier", "Yara", "Zoë", "François", "Jürgen"]  # fmt: skip
LAST = ["Müller", "Smith", "García", "Dubois", "Rossi", "Nowak", "Jensen", "Tanaka", "Okafor",
        "Silva", "Novak", "Berg", "Łukasz", "O'Brien", "Haddad", "Kim", "Larsen", "Moreau"]  # fmt: skip
WORDS = [
    "invoice",
    "order",
    "delivery",
    "shipment",
    "contract",
    "renewal",
    "meeting",
    "schedule",
    "pricing",
    "quote",
    "proposal",
    "budget",
    "report",
    "quarterly",
    "review",
    "update",
    "request",
    "approval",
    "payment",
    "reminder",
    "account",
    "support",
    "ticket",
    "issue",
    "question",
    "feedback",
    "project",
    "launch",
    "timeline",
    "draft",
    "agreement",
    "discount",
    "warehouse",
    "pallet",
    "container",
    "customs",
    "insurance",
    "deadline",
    "workshop",
    "training",
    "onboarding",
    "migration",
    "server",
    "outage",
    "backup",
    "license",
    "subscription",
    "catalogue",
    "sample",
    "prototype",
    "design",
    "photos",
    "brochure",
    "samples",
    "forecast",
    "inventory",
    "audit",
]
RARE = ["zephyr", "quokka", "marzipan", "obsidian", "tamarind", "vellum", "kumquat", "gossamer"]
SUBJECTS = ["{w} for {company}", "Question about the {w}", "{W} {n}", "Re-sending the {w}",
            "Your {w} #{n}", "{W} next week?", "Urgent: {w}", "{W} and {w2}"]  # fmt: skip
REPLY_PREFIXES = ["Re: ", "Re: ", "Re: ", "RE: ", "AW: ", "SV: "]


@dataclass
class Person:
    name: str
    email: str


@dataclass(order=True)
class _Thread:
    next_at: datetime
    index: int = field(compare=False)
    remaining: int = field(compare=False)
    subject: str = field(compare=False)
    contact: Person = field(compare=False)
    ids: list[str] = field(default_factory=list, compare=False)
    refs: dict[str, list[str]] = field(default_factory=dict, compare=False)


def _domains(rng: random.Random, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add(f"{rng.choice(_PREFIX)}{rng.choice(_SUFFIX)}.{rng.choice(_TLDS)}")
    return sorted(out)


def _ascii_local(name: str) -> str:
    table = str.maketrans("éèÉçñøöüłåäóáíúëïŁØÖÜÅÄ'", "eeEcnooulaaoaiueiLOOUAA-")
    return name.translate(table).lower().replace(" ", ".")


class MailGen:
    def __init__(
        self,
        seed: int = 0,
        *,
        own_address: str = "team@ourshop.example",
        senders: int = 500,
        company_domains: int = 80,
        start: datetime = datetime(2024, 1, 1, 8, 0, tzinfo=UTC),
        broken_ratio: float = 0.01,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.own = Person("Our Shop Team", own_address)
        self.start = start
        self.broken_ratio = broken_ratio
        self.domains = _domains(self.rng, company_domains) + WEBMAIL
        self.people: list[Person] = []
        seen: set[str] = set()
        while len(self.people) < senders:
            first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
            domain = self.rng.choice(self.domains)
            email = f"{_ascii_local(first)}.{_ascii_local(last)}@{domain}"
            if email in seen:
                email = f"{_ascii_local(first)}{len(seen)}@{domain}"
            seen.add(email)
            self.people.append(Person(f"{first} {last}", email))

    # --- content ------------------------------------------------------------------------

    def _subject(self, contact: Person) -> str:
        r = self.rng
        company = contact.email.split("@", 1)[1].split(".")[0].capitalize()
        w, w2 = r.choice(WORDS), r.choice(WORDS)
        s = r.choice(SUBJECTS).format(
            w=w, W=w.capitalize(), w2=w2, n=r.randint(100, 99999), company=company
        )
        if r.random() < 0.05:
            s += " — " + r.choice(["Müller GmbH", "café order", "Señor García", "Łódź office"])
        return s

    def _body(self, sender: Person, quoted: str | None) -> str:
        r = self.rng
        lines = [f"Hi {r.choice(FIRST)},", ""]
        for _ in range(r.randint(1, 6)):
            words = [r.choice(WORDS) for _ in range(r.randint(6, 18))]
            if r.random() < 0.02:
                words.append(r.choice(RARE))
            if r.random() < 0.05:
                words.append(r.choice(["naïve", "déjà vu", "Grüße", "straße", "niño", "€ 120"]))
            lines.append(" ".join(words).capitalize() + ".")
        lines += ["", "Best regards,", sender.name]
        if quoted:
            lines += ["", "> " + quoted.replace("\n", "\n> ")]
        return "\n".join(lines)

    # --- encoding ------------------------------------------------------------------------

    @staticmethod
    def _encoded_word(value: str, charset: str) -> str:
        try:
            value.encode(charset)
        except UnicodeEncodeError:
            charset = "utf-8"
        return Header(value, charset).encode()

    def _addr(self, p: Person, charset: str) -> str:
        if all(ord(c) < 128 for c in p.name):
            return f'"{p.name}" <{p.email}>'
        return f"{self._encoded_word(p.name, charset)} <{p.email}>"

    def _text_part(self, body: str, subtype: str = "plain") -> tuple[str, str]:
        """(headers, encoded body) of one text part in a random charset/encoding."""
        r = self.rng
        charset = "iso-8859-1" if r.random() < 0.25 else "utf-8"
        data = body.encode(charset, errors="replace")
        cte = (
            r.choice(["8bit", "quoted-printable", "base64"])
            if data != body.encode("ascii", "ignore")
            else r.choice(["7bit", "quoted-printable"])
        )
        if cte == "base64":
            payload = base64.encodebytes(data).decode("ascii")
        elif cte == "quoted-printable":
            payload = quopri.encodestring(data).decode("ascii")
        else:
            payload = data.decode(charset)
        head = (
            f"Content-Type: text/{subtype}; charset={charset}\nContent-Transfer-Encoding: {cte}\n"
        )
        return head, payload

    def _attachment(self) -> str:
        r = self.rng
        kind = r.choice(["pdf", "csv", "png"])
        size = r.randint(200, 3000)
        if kind == "csv":
            content = "\n".join(
                f"{r.choice(WORDS)},{r.randint(1, 999)}" for _ in range(size // 12)
            ).encode()
            ctype = "text/csv"
        else:
            content = bytes(r.getrandbits(8) for _ in range(size))
            ctype = "application/pdf" if kind == "pdf" else "image/png"
        name = f"{r.choice(WORDS)}-{r.randint(1, 999)}.{kind}"
        return (
            f'Content-Type: {ctype}; name="{name}"\n'
            f'Content-Disposition: attachment; filename="{name}"\n'
            "Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(content).decode("ascii")
        )

    def _render(
        self,
        *,
        message_id: str | None,
        sender: Person,
        to: Person,
        subject: str,
        date: datetime,
        in_reply_to: str | None,
        references: list[str],
        body: str,
    ) -> bytes:
        r = self.rng
        charset = "iso-8859-1" if r.random() < 0.2 else "utf-8"
        subj = (
            subject if all(ord(c) < 128 for c in subject) else self._encoded_word(subject, charset)
        )
        headers = [
            f"From: {self._addr(sender, charset)}",
            f"To: {self._addr(to, charset)}",
            f"Subject: {subj}",
            f"Date: {format_datetime(date)}",
        ]
        if message_id:
            headers.append(f"Message-ID: <{message_id}>")
        if in_reply_to:
            headers.append(f"In-Reply-To: <{in_reply_to}>")
        if references:
            headers.append("References: " + "\n ".join(f"<{i}>" for i in references))
        headers.append("MIME-Version: 1.0")
        shape = r.random()
        boundary = f"=_b{r.getrandbits(48):x}"
        if shape < 0.55:
            head, payload = self._text_part(body)
            out = "\n".join(headers) + "\n" + head + "\n" + payload
        else:
            html = (
                "<html><body>"
                + "".join(
                    f"<p>{line.replace('&', '&amp;').replace('<', '&lt;')}</p>"
                    for line in body.split("\n")
                    if line
                )
                + "</body></html>"
            )
            ph, pp = self._text_part(body)
            hh, hp = self._text_part(html, "html")
            alt = (
                f"--{boundary}a\n{ph}\n{pp}\n--{boundary}a\n{hh}\n{hp}\n--{boundary}a--\n"
                if shape < 0.8
                else f"--{boundary}a\n{hh}\n{hp}\n--{boundary}a--\n"  # HTML only
            )
            if r.random() < 0.35:
                inner = f'Content-Type: multipart/alternative; boundary="{boundary}a"\n\n{alt}'
                parts = [inner] + [self._attachment() for _ in range(r.randint(1, 2))]
                out = (
                    "\n".join(headers)
                    + f'\nContent-Type: multipart/mixed; boundary="{boundary}"\n\n'
                    + "".join(f"--{boundary}\n{p}\n" for p in parts)
                    + f"--{boundary}--\n"
                )
            else:
                out = (
                    "\n".join(headers)
                    + f'\nContent-Type: multipart/alternative; boundary="{boundary}a"\n\n'
                    + alt
                )
        data = out.replace("\n", "\r\n").encode("utf-8", errors="surrogateescape")
        return self._maybe_break(data) if r.random() < self.broken_ratio else data

    def _maybe_break(self, data: bytes) -> bytes:
        r = self.rng
        how = r.randrange(5)
        if how == 0:  # cut in the middle of the MIME structure
            return data[: max(40, len(data) // 2)]
        if how == 1:
            return data.replace(b"Date: ", b"Date: the day after tomorrow ", 1)
        if how == 2:
            return data.replace(b"charset=utf-8", b"charset=x-no-such-charset", 1)
        if how == 3:
            return b"this line is not a header at all\r\n" + data
        return data.replace(b"\r\n\r\n", b"\r\n\r\n\x00\xff\xfe garbage \x00\r\n", 1)

    # --- the mailbox ---------------------------------------------------------------------

    def messages(self, n: int) -> Iterator[bytes]:
        """`n` raw messages in arrival (date) order."""
        for _meta, raw in self.messages_with_meta(n):
            yield raw

    def messages_with_meta(self, n: int) -> Iterator[tuple[dict[str, object], bytes]]:
        """Like messages(), with {"thread": index, "message_id": id|None} for each one (the
        thread a message was generated in; headerless replies join only by subject)."""
        r = self.rng
        heap: list[_Thread] = []
        clock = self.start
        made = 0
        thread_no = 0
        while made < n:
            # A new thread starts about every 40 minutes of mailbox time.
            if not heap or r.random() < 0.35:
                clock += timedelta(minutes=r.expovariate(1 / 40))
                contact = r.choice(self.people)
                size = min(20, 1 + int(r.expovariate(1 / 2.5)))
                heapq.heappush(
                    heap, _Thread(clock, thread_no, size, self._subject(contact), contact)
                )
                thread_no += 1
            t = heapq.heappop(heap)
            i = len(t.ids)
            inbound = i % 2 == 0 or r.random() < 0.2
            sender, to = (t.contact, self.own) if inbound else (self.own, t.contact)
            mid = (
                f"{self.seed}.{t.index}.{i}.{r.getrandbits(32):08x}@{sender.email.split('@', 1)[1]}"
            )
            irt: str | None = None
            refs: list[str] = []
            subject = t.subject
            quoted = None
            if i > 0:
                parent = t.ids[-1] if r.random() < 0.8 else r.choice(t.ids)
                irt = parent
                refs = (t.refs[parent] + [parent])[-20:]
                subject = r.choice(REPLY_PREFIXES) + t.subject
                quoted = "earlier message about the " + t.subject.lower()
                roll = r.random()
                if roll < 0.08:
                    refs = []  # In-Reply-To only
                elif roll < 0.11:
                    refs, irt = [], None  # no threading header at all: subject only
            body = self._body(sender, quoted)
            broken_id = r.random() < self.broken_ratio / 2
            raw = self._render(
                message_id=None if broken_id else mid,
                sender=sender,
                to=to,
                subject=subject,
                date=t.next_at,
                in_reply_to=irt,
                references=refs,
                body=body,
            )
            t.ids.append(mid)
            t.refs[mid] = refs
            made += 1
            yield {"thread": t.index, "message_id": None if broken_id else mid}, raw
            t.remaining -= 1
            if t.remaining > 0:
                t.next_at = t.next_at + timedelta(minutes=r.expovariate(1 / 300))
                heapq.heappush(heap, t)


def write_mbox(path: Path, raws: Iterable[bytes]) -> int:
    box = mailbox.mbox(str(path), create=True)
    count = 0
    try:
        box.lock()
        for raw in raws:
            box.add(mailbox.mboxMessage(raw))
            count += 1
        box.flush()
    finally:
        box.unlock()
        box.close()
    return count


def write_maildir(path: Path, raws: Iterable[bytes]) -> int:
    box = mailbox.Maildir(str(path), create=True)
    count = 0
    for raw in raws:
        box.add(mailbox.MaildirMessage(raw))
        count += 1
    return count
