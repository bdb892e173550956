#!/usr/bin/env python3
"""Protocol-4 test vectors computed by kinopio-hub 3.0.0's own functions.

Writes tests/vectors/p4/{names,canonical,records,headers,reports}.json, which the Rust unit tests of
`kinopio::wire::p4` check byte for byte. Run it with the interpreter of a virtualenv that has
`kinopio-hub==3.0.0` (scripts/install-deps.sh creates `.venv-hub3`):

    .venv-hub3/bin/python scripts/interop/p4_vectors.py            # regenerate
    .venv-hub3/bin/python scripts/interop/p4_vectors.py --check    # fail if the files differ

Every input is JSON text or a plain string, so the Rust side feeds exactly the same bytes.
Deterministic: the random floats come from a fixed seed.
"""
import hashlib
import importlib.metadata
import json
import math
import os
import random
import struct
import sys

from kinopio_hub import _protocol as p
from kinopio_hub import _messaging as m

EXPECTED_VERSION = "3.0.0"
OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "vectors", "p4"))


def code_of(fn, *args):
    """Returns ("ok", result) or ("error", code); other exceptions become their type name."""
    try:
        return "ok", fn(*args)
    except p.KinopioError as error:
        return "error", error.code
    except (TypeError, ValueError, OverflowError) as error:  # js_stringify's own failures
        return "error", type(error).__name__


def names():
    ns = "workshop"
    plain = ["workshop", "battery", "电池", "😀", "_sys", "a", "a.b", "x" * 128, "é" * 64, "\u00e9",
             "e\u0301", "space name", "tab\tname", "nul\x00", "del\x7f", "", "x" * 129, "é" * 65,
             "*", ">", "a.*", "\u2028", "\uffff", "sensor.>", "queue.名前", "\x1f", " "]
    out = {"name": [], "record": [], "control": [], "message": [], "queue": []}
    for name in plain:
        status, result = code_of(p.token, name)
        out["name"].append({"input": name, "token": result} if status == "ok" else {"input": name, "error": result})
        status, result = code_of(p.key, ns, name)
        out["record"].append({"namespace": ns, "name": name, "subject": result} if status == "ok"
                             else {"namespace": ns, "name": name, "error": result})
        status, result = code_of(m.queue_name, ns, name)
        out["queue"].append({"namespace": ns, "queue": name, "subject": result} if status == "ok"
                            else {"namespace": ns, "queue": name, "error": result})
    for namespace in ["workshop", "电池", "a.b"]:
        out["control"].append({"namespace": namespace, "prefix": p.prefix(namespace)})
    topics = ["sensor.temperature", "sensor.temp", "a", "a.b.c", "电池.电压", "sensor.*", "sensor.>", "*", ">",
              "*.x", ">.x", "a.>.b", "a..b", ".a", "a.", "a*", "a>", "*a", "a.b*", "x" * 128, "x" * 129,
              "a.\x01", "a.\x7f", "a b.c", "", "é." * 42 + "é", "a.**", "a.>>"]
    for topic in topics:
        for pattern in (False, True):
            status, result = code_of(m.subject, ns, topic, pattern)
            row = {"namespace": ns, "topic": topic, "pattern": pattern}
            row.update({"subject": result} if status == "ok" else {"error": result})
            out["message"].append(row)
    return out


