#!/usr/bin/env bash
# Install inbox-mcp on a fresh Debian machine (as root) and start it on the embedded default:
# SQLite in the data home and an SMTP listener on 127.0.0.1:2525. The first run creates a tenant
# and an agent, and prints the agent key and ready-to-paste MCP client configs.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/inbox-mcp serve --transport http "$@"
