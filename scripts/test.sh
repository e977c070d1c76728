#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (as root), then run it.
# This is the README's test command, and .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  pkgs=(python3 python3-venv python3-dev ca-certificates)
  command -v npm >/dev/null || pkgs+=(nodejs npm)
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# Real Postfix and Dovecot for the smtp_imap backend's tests (started by the tests, in temp dirs).
bash scripts/install-mailservers.sh

# Mail no one here wrote: CPython's test_email data, mail-parser's and talon's samples, enmime's cases.
bash scripts/fetch-corpora.sh

# A third-party MCP client for the interoperability test.
if [ ! -x .cache/inspector/node_modules/.bin/mcp-inspector ]; then
  mkdir -p .cache/inspector
  (cd .cache/inspector && npm init -y >/dev/null && npm install --no-audit --no-fund --silent @modelcontextprotocol/inspector@0.15.0 >/dev/null)
fi

exec .venv/bin/python -m pytest -q "$@"
