"""The committed manifests create an app that has everything the code relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


@pytest.mark.parametrize("name", ["manifest.dev.yml", "manifest.prod.yml"])
def test_manifest_declares_what_the_app_uses(name: str) -> None:
    m = _load(name)
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert [c["command"] for c in m["features"]["slash_commands"]] == ["/inbox"]
    assert {s["callback_id"] for s in m["features"]["shortcuts"]} == {"mailroom_compose"}
    scopes = set(m["oauth_config"]["scopes"]["bot"])
    assert {
        "chat:write",
        "commands",
        "users:read",
        "channels:read",
        "files:write",
        "files:read",
        "im:write",
    } <= scopes
    events = set(m["settings"]["event_subscriptions"]["bot_events"])
    assert "app_home_opened" in events
    # Typing in a conversation's thread: the message events and the history scopes they need.
    assert {"message.channels", "message.groups"} <= events
    assert {"channels:history", "groups:history"} <= scopes
    assert m["settings"]["interactivity"]["is_enabled"] is True


def test_dev_manifest_uses_socket_mode_and_prod_uses_request_urls() -> None:
    dev, prod = _load("manifest.dev.yml"), _load("manifest.prod.yml")
    assert dev["settings"]["socket_mode_enabled"] is True
    assert prod["settings"]["socket_mode_enabled"] is False
    url = "https://mailroom.example.com/slack/events"
    assert prod["settings"]["event_subscriptions"]["request_url"] == url
    assert prod["settings"]["interactivity"]["request_url"] == url
    # Without the options load URL, external selects (client picker) silently fail.
    assert prod["settings"]["interactivity"]["message_menu_options_url"] == url
    assert prod["features"]["slash_commands"][0]["url"] == url


def test_procfile_runs_web_and_worker_apart() -> None:
    lines = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert lines["web"].strip() == "mailroom serve --no-worker"
    assert lines["worker"].strip() == "mailroom worker"
