#!/bin/sh
# Lays out what kinopio-leaf.service reads, with the modes it needs:
#
#   ROOT/                          0755  root  (default /etc/kinopio)
#   ROOT/backbone-ca.pem           0644        CA that signed the backbone's certificates
#   ROOT/secrets/                  0700  root
#   ROOT/secrets/backbone-password 0600        this LAN's leaf password on the backbone
#                                              (--backbone-password-file, via LoadCredential)
#   ROOT/secrets/namespace.env     0600        KINOPIO_NAMESPACE_SECRET=... (the secured
#                                              namespace's secret, via EnvironmentFile)
#
# Usage (values come from the environment, never from the command line, which other local
# users can read):
#   KINOPIO_BACKBONE_PASSWORD=... KINOPIO_NAMESPACE_SECRET=... \
#   KINOPIO_BACKBONE_CA_FILE=backbone-ca.pem manifests/leaf/install-secrets.sh [ROOT]
#
# systemd reads both secret files as root before the service starts and hands the password
# to the service's unprivileged dynamic user in a private directory, so nothing under
# ROOT/secrets needs to be readable by anyone but root. Generate secrets that fit on one
# line, e.g. `openssl rand -hex 24`. cli/tests/backbone_cluster.rs runs this script and
# starts a leaf with its files.
set -eu
root=${1:-/etc/kinopio}
: "${KINOPIO_BACKBONE_PASSWORD:?set KINOPIO_BACKBONE_PASSWORD (the leaf user's backbone password)}"
: "${KINOPIO_NAMESPACE_SECRET:?set KINOPIO_NAMESPACE_SECRET (the namespace secret)}"
case "$KINOPIO_BACKBONE_PASSWORD$KINOPIO_NAMESPACE_SECRET" in
  *'
'*) echo "install-secrets.sh: secrets must be one line each" >&2; exit 2 ;;
esac

umask 077
mkdir -p "$root/secrets"
chmod 0755 "$root"
chmod 0700 "$root/secrets"
# printf is a shell builtin: the secrets never appear on a process's command line.
printf '%s\n' "$KINOPIO_BACKBONE_PASSWORD" > "$root/secrets/backbone-password.tmp"
mv "$root/secrets/backbone-password.tmp" "$root/secrets/backbone-password"
printf 'KINOPIO_NAMESPACE_SECRET=%s\n' "$KINOPIO_NAMESPACE_SECRET" > "$root/secrets/namespace.env.tmp"
mv "$root/secrets/namespace.env.tmp" "$root/secrets/namespace.env"
chmod 0600 "$root/secrets/backbone-password" "$root/secrets/namespace.env"
if [ -n "${KINOPIO_BACKBONE_CA_FILE:-}" ]; then
  cp "$KINOPIO_BACKBONE_CA_FILE" "$root/backbone-ca.pem.tmp"
  chmod 0644 "$root/backbone-ca.pem.tmp"
  mv "$root/backbone-ca.pem.tmp" "$root/backbone-ca.pem"
fi
echo "wrote $root/secrets/backbone-password and $root/secrets/namespace.env (0600, in a 0700 directory)"
