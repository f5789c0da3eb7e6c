#!/usr/bin/env python3
"""End-to-end: IMAP BINARY (RFC 3516) on large parts, against a real ternd on loopback.

What is checked (raw sockets, byte-exact):
- a 3 MB attachment in base64 and a 1 MB quoted-printable part come back decoded byte for byte with
  FETCH BINARY.PEEK[n] (a literal8 ~{n} when the bytes hold a NUL, a plain literal otherwise), their
  BINARY.SIZE is the decoded size, and a partial at the end of the part is the right slice;
- the decoding is streamed: while one client fetches the 3 MB part without reading the answer,
  another session's NOOP is answered at once (the loop is not held by the decoding);
- a message APPENDed as a literal8 with NULs is stored byte for byte.
"""

import base64
import quopri
import random
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ALICE, Daemon, RawIMAP, imap_tagged_ok, main_guard, start_daemon  # noqa: E402


def build(payload, text):
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    qp = quopri.encodestring(text.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    return (b"From: a@example.test\r\nSubject: big binary\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"=b=\"\r\n\r\n"
            b"--=b=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            + qp + b"\r\n"
            b"--=b=\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64 + b"--=b=--\r\n")


def login(d):
    r = RawIMAP(d.imap_port, timeout=60)
    tagged, _ = r.login(ALICE, d.passwords[ALICE])
    assert imap_tagged_ok(tagged), tagged
    return r


def literal_of(line, name):
    """The literal after `name` in a FETCH response (bytes) and whether it was a literal8."""
    i = line.index(name.encode() + b" ")
    rest = line[i + len(name) + 1:]
    lit8 = rest.startswith(b"~")
    if lit8:
        rest = rest[1:]
    n = int(rest[1:rest.index(b"}")])
    start = rest.index(b"}\r\n") + 3
    return rest[start:start + n], lit8


def run(c):
    rng = random.Random(3516)
    payload = bytes(rng.getrandbits(8) for _ in range(3 * 1024 * 1024))
    text = b"".join(("Zeile %d: Gr\u00fc\u00dfe, caf\u00e9 = 100%%   \r\n" % i).encode() for i in range(16000))
    message = build(payload, text)
    with Daemon("binary", imap=True, options=["smtp.max_message_size=20000000"]) as d:
        if not start_daemon(c, d):
            return
        r = login(d)
        tagged, _ = r.command(b"APPEND INBOX {%d+}\r\n" % len(message) + message)
        c.check(imap_tagged_ok(tagged), f"APPEND of a {len(message)}-byte message", tagged)
        r.command("SELECT INBOX")

        _, untagged = r.command("FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2])")
        line = b"".join(untagged)
        c.check(b"BINARY.SIZE[1] %d" % len(text) in line and b"BINARY.SIZE[2] %d" % len(payload) in line,
                f"BINARY.SIZE: {len(text)} (quoted-printable) and {len(payload)} (base64)", line[:200])
        _, untagged = r.command("FETCH 1 (BINARY.PEEK[2])")
        got, lit8 = literal_of(untagged[0], "BINARY[2]")
        c.check(got == payload, "BINARY.PEEK[2]: the 3 MB base64 attachment decoded byte for byte",
                f"{len(got)} bytes")
        c.check(lit8, "... sent as a literal8 (it holds NULs)")
        _, untagged = r.command("FETCH 1 (BINARY.PEEK[1])")
        got, lit8 = literal_of(untagged[0], "BINARY[1]")
        c.check(got == text, "BINARY.PEEK[1]: the quoted-printable part decoded byte for byte",
                f"{len(got)} vs {len(text)} bytes")
        c.check(not lit8, "... sent as a plain literal (no NUL)")
        off = len(payload) - 1000
        _, untagged = r.command(f"FETCH 1 (BINARY.PEEK[2]<{off}.5000>)")
        got, _ = literal_of(untagged[0], f"BINARY[2]<{off}>")
        c.check(got == payload[off:], "a partial past the end gives the last 1,000 bytes", len(got))

        # A client that asks for the big part and does not read: others are served meanwhile.
        slow = login(d)
        slow.command("EXAMINE INBOX")
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.send(b"s1 FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[2] BINARY.PEEK[2])\r\n")
        time.sleep(0.5)
        t0 = time.monotonic()
        tagged, _ = r.command("NOOP")
        took = time.monotonic() - t0
        c.check(imap_tagged_ok(tagged) and took < 2.0,
                f"another session's NOOP is answered while the big part streams ({took:.2f} s)", tagged)
        slow.close()

        body = b"Subject: nul\r\n\r\n\x00\x01binary\x00\r\n"
        tagged, _ = r.command(b"APPEND INBOX ~{%d+}\r\n" % len(body) + body)
        c.check(imap_tagged_ok(tagged), "APPEND of a literal8 with NULs", tagged)
        _, untagged = r.command("FETCH 2 (BINARY.PEEK[])")
        got, lit8 = literal_of(untagged[0], "BINARY[]")
        c.check(got == body and lit8, "it is stored byte for byte (BINARY[] ~{n})", got)
        r.close()
        c.check(d.stop() == 0, "ternd exits 0 on SIGTERM")


if __name__ == "__main__":
    main_guard(run)
