#!/usr/bin/env bash
# A simulated LAN of network namespaces for multi-host tests (election, failover,
# partitions). Needs root and iproute2. Addresses stay inside the namespaces (10.77.0.0/16);
# the bridge lives in a namespace of its own, so nothing touches the host's network.
#
#   scripts/lan.sh up PREFIX N      create PREFIX-br (bridge) and hosts PREFIX-h1..hN,
#                                   host i = 10.77.0.i/24 on eth0, with a multicast route
#   scripts/lan.sh down PREFIX      remove every namespace named PREFIX-*
#   scripts/lan.sh cut PREFIX I     disconnect host I from the bridge (partition)
#   scripts/lan.sh heal PREFIX I    reconnect host I
#   scripts/lan.sh exec PREFIX I CMD...   run CMD inside host I
set -euo pipefail

cmd=${1:?usage: lan.sh up|down|cut|heal|exec PREFIX ...}
prefix=${2:?missing PREFIX}
br="$prefix-br"

host() { echo "$prefix-h$1"; }

case "$cmd" in
  up)
    n=${3:?missing N}
    ip netns add "$br"
    ip -n "$br" link add br0 type bridge
    ip -n "$br" link set br0 type bridge mcast_snooping 0
    ip -n "$br" link set br0 up
    ip -n "$br" link set lo up
    for i in $(seq 1 "$n"); do
      h=$(host "$i")
      ip netns add "$h"
      ip link add "p$i-$prefix" netns "$h" type veth peer name "b$i" netns "$br"
      ip -n "$h" link set "p$i-$prefix" name eth0
      ip -n "$h" addr add "10.77.0.$i/24" dev eth0
      ip -n "$h" link set eth0 up
      ip -n "$h" link set lo up
      ip -n "$h" route add 224.0.0.0/4 dev eth0
      ip -n "$br" link set "b$i" master br0
      ip -n "$br" link set "b$i" up
    done
    ;;
  down)
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$prefix-(br|h[0-9]+)$" || true); do
      # Kill whatever still runs inside, then remove the namespace.
      for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    done
    ;;
  cut)
    ip -n "$br" link set "b${3:?missing I}" down
    ;;
  heal)
    ip -n "$br" link set "b${3:?missing I}" up
    ;;
  exec)
    i=${3:?missing I}
    shift 3
    exec ip netns exec "$(host "$i")" "$@"
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
