"""Shortcuts listeners."""

from __future__ import annotations

from slack_bolt import App

from bot.handlers.shortcuts import compose as compose_shortcuts


def register(app: App) -> None:
    compose_shortcuts.register(app)
