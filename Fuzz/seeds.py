#!/usr/bin/env python3
"""Writes the hand-made seeds of Fuzz/corpus/<target>/ (seed-*): valid and nearly valid inputs
taken from the tests and PROTOCOL.md, in each fuzz target's input format (Fuzz/README.md).

Run from anywhere: python3 Fuzz/seeds.py. Inputs the fuzzers found (crashers kept as regression
inputs, named after what they found) live beside the seeds and are not touched.
"""
import hashlib
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.join(ROOT, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data)


def deflate(data, wbits=15):
    """A permessage-deflate message body: raw deflate, sync-flushed, tail 00 00 ff ff removed."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# control: one text frame, also read as an HTTP publish body
control = {
    "subscribe": '{"op":"subscribe","topic":"sensors/+/temp","id":1}',
    "subscribe-history": '{"op":"subscribe","topic":"a/#","history":0,"id":"s1"}',
    "subscribe-since": '{"op":"subscribe","topic":"#","since":42,"epoch":"e1","id":7}',
    "unsubscribe": '{"op":"unsubscribe","topic":"sensors/#"}',
    "publish": '{"op":"publish","topic":"demo/x","data":{"n":1},"id":42}',
    "publish-retain": '{"op":"publish","topic":"sensors/a/temp","data":21.5,"retain":true}',
    "publish-nested": '{"op":"publish","topic":"a","data":[1,-2.5e3,true,false,null,"x",{"k":[{}]}]}',
    "publish-escapes": '{"op":"publish","topic":"caf\\u00e9/\\ud83d\\ude00","data":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000"}',
    "publish-utf8": '{"op":"publish","topic":"caf\u00e9/\u6e29\u5ea6","data":"\U0001f600"}',
    "publish-reserved": '{"op":"publish","topic":"$sys/x","data":1}',
    "ping": '{"op":"ping","id":"p"}',
    "ping-ws": ' \t\r\n{ "op" : "ping" , "id" : 1e5 } \n',
    "unknown-op": '{"op":"frobnicate","id":[1]}',
    "not-object": '[1,2,3]',
    "bad-id": '{"id":{},"op":"ping"}',
    "batch": '[{"topic":"a","data":1},{"topic":"b/c","data":{"x":"y"},"retain":true}]',
    "string": '"h\\u00e9llo \\ud83d\\ude00 w\\u00f6rld"',
    "number": '-0.0e-10',
    "deep": '[' * 40 + ']' * 40,
    "lone-surrogate": '{"op":"publish","topic":"\\ud800","data":"\\udc00"}',
}
for name, text in control.items():
    write("control", name, text)


# binary: a client's binary publish (kind 0x01) or a broker's binary message (kind 0x02)
def publish(topic, payload, retain=False, ack=None):
    topic = topic.encode()
    flags = (1 if retain else 0) | (2 if ack is not None else 0)
    out = struct.pack(">BBH", 1, flags, len(topic)) + topic
    if ack is not None:
        out += struct.pack(">I", ack)
    return out + payload


def message(topic, payload, offset=None, replay=False):
    topic = topic.encode()
    flags = (1 if offset is not None else 0) | (2 if replay else 0)
    out = struct.pack(">BBH", 2, flags, len(topic)) + topic
    if offset is not None:
        out += struct.pack(">Q", offset)
    return out + payload


write("binary", "publish", publish("demo/bin", b"\x00\x01\x02\xff"))
write("binary", "publish-retain-ack", publish("sensors/a", b"payload", retain=True, ack=7))
write("binary", "publish-empty", publish("a", b""))
write("binary", "publish-utf8", publish("caf\u00e9", b"x", ack=4294967295))
write("binary", "publish-reserved", publish("$sys/a", b"x"))
write("binary", "publish-wildcard", publish("a/+", b"x"))
write("binary", "publish-short", b"\x01\x02\x00\x05ab")
write("binary", "message", message("a/b", b"data", offset=12, replay=True))

# frames: agreement byte, limit byte, then frames (header, length, payload)
def frame(opcode, payload, fin=True, rsv1=False):
    header = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if len(payload) >= 255:
        return bytes([header, 255]) + struct.pack(">H", len(payload)) + payload
    return bytes([header, len(payload)]) + payload


text = b'{"op":"publish","topic":"a","data":"' + b"x" * 300 + b'"}'
write("frames", "text", b"\x00\x10" + frame(1, b'{"op":"ping"}'))
write("frames", "fragments", b"\x00\x10" + frame(1, b'{"op":', fin=False) + frame(9, b"ping") + frame(0, b'"ping"}'))
write("frames", "binary-utf8-split", b"\x00\x10" + frame(1, "caf\u00e9".encode()[:4], fin=False) + frame(0, "caf\u00e9".encode()[4:]))
write("frames", "close", b"\x00\x01" + frame(8, struct.pack(">H", 1000) + b"bye"))
write("frames", "compressed", b"\x08\x10" + frame(1, deflate(text), rsv1=True))
compressed = deflate(text)
write("frames", "compressed-fragments", b"\x08\x10" + frame(1, compressed[:10], fin=False, rsv1=True) + frame(0, compressed[10:]))
write("frames", "compressed-window9", b"\x02\x10" + frame(2, deflate(b"\x00" * 2000, 9), rsv1=True))
write("frames", "bomb", b"\x08\x01" + frame(2, deflate(b"\x00" * 60000), rsv1=True))
write("frames", "final-block", b"\x08\x10" + frame(1, zlib.compressobj(6, zlib.DEFLATED, -15).compress(b"hi") + zlib.compressobj(6, zlib.DEFLATED, -15).flush(), rsv1=True))
write("frames", "too-big", b"\x00\x00" + frame(2, b"x" * 100))

# extensions: Sec-WebSocket-Extensions header lines, one per line
extensions = {
    "plain": "permessage-deflate",
    "browser": "permessage-deflate; client_max_window_bits",
    "full": "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
    "quoted": 'permessage-deflate; client_max_window_bits="15"',
    "fallback": "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9\nx-webkit-deflate-frame",
    "unknown-param": "permessage-deflate; foo=bar, permessage-deflate",
    "repeated": "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
    "escapes": 'foo; bar="a\\"b", permessage-deflate;client_max_window_bits=12',
}
for name, text in extensions.items():
    write("extensions", name, text)

# topics: split byte, filters (one per line), then the name
def topics(filters, name):
    head = "\n".join(filters).encode()
    return bytes([len(head) % 256]) + head + name.encode() if len(head) < 256 else None


for i, (filters, name) in enumerate([
    (["sensors/+/temp", "sensors/#", "#"], "sensors/a/temp"),
    (["+/+", "a//b", "a/+/b"], "a//b"),
    (["#", "+/x"], "$sys/x"),
    (["$sys/#"], "$sys/stats"),
    (["caf\u00e9/#", "cafe\u0301/#"], "cafe\u0301/x"),
    (["a/#"], "a"),
    (["+"], ""),
    (["a/b#", "a/#/b", "+a"], "a/b"),
]):
    write("topics", "case%d" % i, topics(filters, name))

# http: options byte, then the raw bytes of one connection
def http(options, text):
    return bytes([options]) + (text.encode() if isinstance(text, str) else text)


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
upgrade = ("GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % KEY)


def masked(opcode, payload, fin=True, rsv1=False, key=b"\x01\x02\x03\x04"):
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if len(payload) < 126:
        head = bytes([first, 0x80 | len(payload)])
    else:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", len(payload))
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


body = b'{"n":1}'
write("http", "healthz", http(0, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /readyz HTTP/1.1\r\n\r\n"))
write("http", "publish", http(0, "POST /api/publish?topic=a%2Fb&retain=true HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n" + body.decode()))
write("http", "publish-binary", http(0x30, "POST /api/publish?topic=bin HTTP/1.1\r\nContent-Length: 4\r\n\r\n\x00\x01\x02\x03"))
batch = '[{"topic":"a","data":1},{"topic":"b","data":"x","retain":true}]'
write("http", "batch", http(0, "POST /api/publish/batch HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(batch), batch)))
write("http", "chunked", http(0, "POST /api/publish HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{\"to\r\n1a\r\npic\":\"a\",\"data\":[1,2,3]}]\r\n0\r\n\r\n"))
write("http", "retained", http(0, "GET /api/retained?topic=%23&since=0&limit=10 HTTP/1.1\r\n\r\nDELETE /api/retained?topic=a/%2B HTTP/1.1\r\n\r\nGET /api/stats HTTP/1.1\r\n\r\n"))
write("http", "api-key", http(1, "GET /metrics HTTP/1.1\r\nX-API-Key: key\r\n\r\nGET /api/stats HTTP/1.1\r\nAuthorization: Bearer key\r\n\r\nGET /api/stats HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n"))
write("http", "methods", http(0, "PUT /healthz HTTP/1.1\r\n\r\nGET /nowhere HTTP/1.0\r\n\r\nGET /ws HTTP/1.1\r\n\r\n"))
write("http", "too-large", http(0, "POST /api/publish?topic=a HTTP/1.1\r\nContent-Length: 999999\r\n\r\nxx"))
write("http", "garbage", http(0, "GE T / HTTP/9.9\r\n\r\n"))
frames = (masked(1, b'{"op":"subscribe","topic":"a/#","id":1}') + masked(1, b'{"op":"publish","topic":"a/b","data":1,"retain":true,"id":2}')
          + masked(2, publish("a/c", b"bin", ack=3)) + masked(9, b"hi") + masked(1, b'{"op":"ping"}') + masked(8, struct.pack(">H", 1000)))
write("http", "upgrade", http(0, upgrade.encode() + b"\r\n" + frames))
write("http", "upgrade-deflate", http(0, (upgrade + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n").encode()
                                      + masked(1, deflate(b'{"op":"subscribe","topic":"#"}'), rsv1=True)
                                      + masked(1, deflate(b'{"op":"publish","topic":"x","data":"' + b"y" * 200 + b'"}'), rsv1=True)))
write("http", "upgrade-token", http(2, upgrade.replace("GET /ws", "GET /ws?token=token") + "\r\n"))
write("http", "upgrade-echo", http(4, upgrade.replace("GET /ws", "GET /echo").encode() + b"\r\n" + masked(1, b"echo", fin=False) + masked(0, b" me")))
write("http", "upgrade-split", http(0x50, upgrade.encode() + b"\r\n" + frames))

# settings: source byte (0 YAML, 1 TOML, 2 flags, 3 environment), then the text
yaml = """# broker
host: 0.0.0.0
port: 9000
data-dir: /var/lib/broker
max-message-bytes: 2MiB
durability: full
retain:
  max-messages: 5
  max-age: 3600
  override:
    - logs/#=100,60
    - "a/#=1"
