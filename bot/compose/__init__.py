"""Compose, reply, reply all, forward: from the modal to a durable send row to the mailbox.

`open_compose(client, trigger_id, user_id, services)` opens the new-mail modal; the /inbox
command and the global shortcut call it.
"""

from bot.compose.modal import open_compose

__all__ = ["open_compose"]
