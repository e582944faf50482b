#!/usr/bin/env bash
# Set up and run Mailroom: the Slack app and the sync worker in one process.
# Settings come from the environment or a .env file (see README → Configuration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mailroom serve "$@"