log:
  level: debug
  format: json
metrics:
  enabled: true
  interval: 2.5
ping-interval: 30s
"""
toml = """# broker
port = 9000
host = "0.0.0.0"   # every interface
durability = 'full'

[retain]
max-messages = 5
override = ["logs/#=10,60", "a/#=1"]

[log]
format = "json"
level = "debug"
"""
write("settings", "yaml", b"\x00" + yaml.encode())
write("settings", "yaml-bad", b"\x00port: [1, 2]\nretain:\n  max-mesages: 3\nnope: {a: 1}\ntls:\n  certificate: /x\n")
write("settings", "yaml-anchors", b"\x00a: &x 1\nport: *x\nhost: !!str 127.0.0.1\nmax-message-bytes: ~\n")
write("settings", "toml", b"\x01" + toml.encode())
write("settings", "toml-bad", b"\x01port = 1\n[retain]\nmax-mesages = 3\n[nope]\nx = 1\n[log]\nlevel = 3\nhost = \"unterminated\n[[array]]\n")
write("settings", "flags", b"\x02--port\n9000\n--metrics-enabled\n--retain-override=logs/#=100,60\n--retain-override\na/#=1\n--ping-interval=1.5\n--max-message-bytes=64KiB\n")
write("settings", "environment", b"\x03BROKER_PORT=9000\nBROKER_RETAIN_OVERRIDE=logs/#=100,60 a/#=1\nBROKER_PONG_TIMEOUT=10s\nBROKER_LOG_FORMAT=json\nBROKER_RETAIN_MAX_AGE=1e3\n")

total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
print("corpus: %d bytes" % total)
