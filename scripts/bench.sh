#!/usr/bin/env bash
# The benchmark in one command, from a fresh clone: installs what it needs
# (scripts/install-deps.sh: nats-server 2.12.7 and the Python reference kinopio-hub 0.1.1 in
# .venv/), builds the release binaries (`kinopio` and `kinopio-bench`), and runs
# `kinopio-bench` (the benchmark's own binary, not part of `kinopio`), which starts its own
# nats-server on a free loopback port, measures kinopio against raw async-nats (and Python)
# and writes results/bench.json and results/bench.md.
#
# The protocol-4 scenarios (`p4-latency`, `p4-events`, `p4-late-join`, `p4-memory`,
# `p4-traffic`) measure against the real Python kinopio-hub 3.0.0 from `.venv-hub3/` (also made
# by install-deps.sh; without it they are reported as skipped).
#
# Every scenario runs by default, including `leaf-start` (a leaf's start against
# nats-server's own) and `failover` (leader kill -9 / SIGTERM on a LAN of network
# namespaces: needs root and iproute2, else it is reported as skipped; under --quick it
# runs only when named with --scenario).
#
# Extra arguments go to `kinopio-bench`, e.g. `scripts/bench.sh --quick` or
# `scripts/bench.sh --rounds 9 --scenario throughput,latency`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export KINOPIO_NATS_SERVER="$PWD/.venv/bin/nats-server"
export KINOPIO_PYTHON="$PWD/.venv/bin/python"
export KINOPIO_PYTHON_HUB3="$PWD/.venv-hub3/bin/python"

# The failover scenario runs the `kinopio` binary found beside `kinopio-bench`.
echo "== cargo build --release -p kinopio-cli -p kinopio-bench" >&2
cargo build --release --locked -p kinopio-cli -p kinopio-bench
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== kinopio-bench" >&2
exec "$target_dir/release/kinopio-bench" --out results "$@"
