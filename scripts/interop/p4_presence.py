#!/usr/bin/env python3
"""A kinopio-hub 3.0.0 peer for the presence interop tests (tests/p4_presence.rs,
cli/tests/p4_peers.rs).

    p4_presence.py --server nats://127.0.0.1:PORT --namespace workshop --interval 0.2 \
        --duration 3 [--expect-sdk rust]

Runs one Python hub (mesh and discovery off) reporting every `--interval` seconds for
`--duration` seconds, then closes it and exits. Prints JSON lines on stdout:

- {"event":"ready","instanceId":…} once connected;
- {"event":"seen","row":…} the first time `hub.instances.list()` holds an online instance of
  `--expect-sdk`, with that row;
- {"event":"done","healthAlwaysOk":…,"samples":…,"notOk":[…],"expectedReports":…,
  "expected":row-or-null,"health":…} at the end: whether `hub.status()["health"]` was "ok" at
  every sample (every 50 ms), the statuses that were not, and how many distinct reports of the
  expected instance were seen (its `lastSeen` changes).

Exits on its own within `--duration` + a few seconds.
"""
import argparse
import asyncio
import json
import sys

from kinopio_hub import KinopioHub


def say(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--expect-sdk", default=None)
    args = parser.parse_args()

    hub = KinopioHub(args.namespace, servers=args.server, mesh=False, discovery=False,
                     health_interval=args.interval)
    try:
        await hub.connected(5)
        say({"event": "ready", "instanceId": hub.instance_id})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.duration
        samples, not_ok, expected, reports, last_seen = 0, [], None, 0, None
        while loop.time() < deadline:
            status = hub.status()
            samples += 1
            if status["health"] != "ok":
                not_ok.append({"health": status["health"], "currentError": status["currentError"],
                               "connection": status["connection"]})
            if args.expect_sdk:
                for row in await hub.instances.list():
                    if row.get("sdk") == args.expect_sdk and row["instanceId"] != hub.instance_id:
                        if row["lastSeen"] != last_seen:
                            reports += 1
                            last_seen = row["lastSeen"]
                        if expected is None and row["online"] == "online":
                            say({"event": "seen", "row": row})
                        expected = row
            await asyncio.sleep(0.05)
        final = hub.status()
        say({"event": "done", "healthAlwaysOk": not not_ok and final["health"] == "ok", "samples": samples,
             "notOk": not_ok[:5], "expectedReports": reports, "expected": expected, "health": final["health"],
             "lastError": final["lastError"]})
    finally:
        await asyncio.wait_for(hub.close(), 5)


if __name__ == "__main__":
    asyncio.run(main())