def canonical():
    texts = [
        "null", "true", "false", "0", "-0", "-0.0", "1", "1.0", "0.1", "1e20", "1e21", "1e-6", "1e-7",
        "5e-324", "1.7976931348623157e308", "9007199254740991", "9007199254740992", "-9007199254740991",
        "-9007199254740992", "18446744073709551616", "1e300", "1.5e300", "123456789012345678901234567890",
        "1e400", "-1e400", "1E2", "1e+2", "2.5E-3", "0.30000000000000004", "100", "1234.5678", "-0.000001234",
        "4.35", "0.000001", "0.0000001", "123e-20", "1e-323", "2.2250738585072014e-308",
        '"\\u00e9\\ud83d\\ude00\\u2028/\\"\\\\\\n\\u007f\\u0000"', '"\\u001f\\b\\f\\r\\t"', '"plain"', '""',
        '"\\ud800"', '"\\udc00x"',
        "[]", "{}", "[1,2.0,-0.0,[[]]]",
        '{"b":1,"a":2,"10":3,"2":4,"01":5,"-1":6,"4294967295":7,"4294967294":8}',
        '{"b":1,"a":2,"10":3,"2":4,"é":5,"😀":6,"\\uffff":7}',
        '{"0":0,"00":1,"9999999999":2,"4294967296":3,"1.5":4,"":5,"Z":6,"a":7,"A":8}',
        '{"a":1,"a":2,"b":3}', '{"b":{"d":1,"c":[{"z":0,"y":1}]},"a":null}',
        ' \t\n\r{"x" : [ 1 , 2 ] }\n',
        "NaN", "Infinity", "-Infinity", "01", "+1", ".5", "1.", "[1,]", '{"a":1,}', "", " ", "tru", '"a',
        '"tab\there"', "[1] x", '{"a"}', "\"\\x\"", "-", "1e", "[" * 32 + "1" + "]" * 32,
        "[" * 33 + "1" + "]" * 33, "[" * 33 + "]" * 33, "[" * 34 + "]" * 34,
        '{"a":' * 33 + "{}" + "}" * 33, '{"a":' * 34 + "{}" + "}" * 34,
    ]
    # Large inputs, stored as (prefix, unit, times, suffix) and their outputs as SHA-256 digests
    # so the checked-in file stays small; the Rust side rebuilds the same bytes.
    large = [("[0", ",0", 19998, "]"), ("[0", ",0", 19999, "]"), ("[0", ",0", 20000, "]"), ('"', "x", 65534, '"'), ('"', "x", 65535, '"'),
             ('["', "é", 32766, '"]'), ('["', "é", 32767, '"]'), ('"', "x", 1024 * 1024 - 2, '"'),
             ('"', "x", 1024 * 1024 - 1, '"'), ("", "[", 40, "")]
    rng = random.Random(4)
    for _ in range(300):
        bits = rng.getrandbits(64)
        value = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if math.isfinite(value):
            texts.append(repr(value))
    for _ in range(100):
        texts.append(repr(rng.uniform(-1e6, 1e6)))
        texts.append(repr(rng.randint(-(2 ** 53), 2 ** 53)))
        texts.append(repr(rng.random() * 10 ** rng.randint(-30, 30)))
    rows = []
    for text in texts + large:
        if isinstance(text, tuple):
            row = {"input_parts": list(text)}
            text = text[0] + text[1] * text[2] + text[3]
        else:
            row = {"input": text}
        status, decoded = code_of(p.decode, text.encode("utf-8"))
        if status == "error":
            row["decode_error"] = decoded
            rows.append(row)
            continue
        for field, fn in (("stringify", p.encode), ("value_of", lambda v: p.encode(p.value_of(v)))):
            status, result = code_of(fn, decoded)
            if status == "error":
                row[field + "_error"] = result
            elif "input_parts" in row:
                row[field + "_sha256"] = hashlib.sha256(result).hexdigest()
            else:
                row[field] = result.decode("utf-8")
        rows.append(row)
    return rows


