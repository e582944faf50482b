"""`mailroom serve` and `mailroom worker`."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import click

from bot.config import MANIFEST_HINT, SETTINGS_HELP, Settings, load_settings

log = logging.getLogger(__name__)


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(worker)


def _explain_missing(settings: Settings) -> None:
    missing = settings.missing_for_serve()
    click.echo("Mailroom cannot start: these settings are missing.", err=True)
    for name in missing:
        first = name.split()[0]
        click.echo(f"  - {name}: {SETTINGS_HELP.get(first, '')}", err=True)
        if first == "SLACK_APP_TOKEN":
            click.echo(
                f"      SLACK_SIGNING_SECRET: {SETTINGS_HELP['SLACK_SIGNING_SECRET']}", err=True
            )
    click.echo("", err=True)
    click.echo(MANIFEST_HINT, err=True)
    click.echo("Put them in the environment or in a .env file in this folder.", err=True)


@click.command()
@click.option("--no-worker", is_flag=True, help="Run only the Slack app (the Procfile's `web`).")
@click.option(
    "--port", type=int, default=None, help="HTTP port (HTTP mode); default $PORT or 3000."
)
def serve(no_worker: bool, port: int | None) -> None:
    """Run the Slack app (Socket Mode with SLACK_APP_TOKEN, else HTTP) and, by default, the
    sync worker in the same process."""
    settings = load_settings()
    if settings.missing_for_serve():
        _explain_missing(settings)
        sys.exit(2)
    from bot.app import create_app, make_services
    from bot.cli.common import setup_logging
    from bot.store import migrate

    setup_logging(settings)
    services = make_services(settings)
    migrate.upgrade(services.session_factory.kw["bind"])
    app = create_app(services)
    runner = None
    from bot.sync.parse_pool import prestart

    # The fork server also runs template renders (bot/templates.py), which happen inside a
    # Slack ack: it must be up before the first request, with or without the worker.
    prestart()
    if settings.run_worker and not no_worker:
        from bot.worker import Worker

        runner = Worker(services, app.client)
        runner.start()
    try:
        if settings.socket_mode:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            log.info("Starting in Socket Mode")
            if settings.public_url:
                on_push = runner.scheduler.trigger if runner is not None else None
                _serve_callback_in_background(app, services, port or settings.port, on_push)
            SocketModeHandler(app, settings.slack_app_token).start()
        else:
            import waitress

            from bot.web import WAITRESS_OPTIONS, make_wsgi_app

            listen = port or settings.port
            log.info("Starting in HTTP mode on port %s (POST /slack/events, GET /healthz)", listen)
            on_push = runner.scheduler.trigger if runner is not None else None
            waitress.serve(
                make_wsgi_app(app, services, on_push=on_push),
                host="0.0.0.0",
                port=listen,
                threads=16,
                **WAITRESS_OPTIONS,
            )
    finally:
        if runner is not None:
            runner.stop()


def _serve_callback_in_background(
    app: Any, services: Any, port: int, on_push: Any = None
) -> threading.Thread:
    """Socket Mode needs no public HTTP for Slack, but Google and Microsoft must reach
    /oauth/callback. Served without /slack/events: Socket Mode skips signature checks."""
    import waitress

    from bot.web import WAITRESS_OPTIONS, make_wsgi_app

    wsgi = make_wsgi_app(app, services, slack_events=False, on_push=on_push)
    thread = threading.Thread(
        target=waitress.serve,
        args=(wsgi,),
        kwargs={"host": "0.0.0.0", "port": port, "threads": 4, **WAITRESS_OPTIONS},
        name="oauth-callback-http",
        daemon=True,
    )
    thread.start()
    log.info("Serving /oauth/callback, /push/* and /healthz on port %s", port)
    return thread


@click.command()
def worker() -> None:
    """Run the sync scheduler and the outbox (the Procfile's `worker`)."""
    settings = load_settings()
    if not settings.slack_bot_token:
        click.echo(
            "Mailroom's worker needs SLACK_BOT_TOKEN to post to Slack.\n" + MANIFEST_HINT, err=True
        )
        sys.exit(2)
    from bot.app import make_services, make_web_client
    from bot.cli.common import setup_logging
    from bot.store import migrate
    from bot.worker import Worker

    setup_logging(settings)
    services = make_services(settings)
    migrate.upgrade(services.session_factory.kw["bind"])
    # The parse worker's fork server (bot/sync/parse_pool.py), started now so that a
    # big sync's worker starts at once.
    from bot.sync.parse_pool import prestart

    prestart()
    Worker(services, make_web_client(settings)).run_forever()
