"""Rich text templates: rendered in the Jinja2 sandbox, every output in a text node."""

from __future__ import annotations

from datetime import date

from bot.mail.richtext import (
    MARK_OPEN,
    rich_text_to_email,
    rich_text_to_text,
)
from bot.templates import TemplateProblem, make_variables, render_rich, validate_rich
from tests.mail.htmlcheck import html_hrefs, html_problems, html_tags
from tests.mail.richsamples import rich, rlist, section, t

VARS = make_variables(
    contact_name="Jane Doe",
    client_company="Acme",
    agent_name="Sam Agent",
    thread_subject="Order 42",
    today=date(2024, 1, 31),
)


def test_variables_render_into_formatted_text() -> None:
    body = rich(
        section(t("Hi "), t("{{ contact.first_name }}", bold=True), t(",\n")),
        rlist("ordered", 0, [t("About {{ thread.subject }}")], [t("Done", italic=True)]),
        section(
            {"type": "link", "url": "https://help.test/", "text": "Help for {{ client.company }}"}
        ),
    )
    result = render_rich("Re: {{ thread.subject }}", body, VARS)
    assert not isinstance(result, TemplateProblem)
    subject, value = result
    assert subject == "Re: Order 42"
    html, text = rich_text_to_email(value)
    assert text == (
        "Hi *Jane*,\n\n1. About Order 42\n2. _Done_\n\nHelp for Acme <https://help.test/>\n"
    )
    assert "<strong>Jane</strong>" in html and html_hrefs(html) == ["https://help.test/"]


def test_conditions_and_loops_may_span_styles_and_paragraphs() -> None:
    body = rich(
        section(t("{% if client.company %}Dear "), t("{{ client.company }}", bold=True)),
        section(t("team{% else %}Hello{% endif %}")),
        section(t("{% for i in range(2) %}"), t("x", italic=True), t("{% endfor %}")),
    )
    result = render_rich("", body, VARS)
    assert not isinstance(result, TemplateProblem)
    assert rich_text_to_text(result[1]) == "Dear *Acme*\nteam\n_xx_\n"
    no_company = make_variables(contact_name="Jane")
    result = render_rich("", body, no_company)
    assert not isinstance(result, TemplateProblem)
    assert rich_text_to_text(result[1]) == "Hello\n_xx_\n"


def test_variable_values_cannot_inject_markup_or_structure() -> None:
    evil = make_variables(
        contact_name='<script>alert(1)</script><a href="javascript:x">y</a> \ue0000\ue001',
        client_company='<img src="http://evil.test/p.png"><style>a{background:url(x)}</style>',
    )
    body = rich(
        section(t("Hi {{ contact.name }}", bold=True)),
        section(t("{{ client.company }}")),
    )
    result = render_rich("", body, evil)
    assert not isinstance(result, TemplateProblem)
    html, text = rich_text_to_email(result[1])
    assert html_problems(html) == []
    assert set(html_tags(html)) <= {"html", "head", "meta", "body", "div", "strong"}
    assert "&lt;script&gt;" in html and "<img" not in html and "<style" not in html
    assert MARK_OPEN not in text and "<script>alert(1)</script>" in text  # text, verbatim


def test_expression_split_by_formatting_gets_a_clear_error() -> None:
    body = rich(section(t("Hi {{ contact."), t("first_name }}", bold=True)))
    result = render_rich("", body, VARS)
    assert isinstance(result, TemplateProblem)
    assert "single style" in str(result) and MARK_OPEN not in str(result)


def test_sandbox_still_applies_to_rich_templates() -> None:
    body = rich(section(t("{{ ''.__class__.__mro__ }}")))
    result = render_rich("", body, VARS)
    assert isinstance(result, TemplateProblem) and "not allowed" in str(result)
    assert "body" in validate_rich("T", "", body)
    assert validate_rich("T", "", rich(section(t("  ")))) == {"body": "The body is empty."}
    big = rich(section(t("x" * 10_001)))
    assert "10,000" in validate_rich("T", "", big)["body"]
    assert validate_rich("T", "Re: {{ thread.subject }}", rich(section(t("ok", bold=True)))) == {}