def records():
    texts = [
        '{"name":"battery","version":{"counter":"7","writer":"w-1"},"deleted":false,"value":{"b":1,"a":[1.0,-0.0]}}',
        '{"name":"battery","version":{"counter":"8","writer":"w-1"},"deleted":true,"value":5}',
        '{"name":"battery","version":{"counter":"8","writer":"w-1"},"deleted":true}',
        '{"value":null,"deleted":false,"version":{"writer":"w","counter":"1","x":1},"name":"n","extra":1}',
        '{"name":"n","version":{"counter":"1","writer":"w"},"value":3}',
        '{"name":"n","version":{"counter":"1","writer":"w"}}',
        '{"name":"n","version":{"counter":"1","writer":"w"},"deleted":false}',
        '{"name":"n","version":{"counter":"1","writer":"w"},"deleted":"false","value":1}',
        '{"name":"n","version":{"counter":"1","writer":"w"},"deleted":null,"value":1}',
        '{"name":"n","version":{"counter":"1","writer":"w"},"value":1,"scope":"s"}',
        '{"name":"","version":{"counter":"1","writer":"w"},"value":1}',
        '{"name":7,"version":{"counter":"1","writer":"w"},"value":1}',
        '{"name":"n","version":{"counter":"0","writer":"w"},"value":1}',
        '{"name":"n","version":{"counter":"01","writer":"w"},"value":1}',
        '{"name":"n","version":{"counter":1,"writer":"w"},"value":1}',
        '{"name":"n","version":{"counter":"' + "9" * 40 + '","writer":"w"},"value":1}',
        '{"name":"n","version":{"counter":"1' + "0" * 40 + '","writer":"w"},"value":1}',
        '{"name":"n","version":{"counter":"1","writer":""},"value":1}',
        '{"name":"n","version":{"counter":"1","writer":"a.b"},"value":1}',
        '{"name":"n","version":{"counter":"1","writer":"' + "w" * 128 + '"},"value":1}',
        '{"name":"n","version":{"counter":"1","writer":"' + "w" * 129 + '"},"value":1}',
        '{"name":"n","version":{"counter":"1"},"value":1}',
        '{"name":"n","value":1}',
        '{"name":"n","version":{"counter":"1","writer":"w"},"value":1e300}',
        '{"name":"n","version":{"counter":"1","writer":"w"},"value":"' + "x" * 65535 + '"}',
        '[1]', '"x"', 'null',
    ]
    rows = []
    for text in texts:
        row = {"input": text}
        status, result = code_of(lambda t: p.encode(p.record_of(p.decode(t.encode()))).decode(), text)
        row["encoded" if status == "ok" else "error"] = result
        rows.append(row)
    order = [("1", "a"), ("1", "b"), ("2", "a"), ("9", "z"), ("10", "a"), ("10", "A"), ("10", "-"), ("10", "_"),
             ("99", "w"), ("100", "w"), ("9" * 40, "w"), ("1" + "0" * 39, "w"), ("9" * 39, "w")]
    comparisons = []
    for a in order:
        for b in order:
            va, vb = {"counter": a[0], "writer": a[1]}, {"counter": b[0], "writer": b[1]}
            comparisons.append({"a": list(a), "b": list(b), "compare": p.compare(va, vb)})
    return {"records": rows, "compare": comparisons}


def headers():
    cases = [
        [["X-Trace", "op-42"], ["X-Tag", "device"], ["X-Tag", "status"]],
        [["A", "  padded  "]], [["a", " "]], [["a", ""]], [["Content-Type", "application/json"]],
        [["!#$%&'*+.^_`|~09AZaz-", "v"]], [["Bad Name", "v"]], [["", "v"]], [["a:b", "v"]], [["é", "v"]],
        [["a", "tab\there"]], [["a", "new\nline"]], [["a", "é"]], [["a", "\x7f"]], [["a", "~ visible !"]],
        [["h%d" % i, "v"] for i in range(32)], [["h%d" % i, "v"] for i in range(33)],
        [["a", "x" * 4080]], [["a", "x" * 4079]], [["a", "x" * 4078 + "  "]],
        [["a", "x" * 2000], ["b", "y" * 2000], ["c", "z" * 100]],
        [], [["a", "\tx"]], [["MiXeD", "Value With Inner  Spaces "]],
    ]
    rows = []
    for entries in cases:
        def normalise(e):
            return [list(kv) for kv in m.Headers((k.lower(), v.strip(" ")) for k, v in m.Headers(e).items()).items()]

        def received(e):
            h = m.Headers(e)
            return [list(kv) for kv in h.items()], h.byte_size

        row = {"input": entries}
        status, result = code_of(normalise, entries)
        row["outbound" if status == "ok" else "outbound_error"] = result
        status, result = code_of(received, entries)
        if status == "ok":
            row["inbound"], row["byte_size"] = result
        else:
            row["inbound_error"] = result
        rows.append(row)
    return rows


