"""A Microsoft 365 shared mailbox (support@: no licence, sign-in blocked) reached through a
user with Full Access + Send As and the delegated .Shared scopes: every request goes to
/users/{mailbox}/…; it syncs, and sends From: its own address."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from bot.mail.compose import Draft, build_mime
from bot.mail.types import Address
from bot.oauth_connect import connect_app_only_mailbox, connect_gmail_service_account
from bot.providers.errors import AuthError, ConfigError
from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import Account, Provider
from bot.sync.api_sync import create_oauth_account, graph_client, send_mail_api
from tests.providers_api.conftest import MS_CLIENT, TENANT, ApiEnv, make_raw, microsoft_config

_n = itertools.count(1)


def shared_pair() -> tuple[str, str]:
    """A fresh shared mailbox and delegate (the fakes live for the whole session)."""
    n = next(_n)
    return f"support{n}@contoso.test", f"agent{n}@contoso.test"


SCOPES = (
    "https://graph.microsoft.com/Mail.ReadWrite.Shared https://graph.microsoft.com/Mail.Send.Shared"
)


def connect_shared(env: ApiEnv, shared: str, agent: str, scope: str = SCOPES) -> int:
    tokens = env.oauth.grant("microsoft", MS_CLIENT[0], agent, TENANT, scope=scope)
    with session_scope(env.factory) as s:
        account = create_oauth_account(
            s,
            env.services.vault,
            provider=Provider.GRAPH,
            email=shared,
            oauth={**microsoft_config(env.oauth), "scopes": SCOPES.split()},
            tokens=tokens,
            channel_id="CSHARED",
            api={"base_url": env.graph.base_url, "mailbox": shared},
        )
        return account.id


def test_a_shared_mailbox_syncs_and_sends_from_its_own_address(api_env: ApiEnv) -> None:
    env = api_env
    shared, agent = shared_pair()
    env.graph.full_access[shared] = {agent}
    aid = connect_shared(env, shared, agent)
    raw, mid = make_raw("Broken order", to=shared)
    env.graph.deliver(shared, raw)
    env.graph.deliver(agent, make_raw("The agent's own mail")[0])
    assert env.sync(aid)[0] == 1  # the shared mailbox's mail, not the agent's
    assert env.by_mid(aid, mid).subject == "Broken order"
    assert env.where(aid, mid) == {"inbox"}
    reply = Draft(
        from_=Address("Support", shared),
        to=[Address("", "alice@example.org")],
        cc=[],
        bcc=[],
        subject="Re: Broken order",
        body="On its way.\n",
        message_id="shared-reply-1@mailroom.test",
        in_reply_to=mid,
        references=[mid],
    )
    send_mail_api(
        env.services, env.account(aid), build_mime(reply, keep_bcc=True), reply.message_id
    )
    [sent] = env.graph.box(shared).sent
    assert f"From: Support <{shared}>".encode() in sent.raw
    assert env.graph.box(agent).sent == []
    assert any(r == "alice@example.org" for r, _ in env.graph.delivered)
    env.sync(aid)
    assert env.where(aid, reply.message_id) == {"sentitems"}


def test_without_full_access_or_the_shared_scope_nothing_is_read(api_env: ApiEnv) -> None:
    env = api_env
    shared, agent = shared_pair()
    aid = connect_shared(env, shared, agent)
    with pytest.raises(AuthError):
        env.sync(aid)
    env.graph.full_access[shared] = {agent}
    tokens_scope = "https://graph.microsoft.com/Mail.ReadWrite"  # consented without .Shared
    with session_scope(env.factory) as s:
        s.delete(s.get_one(Account, aid))
    aid = connect_shared(env, shared, agent, scope=tokens_scope)
    with pytest.raises(AuthError):
        env.sync(aid)


def app_services(env: ApiEnv) -> Services:
    settings = dataclasses.replace(
        env.services.settings,
        public_url="https://mailroom.example.com",
        microsoft_client_id=MS_CLIENT[0],
        microsoft_client_secret=MS_CLIENT[1],
        microsoft_tenant=TENANT,
        oauth_overrides={
            "graph": {
                "authority_host": env.oauth.host,
                "ca_file": env.oauth.ca_file,
                "api": {"base_url": env.graph.base_url},
            }
        },
    )
    return Services(settings, env.factory, env.services.vault, env.services.access)


def test_application_permissions_reach_only_the_mailboxes_the_tenant_allows(
    api_env: ApiEnv,
) -> None:
    env = api_env
    services = app_services(env)
    billing = f"billing{next(_n)}@contoso.test"
    env.graph.app_mailboxes.pop(MS_CLIENT[0], None)
    with pytest.raises(AuthError):  # the application access policy does not include it
        connect_app_only_mailbox(services, mailbox=billing, channel_id="CB")
    env.graph.app_mailboxes[MS_CLIENT[0]] = {billing}
    aid = connect_app_only_mailbox(services, mailbox=billing, channel_id="CB")
    raw, mid = make_raw("Invoice 12", to=billing)
    env.graph.deliver(billing, raw)
    assert env.sync(aid)[0] == 1
    reply, rmid = make_raw(
        "Re: Invoice 12", sender=billing, to="alice@example.org", in_reply_to=mid
    )
    send_mail_api(env.services, env.account(aid), reply, rmid)
    assert env.graph.box(billing).sent[-1].raw == reply
    account = env.account(aid)
    assert account.email == billing and account.config["oauth"]["app_only"]


# -- Google: a service account with domain-wide delegation ---------------------------------


def service_account_key(env: ApiEnv, delegated: set[str]) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"mailroom-{len(env.oauth.state.service_accounts)}@proj.iam.gserviceaccount.com"
    env.oauth.add_service_account(
        email,
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        delegated,
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "client_email": email,
        "private_key": pem,
        "token_uri": f"{env.oauth.url}/token",
    }


def google_services(env: ApiEnv) -> Services:
    settings = dataclasses.replace(
        env.services.settings,
        oauth_overrides={
            "gmail": {"ca_file": env.oauth.ca_file, "api": {"base_url": env.gmail.url}}
        },
    )
    return Services(settings, env.factory, env.services.vault, env.services.access)


def test_a_workspace_mailbox_through_domain_wide_delegation(api_env: ApiEnv) -> None:
    env = api_env
    services = google_services(env)
    help_box = f"help{next(_n)}@gmail.test"
    modify = "https://www.googleapis.com/auth/gmail.modify"
    with pytest.raises(ConfigError, match="Domain-wide delegation"):  # not allowed by an admin
        connect_gmail_service_account(
            services,
            key=service_account_key(env, set()),
            mailbox=help_box,
            channel_id="CG",
        )
    key = service_account_key(env, {modify})
    aid = connect_gmail_service_account(services, key=key, mailbox=help_box, channel_id="CG")
    raw, mid = make_raw("Where is my parcel", to=help_box)
    env.gmail.deliver(help_box, raw)
    assert env.sync(aid)[0] == 1
    reply, rmid = make_raw(
        "Re: Where is my parcel", sender=help_box, to="alice@example.org", in_reply_to=mid
    )
    send_mail_api(env.services, env.account(aid), reply, rmid)
    assert env.gmail.box(help_box).sent[-1].message_id == rmid
    account = env.account(aid)
    assert account.email == help_box
    assert account.config["oauth"]["subject"] == help_box
    assert "PRIVATE KEY" not in str(account.config)  # the key is in the encrypted credentials


def test_a_shared_mailbox_lists_its_own_folders_across_pages(api_env: ApiEnv) -> None:
    """The folder picker (#17) reads /users/{mailbox}/mailFolders for a shared mailbox, and
    follows nextLinks that stay on /users/{mailbox}."""
    env = api_env
    shared, agent = shared_pair()
    env.graph.full_access[shared] = {agent}
    aid = connect_shared(env, shared, agent)
    vip = env.graph.add_folder(shared, "VIP", parent="inbox")
    many = [env.graph.add_folder(shared, f"Project {n:03}") for n in range(110)]
    env.graph.add_folder(agent, "The agent's own")
    with graph_client(env.services, env.account(aid)) as graph:
        assert graph.root == f"users/{shared}"
        folders = graph.list_folders()
    by_id = {f.id: f for f in folders}
    assert by_id[vip].name == "Inbox / VIP"
    assert set(many) <= set(by_id)  # past the first page of 100
    assert "The agent's own" not in {f.name for f in folders}
    assert {f.well_known for f in folders} >= {"inbox", "sentitems", "archive"}
