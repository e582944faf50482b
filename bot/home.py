"""Building and publishing a person's App Home tab (service level: store + Slack client)."""

from __future__ import annotations

from slack_sdk import WebClient
from sqlalchemy import select

from bot.blocks.home import AccountSummary, home_view
from bot.services import Services
from bot.store.models import Account


def publish_home(services: Services, client: WebClient, user_id: str) -> None:
    is_admin = services.access.is_admin(client, user_id)
    with services.session_factory() as session:
        accounts = session.scalars(select(Account).order_by(Account.email)).all()
        summaries = [
            AccountSummary(
                id=a.id,
                email=a.email,
                provider=a.provider.value,
                channel_id=a.channel_id,
                status=a.status.value,
                last_error=a.last_error,
            )
            for a in accounts
            if is_admin or services.access.can_see_channel(client, user_id, a.channel_id)
        ]
    client.views_publish(user_id=user_id, view=home_view(accounts=summaries, is_admin=is_admin))
