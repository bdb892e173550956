#!/usr/bin/env python3
"""A kinopio-hub 3.0.0 live-channel peer for the interop tests (tests/p4_live.rs,
cli/tests/p4_live.rs). Run it with the interpreter of `.venv-hub3`.

    p4_live.py recv --server URL --namespace NS --channel CH [--count N] [--max-age-ms MS]
        subscribes, prints {"event":"ready"}, then one line per accepted value
        {"value": V, "valid": bool}; exits 0 after --count values, 1 after --limit seconds.
    p4_live.py send --server URL --namespace NS --channel CH --values JSON_ARRAY [--pause-ms MS]
        sends each value in turn and prints {"sent": V} or {"error": CODE, "value": V};
        exits 0 when every send succeeded, else 1.

Every line is JSON on stdout; the process always exits within --limit seconds.
"""
import argparse
import asyncio
import json
import sys

from kinopio_hub import KinopioError, KinopioHub


def say(obj):
    print(json.dumps(obj), flush=True)


async def recv(hub, args):
    channel = hub.live(args.channel)
    done = asyncio.Event()
    seen = 0

    def on_value(value, context):
        nonlocal seen
        seen += 1
        say({"value": value, "valid": context.is_valid()})
        if args.count and seen >= args.count:
            done.set()

    await channel.subscribe(on_value, max_age_ms=args.max_age_ms, with_context=True)
    say({"event": "ready"})
    await done.wait()
    return 0


async def send(hub, args):
    channel = hub.live(args.channel)
    failed = False
    for i, value in enumerate(json.loads(args.values)):
        if i and args.pause_ms:
            await asyncio.sleep(args.pause_ms / 1000)
        try:
            await channel.send(value, timeout=args.timeout)
            say({"sent": value})
        except KinopioError as error:
            failed = True
            say({"error": error.code, "value": value})
    return 1 if failed else 0


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["recv", "send"])
    parser.add_argument("--server", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--max-age-ms", type=int, default=300)
    parser.add_argument("--values", default="[]")
    parser.add_argument("--pause-ms", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3)
    parser.add_argument("--limit", type=float, default=20)
    args = parser.parse_args()
    hub = KinopioHub(args.namespace, servers=args.server, mesh=False, discovery=False)
    try:
        await hub.connected(5)
        job = recv(hub, args) if args.mode == "recv" else send(hub, args)
        try:
            return await asyncio.wait_for(job, args.limit)
        except asyncio.TimeoutError:
            say({"event": "limit"})
            return 1
    finally:
        await hub.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
