#!/usr/bin/env python3
"""Property test of the `kinopio` CLI's encode and decode paths against kinopio-hub 0.1.1.

Usage: cli_roundtrip.py --server URL --kinopio PATH [--cases N] [--seed S]

Random values (big integers, floats with every digit, NaN/Infinity, -0.0, unicode and
JSON-looking strings, nesting) and random plain texts are written as the text a user types
(Python's json.dumps for values) and checked three ways:
  1. `kinopio pub SUBJECT -- TEXT`: the Python peer receives exactly TEXT's bytes and decodes
     them to the same value as decoding TEXT itself;
  2. the Python peer publishes the value, `kinopio sub --json` prints it: `payload` is exactly
     what Python sent, `type` is how Python decodes it, and `value` (when present) holds the
     same value, digit for digit;
  3. random names: `kinopio pub NAME` exits 2 before connecting for an invalid name and 0
     for a valid one.
Exits non-zero on the first mismatch, printing the case (and the seed to replay it).
"""
import argparse
import asyncio
import json
import math
import random
import subprocess
import sys

from kinopio_hub import KinopioHub


def random_float(rng):
    return rng.choice([
        rng.uniform(-1e6, 1e6),
        rng.random() * 10 ** rng.randint(-320, 308),
        -0.0,
        0.1 + 0.2,
        float("nan"),
        float("inf"),
        float("-inf"),
        5e-324,
        1.7976931348623157e308,
    ])


def random_text(rng, alphabet="abc xyz\u00e9\u4e2d\U0001f600\"\\/\n\t{}[]:,-0123456789"):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def random_value(rng, depth=0):
    kinds = ["null", "bool", "int", "bigint", "float", "str", "jsonish"]
    if depth < 3:
        kinds += ["list", "dict"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-(2**63), 2**64)
    if kind == "bigint":
        return rng.choice([-1, 1]) * rng.randint(2**64, 10**40)
    if kind == "float":
        return random_float(rng)
    if kind == "str":
        return random_text(rng)
    if kind == "jsonish":
        return rng.choice(["42", "NaN", "null", "true", '{"a": 1}', "", " ", "-5", "1e400"])
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def same(a, b):
    """Equality where NaN equals NaN, -0.0 differs from 0.0 and 1 differs from 1.0 and True."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def fail(seed, what, **details):
    print(json.dumps({"failed": what, "seed": seed, **{k: repr(v) for k, v in details.items()}}))
    sys.exit(1)


def valid_name(name):
    if not name:
        return False
    for ch in name:
        if ch.isspace() or ch in "*>" or ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F:
            return False
    return all(name.split("."))


def kinopio(args, path, server):
    """Runs `kinopio ARGS... --server URL` (or `kinopio ARGS --server URL -- VALUE` when ARGS
    ends with `--` and the value)."""
    if "--" in args:
        i = args.index("--")
        args = [*args[:i], "--server", server, *args[i:]]
    else:
        args = [*args, "--server", server]
    return subprocess.run([path, *args], capture_output=True, timeout=30)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--kinopio", required=True)
    p.add_argument("--cases", type=int, default=60)
    p.add_argument("--seed", type=int, default=random.randrange(2**32))
    a = p.parse_args()
    rng = random.Random(a.seed)
    hub = KinopioHub(servers=[a.server], server_selection_mode="ordered")
    await asyncio.wait_for(hub.wait_connected(timeout=5), 10)
    loop = asyncio.get_running_loop()

    # The texts a user types: Python's JSON for random values, and random plain texts.
    texts = []
    for _ in range(a.cases):
        texts.append(json.dumps(random_value(rng)))
        texts.append(random_text(rng, "abc xyz\u00e9-0123456789NaInfity.e+\""))

    # 1. kinopio pub -> Python.
    received = asyncio.Queue()
    await hub.get_scope("cli").get_variable("rt").subscribe(lambda data, msg: received.put_nowait((data, msg.data)))
    await hub._nc.flush()
    for text in texts:
        if "\x00" in text:
            continue
        out = await loop.run_in_executor(None, kinopio, ["pub", "cli.rt", "--", text], a.kinopio, a.server)
        if out.returncode != 0:
            fail(a.seed, "pub exit code", text=text, code=out.returncode, stderr=out.stderr.decode())
        data, raw = await asyncio.wait_for(received.get(), 10)
        if raw != text.encode():
            fail(a.seed, "pub changed the bytes", text=text, received=raw)
        expected = hub.deserialize_data(text.encode())
        if not same(data, expected):
            fail(a.seed, "pub: Python decoded another value", text=text, got=data, expected=expected)

    # 2. Python -> kinopio sub --json.
    # kinopio-hub 0.1.1 skips a publish whose payload equals the previous one: no repeats.
    values, last = [], None
    for _ in range(a.cases):
        value = random_value(rng)
        if hub.serialize_data(value) != last:
            values.append(value)
            last = hub.serialize_data(value)
    sub = await asyncio.create_subprocess_exec(
        a.kinopio, "sub", "cli.back", "--json", "--count", str(len(values)), "--timeout-ms", "20000",
        "--server", a.server, stdout=asyncio.subprocess.PIPE)
    while True:
        line = json.loads(await asyncio.wait_for(sub.stdout.readline(), 10))
        if line.get("event") == "subscribed":
            break
    var = hub.get_scope("cli").get_variable("back")
    for value in values:
        await var.publish(value)
        sent = hub.serialize_data(value)
        try:
            line = json.loads(await asyncio.wait_for(sub.stdout.readline(), 10))
        except asyncio.TimeoutError:
            fail(a.seed, "sub printed nothing", value=value, sent=sent)
        python_view = hub.deserialize_data(sent)
        if not sent:
            kind = "null"
        elif isinstance(python_view, bytes):
            kind = "bytes"
        else:
            try:
                json.loads(sent.decode())
                kind = "json"
            except ValueError:
                kind = "text"
        if line.get("type") != kind:
            fail(a.seed, "sub type", value=value, sent=sent, line=line, expected=kind)
        if sent and line.get("payload") != sent.decode():
            fail(a.seed, "sub payload", value=value, sent=sent, line=line)
        if "value" in line:
            shown = line["value"]
            if kind == "json":
                # Re-read the printed value the way Python reads the payload: same numbers.
                shown = json.loads(json.dumps(shown))
            if not same(shown, python_view if kind != "null" else None):
                fail(a.seed, "sub value", value=value, sent=sent, line=line)
        elif kind in ("null", "text"):
            fail(a.seed, "sub value missing", value=value, line=line)
    await asyncio.wait_for(sub.wait(), 10)
    if sub.returncode != 0:
        fail(a.seed, "sub exit code", code=sub.returncode)

    # 3. Names: invalid ones fail before connecting (exit 2), valid ones publish (exit 0).
    for _ in range(a.cases):
        name = "".join(rng.choice("ab.*> \t\u00e9_-1") for _ in range(rng.randint(0, 6)))
        out = await loop.run_in_executor(None, kinopio, ["pub", "--", name, "1"], a.kinopio, a.server)
        expected = 0 if valid_name(name) else 2
        if out.returncode != expected:
            fail(a.seed, "name", name=name, code=out.returncode, expected=expected, stderr=out.stderr.decode())

    await asyncio.wait_for(hub.aclose(), 5)
    print(json.dumps({"ok": True, "seed": a.seed, "texts": len(texts), "values": len(values), "names": a.cases}))


if __name__ == "__main__":
    asyncio.run(main())