def reports():
    """Health reports (§7.2): what `Instances.receive` keeps (decode, interval, status_of) or
    the error code it raises, for a report arriving on `...health.<instance>` in `namespace`;
    plus `safe_error`'s message rules."""
    ns = "workshop"
    inst = "i-1"

    def report(fields, interval="5000", instance=inst, namespace=ns):
        return '{"status":{"instanceId":"%s","namespace":"%s"%s},"interval":%s}' % (instance, namespace, fields, interval)

    # A report exactly as kinopio builds it (src/wire/p4/report.rs, tests::sample()).
    kinopio = ('{"status":{"instanceId":"2b7e1516-28ae-4d2a-a6d2-ab15f7158809","namespace":"workshop","sdk":"rust",'
               '"version":"0.1.0","runtime":"rust/tokio","uptimeMs":1234,"connection":"connected","messaging":'
               '{"phase":"active","pendingRequests":0,"pendingMessages":1,"pendingBytes":2,"inFlightHandlers":0,'
               '"droppedMessages":0,"nativeDroppedMessages":0},"server":"nats://127.0.0.1:4222","rttMs":0.25,'
               '"lastSwitchReason":"available-server","pendingVariables":0,"pendingBytes":0,"variables":3,'
               '"subscriptions":1,"reconnects":0,"sentMessages":10,"receivedMessages":20,"sentBytes":300,'
               '"receivedBytes":400,"health":"ok","currentError":null,"lastError":{"code":"TIMEOUT","message":"late",'
               '"at":1700000000000}},"interval":5000}')
    python_like = report(',"sdk":"python","version":"3.0.0","runtime":"python/3.11.7","uptimeMs":15,"connection":"connected",'
                         '"mesh":{"role":"disabled","leaderId":null,"members":0,"reason":"initializing","upstreamConnected":null},'
                         '"messaging":{"phase":"active","pendingRequests":0,"pendingMessages":0,"pendingBytes":0,'
                         '"inFlightHandlers":0,"droppedMessages":0,"nativeDroppedMessages":0},"server":"nats://127.0.0.1:14222",'
                         '"rttMs":0.9530290000157038,"lastSwitchReason":"available-server","pendingVariables":0,"pendingBytes":0,'
                         '"variables":0,"subscriptions":0,"reconnects":0,"sentMessages":1,"receivedMessages":0,"sentBytes":53,'
                         '"receivedBytes":0,"health":"ok","currentError":null,"lastError":null')
    cases = [
        (kinopio, "2b7e1516-28ae-4d2a-a6d2-ab15f7158809", ns),
        (kinopio, "someone-else", ns),
        (kinopio, "2b7e1516-28ae-4d2a-a6d2-ab15f7158809", "other"),
        (python_like, inst, ns),
        (report(""), inst, ns), (report("", "1"), inst, ns), (report("", "2147483647"), inst, ns),
        (report("", "0"), inst, ns), (report("", "-5"), inst, ns), (report("", "2147483648"), inst, ns),
        (report("", "1.5"), inst, ns), (report("", '"5000"'), inst, ns), (report("", "true"), inst, ns),
        (report("", "null"), inst, ns), ('{"status":{"instanceId":"i-1","namespace":"workshop"}}', inst, ns),
        ("", inst, ns), ("{", inst, ns), ("null", inst, ns), ("[]", inst, ns), ("{}", inst, ns), ("garbage", inst, ns),
        ('{"interval":5000}', inst, ns), ('{"status":null,"interval":5000}', inst, ns),
        ('{"status":[],"interval":5000}', inst, ns), ('{"status":"x","interval":5000}', inst, ns),
        (report(',"name":"robot"'), inst, ns), (report(',"name":null'), inst, ns),
        (report(""), "i-2", ns), (report("", instance="i-2"), inst, ns), (report(""), inst, "other"),
        (report("", namespace="电池"), inst, "电池"), (report("", instance="a.b"), "a.b", ns),
        (report("", instance="x" * 128), "x" * 128, ns), (report("", instance="x" * 129), "x" * 129, ns),
        ('{"status":{"instanceId":7,"namespace":"workshop"},"interval":5000}', "7", ns),
        (report(',"extra":{"deep":[1,2]},"zeta":1,"alpha":2'), inst, ns),
        (report(',"uptimeMs":0'), inst, ns), (report(',"uptimeMs":-1'), inst, ns), (report(',"uptimeMs":1.5'), inst, ns),
        (report(',"uptimeMs":-0.0'), inst, ns), (report(',"uptimeMs":true'), inst, ns), (report(',"uptimeMs":null'), inst, ns),
        (report(',"uptimeMs":"1"'), inst, ns), (report(',"sentBytes":9007199254740991'), inst, ns),
        (report(',"sentBytes":9007199254740992'), inst, ns), (report(',"receivedBytes":1e300'), inst, ns),
        (report(',"rttMs":null'), inst, ns), (report(',"rttMs":0.5'), inst, ns), (report(',"rttMs":-0.5'), inst, ns),
        (report(',"rttMs":"1"'), inst, ns), (report(',"sdk":"rust","version":"1","runtime":"r"'), inst, ns),
        (report(',"sdk":1'), inst, ns), (report(',"sdk":null'), inst, ns), (report(',"server":null,"lastSwitchReason":null'), inst, ns),
        (report(',"server":5'), inst, ns), (report(',"lastSwitchReason":false'), inst, ns),
        (report(',"connection":"starting"'), inst, ns), (report(',"connection":"closed"'), inst, ns),
        (report(',"connection":"online"'), inst, ns), (report(',"connection":null'), inst, ns),
        (report(',"health":"warning"'), inst, ns), (report(',"health":"bad"'), inst, ns),
        (report(',"currentError":null,"lastError":null'), inst, ns),
        (report(',"currentError":{"code":"X","message":"m","at":1,"extra":{"b":1,"a":2}}'), inst, ns),
        (report(',"currentError":{"code":"X","message":"m","at":-1.5}'), inst, ns),
        (report(',"currentError":{"code":"X","message":"m"}'), inst, ns),
        (report(',"currentError":{"code":1,"message":"m","at":1}'), inst, ns),
        (report(',"lastError":{"code":"X","message":"m","at":true}'), inst, ns),
        (report(',"lastError":"boom"'), inst, ns),
        (report(',"messaging":{"phase":"active"}'), inst, ns),
        (report(',"messaging":{"phase":"handoff","pendingBytes":null,"limits":{"a":1},"subscriptions":3,"droppedMessages":2}'), inst, ns),
        (report(',"messaging":{}'), inst, ns), (report(',"messaging":{"phase":"busy"}'), inst, ns),
        (report(',"messaging":{"phase":"active","pendingRequests":-1}'), inst, ns),
        (report(',"messaging":{"phase":"active","pendingRequests":"1"}'), inst, ns),
        (report(',"messaging":[]'), inst, ns),
        (report(',"mesh":{"role":"leader","leaderId":"abc","members":3,"reason":"elected","upstreamConnected":true}'), inst, ns),
        (report(',"mesh":{"role":"disabled","members":0,"reason":"initializing"}'), inst, ns),
        (report(',"mesh":{"role":"disabled","members":0.0,"reason":"r"}'), inst, ns),
        (report(',"mesh":{"role":"disabled","members":1.5,"reason":"r"}'), inst, ns),
        (report(',"mesh":{"role":"disabled","members":-1,"reason":"r"}'), inst, ns),
        (report(',"mesh":{"role":"disabled","members":9007199254740992,"reason":"r"}'), inst, ns),
        (report(',"mesh":{"role":"king","members":0,"reason":"r"}'), inst, ns),
        (report(',"mesh":{"role":"leader","members":0}'), inst, ns),
        (report(',"mesh":{"role":"leader","members":0,"reason":"%s"}' % ("é" * 240)), inst, ns),
        (report(',"mesh":{"role":"leader","members":0,"reason":"%s"}' % ("é" * 241)), inst, ns),
        (report(',"mesh":{"role":"leader","leaderId":"%s","members":0,"reason":"r"}' % ("x" * 128)), inst, ns),
        (report(',"mesh":{"role":"leader","leaderId":"%s","members":0,"reason":"r"}' % ("x" * 129)), inst, ns),
        (report(',"mesh":{"role":"leader","leaderId":5,"members":0,"reason":"r"}'), inst, ns),
        (report(',"mesh":{"role":"leader","members":0,"reason":"r","upstreamConnected":1}'), inst, ns),
        (report(',"pad":"%s"' % ("x" * 1980)), inst, ns), (report(',"pad":"%s"' % ("x" * 1990)), inst, ns),
        (report(',"pad":"%s"' % ("é" * 990)), inst, ns), (report(',"pad":"%s"' % ("é" * 1000)), inst, ns),
        (report(',"deep":' + "[" * 31 + "]" * 31), inst, ns), (report(',"deep":' + "[" * 32 + "]" * 32), inst, ns),
        (report(',"n":1e400'), inst, ns), (report(',"n":NaN'), inst, ns),
    ]
    rows = []
    for text, instance, namespace in cases:
        def receive(t=text, i=instance, n=namespace):
            decoded = p.decode(t.encode("utf-8"))
            interval = decoded.get("interval") if isinstance(decoded, dict) else None
            if type(interval) is not int or not 1 <= interval <= 2147483647:
                raise p.KinopioError("INVALID_REPORT", "Invalid report interval")
            return p.encode(p.status_of(decoded.get("status"), i, n)).decode("utf-8"), interval

        row = {"input": text, "instance": instance, "namespace": namespace}
        status, result = code_of(receive)
        if status == "ok":
            row["status"], row["interval"] = result
        else:
            row["error"] = result
        rows.append(row)
    messages = ["connect to nats://user:pw@10.0.0.1:4222 failed", "a wss://h:443/x,tls://y\tb ws:// c",
                "nats://", "xnats://a", "ttls://b c", "nats://a\x1cb", "nats://a\u00a0b", "nats://a\u2028b",
                "NATS://upper", "é" * 300, "x" * 235 + " nats://long.example:4222", "plain"]
    errors = [{"input": m, "message": p.safe_error(Exception(m))["message"]} for m in messages]
    return {"reports": rows, "error_messages": errors}


def main():
    version = importlib.metadata.version("kinopio-hub")
    if version != EXPECTED_VERSION:
        sys.exit(f"p4_vectors.py: kinopio-hub {version} is installed, vectors need {EXPECTED_VERSION}")
    check = "--check" in sys.argv[1:]
    files = {"names": names(), "canonical": canonical(), "records": records(), "headers": headers(), "reports": reports()}
    os.makedirs(OUT, exist_ok=True)
    stale = []
    for stem, data in files.items():
        text = json.dumps({"generator": f"scripts/interop/p4_vectors.py (kinopio-hub {version})", "vectors": data},
                          ensure_ascii=True, indent=1) + "\n"
        path = os.path.join(OUT, stem + ".json")
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if stale:
        sys.exit("p4_vectors.py: checked-in vectors differ from kinopio-hub " + version + ": " + ", ".join(stale))
    print(f"p4_vectors.py: {'checked' if check else 'wrote'} {len(files)} files in {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
