"""A kinopio-hub 3.0.0 (protocol 4) peer driven by JSON lines, for kinopio's interop tests.

Usage: p4_peer.py <nats-url> <namespace> [key=value options…]

Reads one JSON command per line on stdin and writes one JSON answer per line on stdout
(`{"ok": true, …}` or `{"ok": false, "error": "…"}`); stdout carries nothing else. Exits on
EOF, on `{"op": "close"}`, or after 120 s in all, whatever happens.

Commands (`op`):
  set {name, value}            var(name).set(value), then hub.flush()
  delete {name}                var(name).delete(), then flush
  get {name}                   {"value": …, "exists": …, "version": …, "pending": …}
  wait {name, value, timeout}  waits until var(name).value == value (or until deleted when
                               "deleted": true) → the same fields as get
  fill {prefix, count}         sets prefix0…prefix{count-1} to their index, then flush
  count {prefix}               how many live variables start with prefix
  health                       hub.status()["health"] plus its current/last error
  status                       hub.status()
  close                        closes the hub and exits
Options: peer_timeout=<s>, probe_interval=<s>, health_interval=<s>.
"""

import asyncio
import json
import sys

from kinopio_hub import KinopioHub, UNSET


def plain(value):
    return None if value is UNSET else value


async def main() -> None:
    url, namespace = sys.argv[1], sys.argv[2]
    options = {}
    for arg in sys.argv[3:]:
        key, value = arg.split("=", 1)
        options[key] = float(value)
    hub = KinopioHub(namespace, servers=url, mesh=False, discovery=False, **options)
    await hub.connected(10)
    out = sys.stdout
    out.write(json.dumps({"ok": True, "ready": True, "writer": hub.writer}) + "\n")
    out.flush()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            answer = {"ok": True}
            if op == "set":
                await hub.var(cmd["name"]).set(cmd["value"])
                await hub.flush(10)
            elif op == "delete":
                await hub.var(cmd["name"]).delete()
                await hub.flush(10)
            elif op in ("get", "wait"):
                var = hub.var(cmd["name"])
                if op == "wait":
                    deadline = loop.time() + cmd.get("timeout", 10)
                    while True:
                        meta = var.meta
                        done = (not meta["exists"]) if cmd.get("deleted") else (meta["exists"] and var.value == cmd["value"])
                        if done:
                            break
                        if loop.time() > deadline:
                            raise TimeoutError(f"{cmd['name']} is {plain(var.value)!r}, not {cmd.get('value')!r}")
                        await asyncio.sleep(0.01)
                meta = var.meta
                answer.update(value=plain(var.value), exists=meta["exists"], version=meta["version"], pending=meta["pending"])
            elif op == "fill":
                for i in range(cmd["count"]):
                    await hub.var(f"{cmd['prefix']}{i}").set(i)
                await hub.flush(60)
            elif op == "count":
                store = hub.store.records
                answer["count"] = sum(
                    1 for r in store.values() if r["name"].startswith(cmd["prefix"]) and not r.get("deleted")
                )
            elif op == "health":
                status = hub.status()
                answer.update(health=status["health"], currentError=status.get("currentError"), lastError=status.get("lastError"))
            elif op == "status":
                answer["status"] = hub.status()
            elif op == "close":
                await hub.close()
                out.write(json.dumps(answer) + "\n")
                out.flush()
                return
            else:
                raise ValueError(f"unknown op {op}")
        except Exception as e:  # noqa: BLE001 - reported to the test
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    await hub.close()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 120))
    except asyncio.TimeoutError:
        sys.exit(3)
