#!/usr/bin/env python3
"""A kinopio-hub 3.0.0 messaging peer for kinopio's protocol-4 interop tests.

Usage: p4_messaging.py --server URL --namespace NS [--timeout S] COMMAND ...
  sub TOPIC COUNT [--queue Q]           print READY, then one line per message, exit after COUNT
  pub TOPIC JSON [--header NAME:VALUE]  publish the value (repeatable headers), print DONE
  serve TOPIC TAG [--queue Q] [--fail]  answer {"by": TAG, "input": <request>} with header
                                        x-worker: TAG (or raise with --fail); print READY, then
                                        one line per request; exit when stdin closes
  req TOPIC JSON [--header NAME:VALUE]  request; print the reply (or the error code)
  many TOPIC JSON MAX                   request_many with max_replies=MAX; print replies + reason
  burst TOPIC N                         publish {"i": 0..N-1} as fast as pub() allows; print DONE
Every line is JSON. The script exits on its own within its --timeout (default 20 s).
"""
import argparse
import asyncio
import json
import sys

from kinopio_hub import KinopioHub, KinopioError


def out(obj):
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def headers_of(args):
    entries = []
    for h in args.header or []:
        name, _, value = h.partition(":")
        entries.append((name, value))
    return entries or None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--queue")
    ap.add_argument("--header", action="append")
    ap.add_argument("--fail", action="store_true")
    ap.add_argument("--req-timeout", type=float, default=3.0)
    ap.add_argument("command")
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()

    hub = KinopioHub(args.namespace, servers=args.server, mesh=False, discovery=False)
    await hub.connected(10)
    try:
        await asyncio.wait_for(run(hub, args), args.timeout)
    finally:
        await hub.close()


async def run(hub, args):
    cmd, rest = args.command, args.rest
    if cmd == "sub":
        topic, count = rest[0], int(rest[1])
        done = asyncio.Event()
        seen = []

        def on_message(data, ctx):
            seen.append(1)
            out({"topic": ctx.topic, "data": data, "headers": ctx.headers.items()})
            if len(seen) >= count:
                done.set()

        await hub.var(topic).sub(on_message, queue=args.queue, with_context=True)
        out("READY")
        await done.wait()
    elif cmd == "pub":
        await hub.var(rest[0]).pub(json.loads(rest[1]), headers=headers_of(args))
        await hub.flush(5)
        out("DONE")
    elif cmd == "serve":
        topic, tag = rest[0], rest[1]

        async def on_request(data, ctx):
            out({"handled": data, "topic": ctx.topic, "headers": ctx.headers.items()})
            if args.fail:
                raise RuntimeError("deliberate failure")
            ctx.reply_headers.add("X-Worker", tag)
            return {"by": tag, "input": data}

        await hub.var(topic).handle(on_request, queue=args.queue, with_context=True)
        out("READY")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
    elif cmd == "req":
        try:
            reply = await hub.var(rest[0]).req(json.loads(rest[1]), headers=headers_of(args),
                                               timeout=args.req_timeout, details=True)
            out({"data": reply.data, "headers": reply.headers.items()})
        except KinopioError as e:
            out({"error": e.code})
    elif cmd == "many":
        try:
            result = await hub.var(rest[0]).request_many(json.loads(rest[1]), max_replies=int(rest[2]),
                                                         timeout=args.req_timeout, details=True)
            out({"replies": [r.data for r in result.replies], "reason": result.reason})
        except KinopioError as e:
            out({"error": e.code})
    elif cmd == "burst":
        var = hub.var(rest[0])
        started = asyncio.get_running_loop().time()
        for i in range(int(rest[1])):
            await var.pub({"i": i})
        await hub.flush(10)
        out({"done": int(rest[1]), "seconds": asyncio.get_running_loop().time() - started})
    else:
        raise SystemExit(f"unknown command {cmd}")


asyncio.run(main())
