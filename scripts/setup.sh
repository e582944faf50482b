#!/usr/bin/env bash
# Prepare a machine for Mailroom: a virtualenv with the package (and, with --test, what the test
# suite needs: Debian's dovecot-imapd and isync, and a running PostgreSQL). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$py" -m venv .venv
fi
stamp=.venv/.mailroom-installed
[ "$want_test" = 1 ] && stamp=.venv/.mailroom-installed-test
# constraints.txt pins every package to the versions CI last passed with: a new release of a
# linter or library changes nothing until that file is regenerated (CONTRIBUTING.md).
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "==> installing Python dependencies (log: .venv/install.log)"
  extra=""
  [ "$want_test" = 1 ] && extra="[test]"
  # Build back-ends are chatty even with --quiet: keep their output in a log, show it on failure.
  if ! { .venv/bin/python -m pip install --quiet --upgrade pip &&
         .venv/bin/python -m pip install --quiet -e ".$extra" -c constraints.txt; } > .venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "Installing the Python dependencies failed (above)." >&2
    exit 1
  fi
  touch "$stamp"
fi

if [ "$want_test" = 1 ]; then
  missing=()
  [ -x /usr/sbin/dovecot ] || missing+=(dovecot-imapd)
  command -v mbsync >/dev/null 2>&1 || missing+=(isync)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The packaged service is not needed: tests start their own private Dovecot.
    $SUDO systemctl disable --now dovecot >/dev/null 2>&1 || true
  fi
  if ! .venv/bin/python - <<'PY' 2>/dev/null
import psycopg
psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3).close()
PY
  then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      echo "==> starting PostgreSQL"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    fi
  fi
fi
