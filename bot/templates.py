"""Email templates: Jinja2 in a sandbox, with errors a person can act on.

Templates are written by admins and rendered when someone picks one in the compose modal. The
sandbox keeps a template away from Python internals (no `_`-prefixed attributes, no `__globals__`),
and a budget keeps it from burning CPU or memory: `range`, `*` and `**` are bounded in the
template, and `render` / `validate` run in a child process with a CPU, memory and wall-clock
limit, since format widths, `center`, `indent`, `replace`, `join` and loops over strings can
each allocate gigabytes or loop for minutes (security review #14). Unknown
variable names are errors (typos must not silently send "Hi ,"), while a known variable whose value
is missing renders empty, and `| default('there')` treats empty as missing.

No I/O but the child process. Output is text (the body's text nodes, see render_rich), so
there is no HTML autoescaping: the HTML is generated from the text later, escaped.
"""

from __future__ import annotations

import logging
import operator
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, NoReturn

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from bot.mail import richtext

log = logging.getLogger(__name__)

# What one render (subject and body together) may use, in its child process. The wall clock
# is the one a person waits for: saving a template renders inside Slack's 3 s ack.
RENDER_SECONDS = 2.0
RENDER_CPU_SECONDS = 2
RENDER_EXTRA_MEMORY = 256 * 1024 * 1024  # address space over the child's own at start
TOO_COSTLY = "not allowed: the template takes too much time or memory to render"

# A template must fit the compose modal's body box (plain_text_input max_length).
MAX_BODY_SOURCE = 3000
MAX_SUBJECT_SOURCE = 500
MAX_OUTPUT = 20_000  # characters of one rendered field
MAX_RANGE_TOTAL = 10_000  # items produced by range() over one render
MAX_EXPONENT = 100
MAX_POWER_BITS = 4096

VARIABLES: dict[str, dict[str, str]] = {
    "client": {"name": "the linked client's name", "company": "the client's company"},
    "contact": {
        "name": "the correspondent's full name",
        "first_name": "the correspondent's first name",
        "email": "the correspondent's address",
    },
    "agent": {"name": "your Slack name", "first_name": "your first name"},
    "account": {"email": "the mailbox address", "name": "the mailbox display name"},
    "thread": {"subject": "the conversation's subject"},
}
TODAY_HELP = "today's date (e.g. {{ today.strftime('%d %B %Y') }})"


@dataclass(frozen=True)
class TemplateProblem:
    """Why a template cannot be used, in words for the person who wrote it."""

    field: str  # "subject" or "body"
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.field.capitalize()}, {where}{self.message}"


