#!/usr/bin/env bash
# Set up and run the whole test suite: lint, types, then every test (SQLite and PostgreSQL,
# a private Dovecot and SMTP server on loopback, a fake Slack Web API). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy (bot, tests, bench)"
.venv/bin/mypy bot tests bench
echo "==> pytest"
exec .venv/bin/pytest "$@"
