"""The App Home connect flow against the whole app (signed requests, fake Slack, real
database) and the loopback fake Google / Microsoft token endpoints."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from bot.blocks import ids
from bot.blocks.accounts import B_AUTOLINK, B_CHANNEL, B_FOLDERS, B_FREQ, B_SHARED, A
from tests.fakes.graph_server import FakeGraph
from tests.fakes.oauth_server import FakeOAuth

GOOGLE = ("mailroom-test.apps.googleusercontent.com", "g-secret-never-shown-4711")
MICROSOFT = ("0a1b2c3d-1111-2222-3333-444455556666", "ms-secret-never-shown-0815")
TENANT = "contoso.onmicrosoft.com"


@pytest.fixture(scope="session")
def oauth_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeOAuth]:
    fake = FakeOAuth(Path(tmp_path_factory.mktemp("oauth-connect")))
    fake.add_google_client(*GOOGLE)
    fake.add_microsoft_app(MICROSOFT[0], MICROSOFT[1], TENANT)
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def graph_fake(oauth_fake: FakeOAuth) -> Iterator[FakeGraph]:
    """Graph's /me tells the mailbox's address after a Microsoft sign-in."""
    fake = FakeGraph(oauth_fake)
    yield fake
    fake.close()


@dataclasses.dataclass
class Connect:
    mailroom: Any
    oauth: FakeOAuth
    base: str

    @property
    def redirect_uri(self) -> str:
        return f"{self.base}/oauth/callback"

    def callback(self, **query: str) -> tuple[int, str]:
        """The admin's browser coming back from the provider."""
        url = f"{self.redirect_uri}?{urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def views(self, method: str) -> list[Any]:
        return self.mailroom.fake.calls_to(method)

    def open_chooser(self, user: str = "UADMIN") -> dict[str, Any]:
        fake = self.mailroom.fake
        before = len(fake.calls_to("views.open"))
        self.mailroom.driver.block_action(user, ids.HOME_ADD_ACCOUNT)
        call = fake.wait_for("views.open", before + 1)[-1]
        assert call.ok, call.response
        return dict(call.response["view"])

    def sign_in_link(
        self,
        provider: str,
        *,
        channel: str = "CINBOX",
        interval: str = "60",
        auto_link: bool = False,
        folders: tuple[str, ...] = (),
        shared: str | None = None,
    ) -> tuple[str, dict[str, list[str]]]:
        """Add email account → provider → the OAuth step modal → the link's URL and query."""
        fake = self.mailroom.fake
        chooser = self.open_chooser()
        self.mailroom.driver.block_action(
            "UADMIN", ids.ACCOUNT_PROVIDER_PICK, provider, view=chooser["id"]
        )
        fake.wait_until(lambda: ids.VIEW_ACCOUNT_OAUTH in json.dumps(fake.view(chooser["id"])))
        values: dict[str, Any] = {B_CHANNEL: {A: channel}, B_FREQ: {A: interval}}
        if auto_link:
            values[B_AUTOLINK] = {A: ["on"]}
        if folders:
            values[B_FOLDERS] = {A: list(folders)}
        if shared:
            values[B_SHARED] = {A: shared}
        resp = self.mailroom.driver.view_submission("UADMIN", chooser["id"], values)
        assert resp.status == 200, resp.body
        assert fake.ack_problems == []
        link = fake.view(chooser["id"])
        return link_of(link)


def link_of(view: dict[str, Any] | None) -> tuple[str, dict[str, list[str]]]:
    assert view is not None
    for block in view.get("blocks") or []:
        for el in block.get("elements") or []:
            if el.get("action_id") == ids.ACCOUNT_OAUTH_OPEN:
                return el["url"], parse_qs(urlsplit(el["url"]).query)
    raise AssertionError(f"no sign-in link in {json.dumps(view)[:500]}")


def configure(
    mailroom: Any, oauth: FakeOAuth, graph: FakeGraph | None = None, **changes: Any
) -> str:
    base = mailroom.url.rsplit("/slack/events", 1)[0]
    settings = dataclasses.replace(
        mailroom.services.settings,
        public_url=base,
        google_client_id=GOOGLE[0],
        google_client_secret=GOOGLE[1],
        microsoft_client_id=MICROSOFT[0],
        microsoft_client_secret=MICROSOFT[1],
        microsoft_tenant=TENANT,
        oauth_overrides={
            "gmail": {
                "token_uri": f"{oauth.url}/token",
                "auth_uri": f"{oauth.url}/o/oauth2/v2/auth",
                "ca_file": oauth.ca_file,
                "api": {"base_url": "https://127.0.0.1:9/gmail"},
            },
            "graph": {
                "authority_host": oauth.host,
                "ca_file": oauth.ca_file,
                **({"api": {"base_url": graph.base_url}} if graph is not None else {}),
            },
        },
    )
    mailroom.services.settings = dataclasses.replace(settings, **changes)
    return base


@pytest.fixture
def connect(mailroom: Any, oauth_fake: FakeOAuth, graph_fake: FakeGraph) -> Connect:
    return Connect(mailroom, oauth_fake, configure(mailroom, oauth_fake, graph_fake))
