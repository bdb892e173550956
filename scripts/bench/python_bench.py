#!/usr/bin/env python3
"""The Python side of `kinopio-bench`: the reference client kinopio-hub 0.1.1 runs the same
publish -> subscribe throughput and request -> serve latency scenarios as the Rust bench,
against the same nats-server, and prints one JSON document on stdout.

Usage: python_bench.py --server URL [--rounds N] [--messages N] [--warmup-messages N]
                       [--requests N] [--warmup-requests N] [--timeout S]

Throughput: a publisher hub and a subscriber hub (two connections). Every payload is
distinct (an ASCII sequence number, then padding) because kinopio-hub 0.1.1 silently skips
a publish whose bytes equal the variable's previous publish. The publisher hub uses
no_echo=True so its own tracker subscription (which every 0.1.1 Variable creates) does not
receive the stream back; that favours Python, so the reported multiple is conservative. The
subscriber's own tracker subscription does receive every message (the library's behaviour).
The figure is messages per second counted by the subscription callback, from the first
publish of the measured batch to the last message received.

Latency: a serving hub answers 1 to each request; a requesting hub sends 16 B requests one
at a time; the figure is the per-request round-trip time (percentiles per round).
"""
import argparse
import asyncio
import importlib.metadata
import json
import sys
import time

from kinopio_hub import KinopioHub
from nats.errors import NoRespondersError

SIZES = (16, 1024)
SCOPE = "benchpy"


def payload(seq, size):
    head = b"%010d" % seq
    return head + b"x" * max(0, size - len(head))


def percentile(sorted_values, q):
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = q / 100.0 * (len(sorted_values) - 1)
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


async def open_hub(url, name, no_echo=False):
    hub = KinopioHub(servers=[url], server_selection_mode="ordered", name=name, no_echo=no_echo)
    await asyncio.wait_for(hub.wait_connected(timeout=10), 15)
    return hub


async def close_hub(hub):
    try:
        await asyncio.wait_for(hub.aclose(), 10)
    except Exception as exc:  # noqa: BLE001 - closing must not hide the measurement
        print(f"python_bench: closing a hub failed: {exc!r}", file=sys.stderr)


async def throughput_once(url, size, messages, warmup, run_id, timeout):
    sub_hub = await open_hub(url, "bench-py-sub")
    pub_hub = await open_hub(url, "bench-py-pub", no_echo=True)
    try:
        name = f"tp{run_id}"
        sub_var = sub_hub.get_scope(SCOPE).get_variable(name)
        pub_var = pub_hub.get_scope(SCOPE).get_variable(name)
        loop = asyncio.get_running_loop()
        warm = loop.create_future()
        done = loop.create_future()
        count = [0]
        warm_mark, done_mark = warmup, warmup + messages

        def on_message(data, msg):
            count[0] += 1
            if count[0] == warm_mark and not warm.done():
                warm.set_result(time.perf_counter())
            elif count[0] == done_mark and not done.done():
                done.set_result(time.perf_counter())

        await sub_var.subscribe(on_message)
        for seq in range(warmup):
            await pub_var.publish(payload(seq, size))
        await asyncio.wait_for(warm, timeout)
        started = time.perf_counter()
        for seq in range(warmup, warmup + messages):
            await pub_var.publish(payload(seq, size))
        published = time.perf_counter() - started
        try:
            ended = await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            ended = time.perf_counter()
        received = min(max(count[0] - warmup, 0), messages)
        return {
            "payload_bytes": size,
            "messages": messages,
            "received": received,
            "msgs_per_s": received / max(ended - started, 1e-9),
            "publish_msgs_per_s": messages / max(published, 1e-9),
        }
    finally:
        await close_hub(pub_hub)
        await close_hub(sub_hub)


async def latency_once(url, requests, warmup, run_id, timeout):
    serve_hub = await open_hub(url, "bench-py-serve")
    request_hub = await open_hub(url, "bench-py-request")
    try:
        name = f"rq{run_id}"
        await serve_hub.get_scope(SCOPE).get_variable(name).serve(lambda data, msg: 1)
        var = request_hub.get_scope(SCOPE).get_variable(name)
        body = b"x" * 16
        # The service subscribed and flushed before serve() returned, so the first request
        # should find it; if the server still answers "no responders", retry (bounded) and
        # report how often, rather than fail the whole run.
        setup_retries = 0
        while True:
            try:
                await var.request(body, timeout=timeout)
                break
            except NoRespondersError:
                setup_retries += 1
                if setup_retries >= 50:
                    raise
                await asyncio.sleep(0.02)
        for _ in range(warmup):
            await var.request(body, timeout=timeout)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            reply = await var.request(body, timeout=timeout)
            times.append(time.perf_counter() - started)
            if reply != 1:
                raise RuntimeError(f"unexpected reply {reply!r}")
        us = sorted(t * 1e6 for t in times)
        return {
            "count": len(us),
            "p50_us": percentile(us, 50),
            "p90_us": percentile(us, 90),
            "p99_us": percentile(us, 99),
            "p999_us": percentile(us, 99.9),
            "min_us": us[0],
            "max_us": us[-1],
            "mean_us": sum(us) / len(us),
            "setup_retries": setup_retries,
        }
    finally:
        await close_hub(request_hub)
        await close_hub(serve_hub)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--warmup-messages", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup-requests", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=60.0, help="bound of each wait, seconds")
    a = parser.parse_args()
    run_id = 0
    throughput = []
    latency = []
    for rnd in range(a.rounds):
        for size in SIZES:
            run_id += 1
            result = await throughput_once(a.server, size, a.messages, a.warmup_messages, run_id, a.timeout)
            result["round"] = rnd
            throughput.append(result)
            print(f"python_bench: throughput {size} B round {rnd + 1}: {result['msgs_per_s']:.0f} msg/s",
                  file=sys.stderr)
        run_id += 1
        result = await latency_once(a.server, a.requests, a.warmup_requests, run_id, a.timeout)
        result["round"] = rnd
        latency.append(result)
        print(f"python_bench: latency round {rnd + 1}: p50 {result['p50_us']:.0f} us", file=sys.stderr)
    print(json.dumps({
        "kinopio_hub_version": importlib.metadata.version("kinopio-hub"),
        "nats_py_version": importlib.metadata.version("nats-py"),
        "python": sys.version.split()[0],
        "throughput": throughput,
        "latency": latency,
    }), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
