#!/usr/bin/env python3
"""The Python side of kinopio-bench's protocol-4 scenarios (`p4-*`): hubs of the real
kinopio-hub 3.0.0, driven by JSON lines so that the Rust bench can place them in separate
processes and time them against kinopio on the same nats-server.

Usage: p4_bench.py --server URL [--limit S]

Reads one JSON command per line on stdin and writes one JSON answer per line on stdout
(`{"ok": true, ...}` or `{"ok": false, "error": "..."}`); stdout carries nothing else. Exits on
EOF, on `{"op": "exit"}`, or after --limit seconds (default 600) whatever happens. Every wait
inside a command is bounded by the command's own `timeout`.

Commands (`op`), each naming its hub by a key (`hub`) local to this process:
  open {hub, namespace, options}   KinopioHub(namespace, servers=URL, mesh=False,
                                   discovery=False, **options); waits until connected
  close {hub}                      hub.close()
  fill {hub, prefix, count}        sets prefix0..prefix{count-1} to their index, then flush
  count {hub}                      how many live records the hub holds
  join {hub, namespace, count,     opens a hub (timed from the constructor) and waits until it
        timeout, options}          holds `count` live records or `timeout` passes:
                                   {complete, have, elapsed_ms}
  latency {a, b, name, samples,    hubs a and b of this process (one namespace): b watches
           warmup, timeout}        `name`; a sets it to 1, 2, ...; each sample is the time from
                                   just before `await set(i)` until b's watch callback sees i
                                   (µs, perf_counter): {samples_us}
  subscribe {hub, topic,           subscribes `topic` with a counting callback
             pending_messages}
  sub_stats {hub}                  {received, first_ns, last_ns, dropped, native_drops}
                                   (time.time_ns() of the first and last delivery)
  publish {hub, topic, count,      publishes {"seq": i} count times, each `pub` awaited (as
           rate}                   the reference measured it), paced to `rate` msg/s if given:
                                   {sent, failed, first_error, start_ns, end_ns}
  rss                              {rss_kb} of this process (VmRSS)
  exit
"""
import argparse
import asyncio
import json
import sys
import time

from kinopio_hub import KinopioHub


def rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Counter:
    def __init__(self):
        self.received = 0
        self.first_ns = None
        self.last_ns = None
        self.sub = None

    def __call__(self, data):
        now = time.time_ns()
        if self.first_ns is None:
            self.first_ns = now
        self.last_ns = now
        self.received += 1


async def open_hub(url, namespace, options):
    hub = KinopioHub(namespace, servers=url, mesh=False, discovery=False, **(options or {}))
    await hub.connected(10)
    return hub


async def run(url):
    hubs = {}
    counters = {}
    loop = asyncio.get_running_loop()
    out = sys.stdout
    out.write(json.dumps({"ok": True, "ready": True}) + "\n")
    out.flush()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        answer = {"ok": True}
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "open":
                started = time.perf_counter()
                hubs[cmd["hub"]] = await open_hub(url, cmd["namespace"], cmd.get("options"))
                answer["elapsed_ms"] = (time.perf_counter() - started) * 1e3
            elif op == "close":
                hub = hubs.pop(cmd["hub"], None)
                counters.pop(cmd["hub"], None)
                if hub is not None:
                    await asyncio.wait_for(hub.close(), 10)
            elif op == "fill":
                hub = hubs[cmd["hub"]]
                started = time.perf_counter()
                for i in range(cmd["count"]):
                    await hub.var(f"{cmd['prefix']}{i}").set(i)
                await hub.flush(120)
                answer["elapsed_ms"] = (time.perf_counter() - started) * 1e3
            elif op == "count":
                records = hubs[cmd["hub"]].store.records
                answer["count"] = sum(1 for r in records.values() if not r.get("deleted"))
            elif op == "join":
                started = time.perf_counter()
                hub = KinopioHub(cmd["namespace"], servers=url, mesh=False, discovery=False, **(cmd.get("options") or {}))
                hubs[cmd["hub"]] = hub
                want, deadline = cmd["count"], started + cmd["timeout"]
                records = hub.store.records
                while len(records) < want and time.perf_counter() < deadline:
                    await asyncio.sleep(0.002)
                    records = hub.store.records
                elapsed = time.perf_counter() - started
                answer.update(complete=len(records) >= want, have=len(records), elapsed_ms=elapsed * 1e3)
            elif op == "latency":
                a, b = hubs[cmd["a"]], hubs[cmd["b"]]
                name, timeout = cmd["name"], cmd.get("timeout", 10)
                var_a, var_b = a.var(name), b.var(name)
                waiting = {}

                def seen(value, meta):
                    fut = waiting.get("fut")
                    if fut is not None and not fut.done() and value == waiting["want"]:
                        fut.set_result(time.perf_counter())

                stop = var_b.watch(seen)
                samples = []
                try:
                    for i in range(1, cmd["warmup"] + cmd["samples"] + 1):
                        fut = loop.create_future()
                        waiting.update(fut=fut, want=i)
                        started = time.perf_counter()
                        await var_a.set(i)
                        done = await asyncio.wait_for(fut, timeout)
                        if i > cmd["warmup"]:
                            samples.append((done - started) * 1e6)
                finally:
                    stop()
                answer["samples_us"] = samples
            elif op == "subscribe":
                counter = Counter()
                counter.sub = await hubs[cmd["hub"]].var(cmd["topic"]).sub(
                    counter, pending_messages=cmd.get("pending_messages", 256)
                )
                counters[cmd["hub"]] = counter
            elif op == "sub_stats":
                counter = counters[cmd["hub"]]
                answer.update(
                    received=counter.received,
                    first_ns=counter.first_ns,
                    last_ns=counter.last_ns,
                    dropped=counter.sub.dropped,
                    native_drops=hubs[cmd["hub"]].messaging.native_drops,
                )
            elif op == "publish":
                var = hubs[cmd["hub"]].var(cmd["topic"])
                count, rate = cmd["count"], cmd.get("rate")
                sent = failed = 0
                first_error = None
                start_ns = time.time_ns()
                started = time.perf_counter()
                for i in range(count):
                    if rate:
                        ahead = started + i / rate - time.perf_counter()
                        if ahead > 0:
                            await asyncio.sleep(ahead)
                    try:
                        await var.pub({"seq": i})
                        sent += 1
                    except Exception as e:  # noqa: BLE001 - counted and reported
                        failed += 1
                        first_error = first_error or f"{type(e).__name__}: {e}"
                answer.update(sent=sent, failed=failed, first_error=first_error, start_ns=start_ns, end_ns=time.time_ns())
            elif op == "rss":
                answer["rss_kb"] = rss_kb()
            elif op == "exit":
                break
            else:
                raise ValueError(f"unknown op {op}")
        except Exception as e:  # noqa: BLE001 - reported to the bench
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    for hub in hubs.values():
        try:
            await asyncio.wait_for(hub.close(), 10)
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    out.write(json.dumps({"ok": True, "bye": True}) + "\n")
    out.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--limit", type=float, default=600)
    args = parser.parse_args()
    try:
        asyncio.run(asyncio.wait_for(run(args.server), args.limit))
    except asyncio.TimeoutError:
        sys.exit(3)


if __name__ == "__main__":
    main()
