#!/usr/bin/env python3
"""A Python kinopio-hub 0.1.1 peer for kinopio's interop tests.

Usage: peer.py --server URL [--timeout S] COMMAND ...
  sub SUBJECT COUNT          print one JSON line per received value (after a READY line)
  pub SUBJECT CASE...        publish the named cases (see CASES) in order
  serve SUBJECT MODE         serve until stdin closes; MODE: echo | double | fail | types
  request SUBJECT CASE       request with a named case, print the reply as a JSON line
Every line printed is JSON: {"type": <python type>, "repr": <repr>, "value": <json-able>}.
"""
import argparse
import asyncio
import json
import math
import sys

from kinopio_hub import KinopioHub

CASES = {
    "null": None,
    "empty": "",
    "text": "hello w\u00f6rld",
    "numeric_text": "123",
    "int": 42,
    "big_int": 10**20,
    "float": 3.25,
    "neg_zero": -0.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "bool": True,
    "list": [1, "two", 3.0, None],
    "nested": {"a": {"b": [1, {"c": "d"}]}, "\u00e9": "\u00fc"},
    "bytes": b"\xff\x00\x01",
    "utf8_bytes": b"abc",
}


def describe(value):
    def jsonable(v):
        if isinstance(v, bytes):
            return {"$bytes": v.hex()}
        if isinstance(v, float) and not math.isfinite(v):
            return {"$float": repr(v)}
        if isinstance(v, dict):
            return {k: jsonable(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [jsonable(x) for x in v]
        return v

    return json.dumps({"type": type(value).__name__, "repr": repr(value), "value": jsonable(value)})


def emit(line):
    print(line, flush=True)


def variable(hub, subject):
    scope, _, name = subject.rpartition(".")
    return hub.get_scope(scope).get_variable(name)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("command")
    parser.add_argument("args", nargs="*")
    a = parser.parse_args()
    hub = KinopioHub(servers=[a.server], server_selection_mode="ordered")
    await asyncio.wait_for(hub.wait_connected(timeout=5), 10)
    try:
        await asyncio.wait_for(run(hub, a.command, a.args), a.timeout)
    finally:
        await asyncio.wait_for(hub.aclose(), 5)


async def run(hub, command, args):
    if command == "sub":
        subject, count = args[0], int(args[1])
        done = asyncio.Event()
        seen = []

        def on_message(data, msg):
            seen.append(data)
            emit(describe(data))
            if len(seen) >= count:
                done.set()

        await variable(hub, subject).subscribe(on_message)
        emit(json.dumps({"ready": True}))
        await done.wait()
    elif command == "pub":
        var = variable(hub, args[0])
        for name in args[1:]:
            await var.publish(CASES[name])
        await hub._nc.flush()
        emit(json.dumps({"published": len(args) - 1}))
    elif command == "serve":
        subject, mode = args
        def handler(data, msg):
            if mode == "echo":
                return data
            if mode == "double":
                return data * 2
            if mode == "fail":
                raise RuntimeError("boom: " + repr(data))
            if mode == "types":
                return type(data).__name__
            raise ValueError(mode)
        await variable(hub, subject).serve(handler)
        emit(json.dumps({"ready": True}))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    elif command == "request":
        subject, case = args
        reply = await variable(hub, subject).request(CASES[case], timeout=5)
        emit(describe(reply))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    asyncio.run(main())
