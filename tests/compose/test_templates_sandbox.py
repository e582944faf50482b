"""The template sandbox: variables render, mistakes become readable errors, internals stay shut."""

from __future__ import annotations

from datetime import date

import pytest

from bot.blocks.templates import VARIABLE_HELP
from bot.templates import VARIABLES, TemplateProblem, make_variables, render, validate

VARS = make_variables(
    client_name="Acme Ltd",
    client_company="Acme",
    contact_name="Doe, Jane",
    contact_email="jane@acme.test",
    agent_name="Sam Agent",
    account_email="support@mailroom.test",
    account_name="Support",
    thread_subject="Order 42",
    today=date(2024, 3, 5),
)


def test_every_variable_renders() -> None:
    body = (
        "{{ client.name }}|{{ client.company }}|{{ contact.name }}|{{ contact.first_name }}|"
        "{{ contact.email }}|{{ agent.name }}|{{ agent.first_name }}|{{ account.email }}|"
        "{{ account.name }}|{{ thread.subject }}|{{ today }}"
    )
    result = render("Re: {{ thread.subject }}", body, VARS)
    assert result == (
        "Re: Order 42",
        "Acme Ltd|Acme|Doe, Jane|Jane|jane@acme.test|Sam Agent|Sam|support@mailroom.test|"
        "Support|Order 42|2024-03-05",
    )


def test_default_covers_missing_and_empty_values() -> None:
    empty = make_variables()
    assert render("", "Hi {{ contact.first_name | default('there') }}", empty) == ("", "Hi there")
    assert render("", "Hi {{ contact.first_name | default('there') }}", VARS) == ("", "Hi Jane")


def test_unknown_variable_is_named() -> None:
    result = render("", "Hi {{ contact.frist_name }}", VARS)
    assert isinstance(result, TemplateProblem)
    assert "contact.frist_name" in result.message
    result = render("{{ nobody }}", "x", VARS)
    assert isinstance(result, TemplateProblem) and result.field == "subject"
    assert "nobody" in result.message


def test_syntax_error_reports_its_line() -> None:
    result = render("", "Hello\n\n{% if contact.name %}no end", VARS)
    assert isinstance(result, TemplateProblem)
    assert result.line == 3 or "end of template" in result.message
    assert "syntax error" in result.message


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ contact._mr_path }}",
        "{{ (contact.name|string).__class__.__base__.__subclasses__() }}",
        "{{ '{0.__class__}'.format(contact) }}",
        "{{ joiner.__init__.__globals__['os'] }}",
        "{{ range(10**9) | list | length }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}",
        "{{ 2 ** 100000000 }}",
        "{{ ((9**99)**99)**99 }}",
        "{{ 'x' * 100000000 }}",
        "{{ lipsum(100000) }}",
    ],
)
def test_python_internals_and_resource_abuse_are_refused(source: str) -> None:
    result = render("", source, VARS)
    assert isinstance(result, TemplateProblem), result
    assert "Traceback" not in str(result)


def test_subject_is_one_line_whatever_the_template_does() -> None:
    result = render("A{{ '\\r\\n' }}Bcc: evil@x.test", "b", VARS)
    assert result == ("A Bcc: evil@x.test", "b")


def test_validate_on_save() -> None:
    assert validate("Thanks", "Re: {{ thread.subject }}", "Hi {{ contact.first_name }}") == {}
    errors = validate("", "one\ntwo", "{{ agent.nam }}")
    assert set(errors) == {"name", "subject", "body"}
    assert "agent.nam" in errors["body"]
    assert "not allowed" in validate("x", "", "{{ ''.__class__ }}")["body"]
    assert "3000" in validate("x", "", "a" * 3001)["body"]


def test_help_lists_every_variable() -> None:
    for group, fields in VARIABLES.items():
        for name in fields:
            assert f"{{{{ {group}.{name} }}}}" in VARIABLE_HELP
    assert "{{ today }}" in VARIABLE_HELP
