#!/usr/bin/env python3
"""A stranger on the LAN: multicasts forged election leader beacons (for the LAN tests).

Sends, every --interval seconds for --duration seconds, to 239.255.71.71:<port of the
namespace> with TTL 1:
  - an unsigned leader beacon claiming --epoch (takes over an open namespace, as in
    kinopio-hub 0.1.1; dropped as `unsigned` in a secured one);
  - with --secured-attacks also: the same beacon with a made-up `auth` field (dropped as
    `forged`), and, once a signed beacon of the real leader was captured, that beacon again
    (dropped by its followers as `replayed`) and a copy with its leaderEpoch raised (dropped
    as `forged`).
Prints one JSON line with what it sent. Standard library only.

usage: lan-forge-beacon.py --namespace NS [--epoch N] [--node-id ID] [--duration S]
                           [--interval S] [--interface-ip IP] [--secured-attacks]
"""

import argparse
import json
import os
import socket
import struct
import time
import zlib

GROUP = "239.255.71.71"


def port_for(namespace: str) -> int:
    return 44710 + zlib.crc32(namespace.encode("utf-8")) % 1000


def leader_beacon(namespace: str, node_id: str, epoch: int) -> dict:
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    return {
        "version": 1,
        "nodeId": node_id,
        "leaderEpoch": epoch,
        "advertisedHostname": "10.77.0.250",
        "wssUrl": "wss://10.77.0.250:4443",
        "clientUrl": "nats://127.0.0.1:4222",
        "monitorUrl": "http://127.0.0.1:8222",
        "fallbackServers": ["wss://10.77.0.250:4443"],
        "bridgeState": "connected",
        "backboneServers": [],
        "backboneRttMs": 0.001,
        "discoveryUrl": "https://10.77.0.250:8443/.well-known/kinopio-leader.json",
        "leaseExpiresAt": expires,
        "expiresAt": expires,
        "discoveryNamespace": namespace,
        "isLeader": True,
        "candidateRole": "leader",
        "state": "leader",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--epoch", type=int, default=1_000_000)
    parser.add_argument("--node-id", default="kinopio-00000000-1")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--interface-ip", default=None)
    parser.add_argument("--secured-attacks", action="store_true")
    args = parser.parse_args()

    port = port_for(args.namespace)
    send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    # Never hear (and capture) our own datagrams.
    send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    if args.interface_ip:
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.interface_ip))

    captured = None
    listen = None
    if args.secured_attacks:
        listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listen.bind(("", port))
        iface = socket.inet_aton(args.interface_ip or "0.0.0.0")
        listen.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(GROUP), iface))
        listen.setblocking(False)

    counts = {"unsigned": 0, "bad_mac": 0, "replayed": 0, "tampered": 0}
    deadline = time.time() + args.duration
    while time.time() < deadline:
        beacon = leader_beacon(args.namespace, args.node_id, args.epoch)
        send.sendto(json.dumps(beacon).encode(), (GROUP, port))
        counts["unsigned"] += 1
        if args.secured_attacks:
            now_ms = int(time.time() * 1000)
            beacon["auth"] = {"alg": "hmac-sha256", "ts": now_ms, "seq": now_ms, "mac": os.urandom(32).hex()}
            send.sendto(json.dumps(beacon).encode(), (GROUP, port))
            counts["bad_mac"] += 1
            while listen is not None:
                try:
                    data, _ = listen.recvfrom(65536)
                except BlockingIOError:
                    break
                try:
                    parsed = json.loads(data)
                except ValueError:
                    continue
                # A signed beacon of the real leader: replayed to its followers.
                if (
                    isinstance(parsed, dict)
                    and "auth" in parsed
                    and parsed.get("isLeader") is True
                    and parsed.get("nodeId") != args.node_id
                ):
                    captured = data
            if captured is not None:
                send.sendto(captured, (GROUP, port))
                counts["replayed"] += 1
                tampered = json.loads(captured)
                tampered["leaderEpoch"] = args.epoch
                send.sendto(json.dumps(tampered).encode(), (GROUP, port))
                counts["tampered"] += 1
        time.sleep(args.interval)
    print(json.dumps({"port": port, "sent": counts}), flush=True)


if __name__ == "__main__":
    main()
