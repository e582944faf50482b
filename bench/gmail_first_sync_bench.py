"""Gmail first sync of a big mailbox against the loopback fake (by hand):

    PYTHONPATH=. .venv/bin/python bench/gmail_first_sync_bench.py [--messages 10000]

Fills a fake Gmail mailbox with ``--messages`` small messages, connects it, claims the
account's lease the way the scheduler does and runs ``engine.sync_account`` with
``full_sync_limit`` = the mailbox size. The Gmail client's pacing runs on a virtual clock
(its SLEEP advances it), so the run is not slowed by the quota yet every wait is accounted.

Checks and prints: every ``messages.get`` went in batches of at most 50; the quota units the
fake received per virtual second never exceed 250 (15,000 a minute); after every batch the
account's lease is still held by this run's owner (one lease holder throughout); wall time,
messages per second, and the virtual time the quota imposes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from bot.providers import gmail as gmail_mod  # noqa: E402
from bot.store import migrate  # noqa: E402
from bot.store.db import make_engine, make_session_factory, session_scope  # noqa: E402
from bot.store.models import Account, Provider  # noqa: E402
from bot.sync import engine as engine_mod  # noqa: E402
from bot.sync import leases  # noqa: E402
from bot.sync.api_sync import create_oauth_account  # noqa: E402
from tests.fakes.gmail_server import FakeGmail  # noqa: E402
from tests.fakes.oauth_server import FakeOAuth  # noqa: E402
from tests.providers_api.conftest import (  # noqa: E402
    GOOGLE_CLIENT,
    google_config,
    make_raw,
    make_services,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gmail-bench-"))
    db = make_engine(f"sqlite:///{work}/bench.db")
    migrate.upgrade(db)
    factory = make_session_factory(db)
    services = make_services(factory)
    oauth = FakeOAuth(work)
    oauth.add_google_client(*GOOGLE_CLIENT)
    gmail = FakeGmail(oauth)
    email = "big@gmail.test"
    for n in range(args.messages):
        gmail.deliver(email, make_raw(f"Order {n}")[0])
    clock = [0.0]
    units: Counter[int] = Counter()  # virtual second → quota units the fake received

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    gmail_mod.SLEEP = sleep
    gmail_mod.CLOCK = lambda: clock[0]
    real_batch = gmail._batch

    def counted(req):  # type: ignore[no-untyped-def]
        resp = real_batch(req)
        units[int(clock[0])] += 5 * gmail.batches[-1]
        return resp

    gmail._batch = counted  # type: ignore[method-assign]
    with session_scope(factory) as s:
        account = create_oauth_account(
            s,
            services.vault,
            provider=Provider.GMAIL,
            email=email,
            oauth=google_config(oauth),
            tokens=oauth.grant("google", GOOGLE_CLIENT[0], email),
            channel_id=None,
            api={"base_url": gmail.url, "full_sync_limit": args.messages},
        )
        aid = account.id
    owner = leases.run_owner("bench")
    assert leases.claim(factory, aid, owner)
    holders: list[str | None] = []

    def after_batch(_where: str, _n: int) -> None:
        with session_scope(factory) as s:
            holders.append(s.scalar(select(Account.lease_owner).where(Account.id == aid)))

    started = time.monotonic()
    summary = engine_mod.sync_account(
        services,
        aid,
        owner=owner,
        claimed=True,
        options=engine_mod.SyncOptions(after_batch=after_batch),
    )
    wall = time.monotonic() - started
    print(
        f"stored {summary.new} of {args.messages} messages in {wall:.1f} s "
        f"({summary.new / wall:.0f}/s); errors: {summary.error}"
    )
    print(f"batches: {len(gmail.batches)}, largest {max(gmail.batches)} calls")
    print(
        f"quota: peak {max(units.values())} units in one virtual second (limit 250); "
        f"virtual time imposed by the quota {clock[0]:.0f} s"
    )
    print(f"lease checks: {len(holders)}, all held by this run: {set(holders) == {owner}}")
    gmail.close()
    oauth.close()


if __name__ == "__main__":
    main()
