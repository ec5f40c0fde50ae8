#!/usr/bin/env bash
# End-to-end tests: start `openeg serve` and drive it with the official Python SDK.
#
#   scripts/e2e.sh [pytest args...]        e.g. scripts/e2e.sh -k channels -x
#
# The schemathesis fuzz run (tests/e2e/test_openapi.py) runs on the SQLite pass only; set
# OPENEG_FUZZ_ALWAYS=1 to run it with OPENEG_E2E_DATABASE_URL too, OPENEG_FUZZ_EXAMPLES /
# OPENEG_FUZZ_SEED to widen or vary it.
#
# Env: OPENEG_BIN (default <repo>/target/debug/openeg; NOT built here — run
#      `cargo build -p openeg` first), OPENEG_E2E_DATABASE_URL (optional PostgreSQL admin URL;
#      a fresh database is created per run), OPENEG_E2E_KEEP=1 (keep temp dir and server log),
#      OPENEG_E2E_VENV (default <repo>/.venv).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

export OPENEG_BIN="${OPENEG_BIN:-$repo/target/debug/openeg}"
if [[ ! -x "$OPENEG_BIN" ]]; then
    echo "e2e: OPENEG_BIN=$OPENEG_BIN does not exist or is not executable." >&2
    echo "e2e: build it first: cargo build -p openeg" >&2
    exit 2
fi

venv="${OPENEG_E2E_VENV:-$repo/.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "huaweicloudsdkeg==3.1.219" pytest requests "schemathesis==4.32.5" \
    "confluent-kafka==2.16.2" "pika==1.4.4" "boto3==1.44.18" "redis==6.4.0"

set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/e2e "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "e2e: no tests were collected — treating as failure" >&2
    exit 1
fi
exit $rc
