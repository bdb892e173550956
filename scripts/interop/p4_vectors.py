#!/usr/bin/env python3
"""Protocol-4 test vectors computed by kinopio-hub 3.0.0's own functions.

Writes tests/vectors/p4/{names,canonical,records,headers}.json, which the Rust unit tests of
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


def main():
    version = importlib.metadata.version("kinopio-hub")
    if version != EXPECTED_VERSION:
        sys.exit(f"p4_vectors.py: kinopio-hub {version} is installed, vectors need {EXPECTED_VERSION}")
    check = "--check" in sys.argv[1:]
    files = {"names": names(), "canonical": canonical(), "records": records(), "headers": headers()}
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