class _Group(dict[str, Any]):
    """A variable group (`contact`, `client`…) that remembers its name for error messages."""

    def __init__(self, path: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self._mr_path = path  # `_` prefix: out of the template's reach


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names the full variable, e.g. `contact.first_nam`."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        obj = self._undefined_obj
        name = self._undefined_name
        if self._undefined_hint is None and isinstance(obj, _Group) and name is not None:
            raise UndefinedError(f"unknown variable {obj._mr_path}.{name}")
        if self._undefined_hint is None and name is not None:
            if obj is missing:
                raise UndefinedError(f"unknown variable {name}")
            raise UndefinedError(f"unknown attribute {name!r}")
        raise self._undefined_exception(self._undefined_message)

    # StrictUndefined binds these at class creation; re-point them at our version.
    __iter__ = __str__ = __len__ = _fail_with_undefined_error
    __eq__ = __ne__ = __bool__ = __hash__ = _fail_with_undefined_error
    __contains__ = _fail_with_undefined_error


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    # Unlike Jinja's own, an empty value is missing too: "Hi {{ contact.first_name |
    # default('there') }}" must not become "Hi ," when the sender gave no name.
    if isinstance(value, StrictUndefined) or value is None or value == "":
        return default_value
    if boolean and not value:
        return default_value
    return value


class _Budget:
    def __init__(self) -> None:
        self.range_items = 0


class MailroomSandbox(SandboxedEnvironment):
    """The sandbox plus resource limits on the operators a template can abuse."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self) -> None:
        super().__init__(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)
        self.filters["default"] = _default
        self.filters["d"] = _default
        self.globals.pop("lipsum", None)  # lipsum(n=10**6) is a free way to burn CPU

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"the exponent {right} is too large")
            if isinstance(left, int) and left.bit_length() * abs(right) > MAX_POWER_BITS:
                raise SecurityError("the number would be too large")
            return operator.pow(left, right)
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
                if sized and len(seq) * n > MAX_OUTPUT:
                    raise SecurityError("the repeated text would be too long")
            return operator.mul(left, right)
        return super().call_binop(context, operator_, left, right)


def _bounded_range(budget: _Budget) -> Callable[..., range]:
    def safe_range(*args: int) -> range:
        rng = range(*args)
        budget.range_items += len(rng)
        if budget.range_items > MAX_RANGE_TOTAL:
            raise SecurityError(f"range() may produce at most {MAX_RANGE_TOTAL} items in total")
        return rng

    return safe_range


def make_variables(
    *,
    client_name: str = "",
    client_company: str = "",
    contact_name: str = "",
    contact_email: str = "",
    agent_name: str = "",
    account_email: str = "",
    account_name: str = "",
    thread_subject: str = "",
    today: date | None = None,
) -> dict[str, Any]:
    """The variables a template sees; empty strings where a value is not known."""
    return {
        "client": {"name": client_name, "company": client_company},
        "contact": {
            "name": contact_name,
            "first_name": first_name(contact_name),
            "email": contact_email,
        },
        "agent": {"name": agent_name, "first_name": first_name(agent_name)},
        "account": {"email": account_email, "name": account_name},
        "thread": {"subject": thread_subject},
        "today": today or date.today(),
    }


def sample_variables() -> dict[str, Any]:
    """Every variable filled in, for validating a template when it is saved."""
    return make_variables(
        client_name="Acme Ltd",
        client_company="Acme",
        contact_name="Jane Doe",
        contact_email="jane@example.com",
        agent_name="Sam Agent",
        account_email="support@example.com",
        account_name="Support",
        thread_subject="Your order",
        today=date(2024, 1, 31),
    )


_COMMA_NAME = re.compile(r"^\s*([^,]+),\s*(\S+)")


def first_name(full_name: str) -> str:
    """'Jane Doe' → 'Jane'; 'Doe, Jane' → 'Jane'; an address-looking name gives ''."""
    name = (full_name or "").strip().strip("\"'")
    if not name or "@" in name:
        return ""
    m = _COMMA_NAME.match(name)
    if m:
        return m.group(2)
    return name.split()[0]


def _wrap(variables: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _Group(k, v) if isinstance(v, Mapping) else v for k, v in variables.items()}


def _problem(field: str, exc: Exception) -> TemplateProblem:
    if isinstance(exc, TemplateSyntaxError):
        return TemplateProblem(field, f"syntax error: {exc.message or exc}", exc.lineno)
    if isinstance(exc, UndefinedError):
        return TemplateProblem(field, str(exc.message or exc))
    if isinstance(exc, SecurityError):
        return TemplateProblem(field, f"not allowed: {exc.message or exc}")
    if isinstance(exc, TemplateError):
        return TemplateProblem(field, str(exc.message or exc))
    # TypeError, ZeroDivisionError, OverflowError… raised by an expression in the template.
    return TemplateProblem(field, f"could not render: {type(exc).__name__}: {exc}")


def _render_one(field: str, source: str, variables: Mapping[str, Any]) -> str | TemplateProblem:
    env = MailroomSandbox()
    budget = _Budget()
    env.globals["range"] = _bounded_range(budget)
    try:
        template = env.from_string(source)
        out: list[str] = []
        size = 0
        for chunk in template.generate(_wrap(variables)):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the result is longer than {MAX_OUTPUT} characters")
            out.append(chunk)
        return "".join(out)
    except RecursionError:
        return TemplateProblem(field, "not allowed: the template nests too deeply")
    except MemoryError:  # the child's memory limit (see _bounded)
        return TemplateProblem(field, TOO_COSTLY)
    except Exception as exc:  # a template is user code: every failure becomes a message
        return _problem(field, exc)


def _render_unbounded(
    subject: str, body: str, variables: Mapping[str, Any]
) -> tuple[str, str] | TemplateProblem:
    rendered_subject = _render_one("subject", subject or "", variables)
    if isinstance(rendered_subject, TemplateProblem):
        return rendered_subject
    rendered_body = _render_one("body", body or "", variables)
    if isinstance(rendered_body, TemplateProblem):
        return rendered_body
    # A header field must not carry CR/LF: a subject is one line whatever the template did.
    one_line = " ".join(rendered_subject.split())
    return one_line, rendered_body


def _limit_child() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (RENDER_CPU_SECONDS, RENDER_CPU_SECONDS + 1))
    with open("/proc/self/statm") as f:  # the child's address space now, in pages
        size = int(f.read().split()[0]) * resource.getpagesize()
    limit = size + RENDER_EXTRA_MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """In the child: limits first, then the render; the answer goes back through the pipe."""
    try:
        _limit_child()
        result = fn(*args)
    except MemoryError:
        result = TemplateProblem("body", TOO_COSTLY)
    except BaseException as exc:  # the parent gets a message, never a hang
        result = TemplateProblem("body", f"could not render: {type(exc).__name__}")
    try:
        conn.send(result)
    except MemoryError:
        conn.send(TemplateProblem("body", TOO_COSTLY))
    conn.close()


def _bounded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(*args)` in a child process forked by the fork server (the same one the parse
    worker uses: a clean single-threaded process, so no lock of this threaded one is
    inherited), with CPU and memory limits and a wall-clock timeout. Where there is no fork
    server (not Linux), in this process."""
    from bot.sync.parse_pool import mp_context

    ctx = mp_context()
    if ctx.get_start_method() != "forkserver":
        return fn(*args)
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    started = time.monotonic()
    try:
        proc.start()
    except OSError:
        log.warning("template render: no child process; rendering in-process", exc_info=True)
        return fn(*args)
    send.close()
    try:
        if receive.poll(RENDER_SECONDS):
            return receive.recv()
        log.warning("template render stopped after %.1f s", time.monotonic() - started)
        return TemplateProblem("body", TOO_COSTLY)
    except (EOFError, OSError):  # killed by its CPU limit
        return TemplateProblem("body", TOO_COSTLY)
    finally:
        receive.close()
        if proc.is_alive():
            proc.kill()
        proc.join(1)


def render(
    subject: str, body: str, variables: Mapping[str, Any]
) -> tuple[str, str] | TemplateProblem:
    """Render a template's subject and body, or say what is wrong with it."""
    result: tuple[str, str] | TemplateProblem = _bounded(
        _render_unbounded, subject, body, dict(variables)
    )
    return result


def _check_fields(fields: list[tuple[str, str]]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for field, source in fields:
        result = _render_one(field, source, sample_variables())
        if isinstance(result, TemplateProblem):
            errors[field] = str(result)
    return errors


def validate(name: str, subject: str, body: str) -> dict[str, str]:
    """Problems with a template about to be saved, keyed by field ("name", "subject", "body")."""
    errors: dict[str, str] = {}
    if not name.strip():
        errors["name"] = "Give the template a name."
    elif len(name) > 200:
        errors["name"] = "Keep the name under 200 characters."
    if "\n" in subject or "\r" in subject:
        errors["subject"] = "The subject must be one line."
    elif len(subject) > MAX_SUBJECT_SOURCE:
        errors["subject"] = f"Keep the subject under {MAX_SUBJECT_SOURCE} characters."
    if len(body) > MAX_BODY_SOURCE:
        errors["body"] = f"Keep the body under {MAX_BODY_SOURCE} characters."
    if not body.strip():
        errors["body"] = "The body is empty."
    fields = [(f, src) for f, src in (("subject", subject), ("body", body)) if f not in errors]
    if fields:
        found = _bounded(_check_fields, fields)
        if isinstance(found, TemplateProblem):  # the child ran out of time or memory
            found = {fields[-1][0]: str(found)}
        errors.update(found)
    return errors


# -- rich text templates ---------------------------------------------------------------------
# A rich template body is a Slack rich_text value (bot/mail/richtext.py). The whole body is one
# Jinja2 source in the same sandbox, with a private-use marker before each inline element; what
# renders after a marker becomes that element's text. Variables and expressions therefore only
# ever produce text nodes, which are escaped when the HTML is generated: a value can never turn
# into markup, a link or a style.

MAX_RICH_BODY_TEXT = 10_000  # characters of text in a rich template body


def _without_marks(value: Any) -> Any:
    """Variable values with the node markers removed: a value cannot move text between nodes."""
    if isinstance(value, str):
        return richtext.strip_marks(value)
    if isinstance(value, Mapping):
        return {k: _without_marks(v) for k, v in value.items()}
    return value


def _rich_problem(problem: TemplateProblem) -> TemplateProblem:
    marks = (richtext.MARK_OPEN, richtext.MARK_CLOSE, "\\ue000", "\\ue001")
    if any(m in problem.message for m in marks):
        return TemplateProblem(
            problem.field,
            "a {{ … }} or {% … %} changes formatting (or a link, emoji or mention) midway; "
            "write each one in a single style",
            problem.line,
        )
    return problem


def _render_rich_unbounded(
    subject: str, body_rich: Mapping[str, Any], variables: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | TemplateProblem:
    rendered_subject = _render_one("subject", subject or "", variables)
    if isinstance(rendered_subject, TemplateProblem):
        return rendered_subject
    source, slots = richtext.template_source(body_rich)
    clean_vars = _without_marks(variables)
    out = _render_one("body", source, clean_vars)
    if isinstance(out, TemplateProblem):
        return _rich_problem(out)
    return " ".join(rendered_subject.split()), richtext.from_rendered(out, slots)


def render_rich(
    subject: str, body_rich: Mapping[str, Any], variables: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | TemplateProblem:
    """Render a rich text template: (one-line subject, rendered rich_text value). In a child
    process under the same CPU, memory and wall-clock limits as `render` (review #14)."""
    result: tuple[str, dict[str, Any]] | TemplateProblem = _bounded(
        _render_rich_unbounded, subject, dict(body_rich), dict(variables)
    )
    return result


def validate_rich(name: str, subject: str, body_rich: Mapping[str, Any]) -> dict[str, str]:
    """Like validate(), for a template whose body is rich text."""
    plain = richtext.rich_text_to_text(body_rich)
    errors = {k: v for k, v in validate(name, subject, plain or " ").items() if k != "body"}
    if richtext.text_length(body_rich) > MAX_RICH_BODY_TEXT:
        errors["body"] = f"Keep the body under {MAX_RICH_BODY_TEXT:,} characters."
    elif richtext.is_blank(body_rich):
        errors["body"] = "The body is empty."
    else:
        result = render_rich("", body_rich, sample_variables())
        if isinstance(result, TemplateProblem):
            errors["body"] = str(result)
    return errors
