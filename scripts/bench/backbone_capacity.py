#!/usr/bin/env python3
"""How much of one backbone node a fleet of leaves costs: starts one node from
manifests/backbone/backbone.conf (TLS, leaf users; its routes point at nothing), attaches
LEAVES real nats-server leaf nodes to it the way kinopio renders a leaf (TLS, user
lan-studio), gives each leaf SUBS subscriptions from a LAN client (interest the backbone
must keep), then measures the node's CPU time and memory, first idle and then with RATE
messages per second per leaf in each direction (backbone -> LAN and LAN -> backbone).

CPU is read from /proc/<pid>/stat (the node's own user + system time over the window), so
other load on the machine slows the run but does not inflate the figure. Everything is on
loopback and bounded (about a minute); every process is killed at the end.

Usage: .venv/bin/python scripts/bench/backbone_capacity.py [--leaves 100] [--subs 100]
       [--rate 10] [--seconds 10] [--nats-server PATH]
Prints one JSON object.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import nats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONF = os.path.join(ROOT, "manifests", "backbone", "backbone.conf")
PASSWORD = "kcapacity0a1b2c3d"
TICKS = os.sysconf("SC_CLK_TCK")


def free_ports(n):
    """n distinct free ports (all bound at once, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port, limit=20.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing accepts on port {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def varz(port, path="varz"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=2) as r:
        return json.load(r)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=100)
    parser.add_argument("--subs", type=int, default=100)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--nats-server", default=os.environ.get("KINOPIO_NATS_SERVER") or os.path.join(ROOT, ".venv/bin/nats-server"))
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="kinopio-capacity-")
    procs = []
    try:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=backbone",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True)
        ports = free_ports(4 + args.leaves)
        client, leafp, cluster, monitor = ports[:4]
        env = {
            "BACKBONE_NAME": "backbone-1", "BACKBONE_HOST": "127.0.0.1",
            "BACKBONE_CLIENT_PORT": str(client), "BACKBONE_LEAF_PORT": str(leafp),
            "BACKBONE_CLUSTER_PORT": str(cluster), "BACKBONE_MONITOR": f"127.0.0.1:{monitor}",
            "BACKBONE_TLS_CERT": cert, "BACKBONE_TLS_KEY": key,
            "BACKBONE_ROUTE_PASSWORD": PASSWORD, "BACKBONE_APP_PASSWORD": PASSWORD,
            "LEAF_STUDIO_PASSWORD": PASSWORD, "LEAF_OFFICE_PASSWORD": PASSWORD,
        }
        for i in (1, 2, 3):
            env[f"BACKBONE_ROUTE_{i}"] = f"nats-route://route:{PASSWORD}@127.0.0.1:{cluster}"
        node = subprocess.Popen([args.nats_server, "-c", CONF], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "node.log"), "w"))
        procs.append(node)
        wait_port(client)
        wait_port(leafp)

        leaf_ports = []
        for i in range(args.leaves):
            port = ports[4 + i]
            conf = os.path.join(tmp, f"leaf-{i}.conf")
            with open(conf, "w") as f:
                f.write(
                    f'server_name: "leaf-{i}"\nhost: 127.0.0.1\nport: {port}\n'
                    f"leafnodes {{\n  reconnect: 1s\n  remotes = [{{\n"
                    f'    urls: ["tls://lan-studio:{PASSWORD}@127.0.0.1:{leafp}"]\n'
                    f'    tls {{ ca_file: "{cert}" }}\n  }}]\n}}\n')
            procs.append(subprocess.Popen([args.nats_server, "-c", conf],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            leaf_ports.append(port)
        for port in leaf_ports:
            wait_port(port)
        deadline = time.time() + 60
        while varz(monitor, "leafz").get("leafnodes", 0) < args.leaves:
            if time.time() > deadline:
                raise SystemExit(f"only {varz(monitor, 'leafz').get('leafnodes')} of {args.leaves} leaves attached")
            await asyncio.sleep(0.1)
        started = time.time()

        # LAN clients: SUBS subscriptions per leaf; a backbone client.
        lan = []
        received = {"down": 0, "up": 0}

        async def down(msg):
            received["down"] += 1

        async def up(msg):
            received["up"] += 1

        for i, port in enumerate(leaf_ports):
            nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
            for s in range(args.subs):
                await nc.subscribe(f"studio.cap.{i}.{s}", cb=down)
            await nc.flush()
            lan.append(nc)
        backbone = await nats.connect(f"tls://127.0.0.1:{client}", user="app", password=PASSWORD,
                                      tls=__import__("ssl").create_default_context(cafile=cert), allow_reconnect=False)
        await backbone.subscribe("studio.cap.up.>", cb=up)
        await backbone.flush()
        want = args.leaves * args.subs
        deadline = time.time() + 60
        while varz(monitor)["subscriptions"] < want:
            if time.time() > deadline:
                raise SystemExit(f"only {varz(monitor)['subscriptions']} of {want} subscriptions reached the node")
            await asyncio.sleep(0.1)
        settle = time.time() - started
        rss_after_attach = rss_mb(node.pid)

        async def window(rate):
            before, t0 = cpu_seconds(node.pid), time.time()
            sent = 0
            if rate:
                interval = 1.0 / rate
                n = 0
                while time.time() - t0 < args.seconds:
                    for i, nc in enumerate(lan):
                        await backbone.publish(f"studio.cap.{i}.{n % args.subs}", b"x" * 64)
                        await nc.publish(f"studio.cap.up.{i}", b"y" * 64)
                        sent += 1
                    n += 1
                    await asyncio.sleep(max(0.0, t0 + n * interval - time.time()))
                await backbone.flush()
                for nc in lan:
                    await nc.flush()
                await asyncio.sleep(0.5)
            else:
                await asyncio.sleep(args.seconds)
            elapsed = time.time() - t0
            return (cpu_seconds(node.pid) - before) / elapsed * 100.0, elapsed, sent

        idle_cpu, _, _ = await window(0)
        busy_cpu, busy_elapsed, sent = await window(args.rate)
        v = varz(monitor)
        result = {
            "nats_server": subprocess.run([args.nats_server, "--version"], capture_output=True, text=True).stdout.strip(),
            "cpus": os.cpu_count(),
            "leaves": args.leaves,
            "subscriptions_per_leaf": args.subs,
            "node_subscriptions": v["subscriptions"],
            "attach_and_subscribe_s": round(settle, 2),
            "node_rss_mb": round(rss_mb(node.pid), 1),
            "node_rss_mb_after_attach": round(rss_after_attach, 1),
            "idle_cpu_percent_of_one_core": round(idle_cpu, 2),
            "rate_per_leaf_each_way": args.rate,
            "messages_through_node_per_s": round(2 * sent / busy_elapsed),
            "busy_cpu_percent_of_one_core": round(busy_cpu, 2),
            "delivered": {"backbone_to_lan": received["down"], "lan_to_backbone": received["up"], "sent_each_way": sent},
            "window_s": args.seconds,
        }
        print(json.dumps(result))
        for nc in lan:
            await nc.close()
        await backbone.close()
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
