#!/usr/bin/env python3
"""End-to-end: message files are read off the event loop (issue 11, the store reader).

A slow disk is simulated with tests/e2e/slowio.c (an LD_PRELOAD shim built here with cc): while a
flag file exists, every read of a message file (.eml) by ternd sleeps SLOW_MS first, as a read
from a cold page cache on a busy disk would. Nothing else is slowed.

What is checked:
- IMAP: one session FETCHes four 1 MB bodies (HEADER.FIELDS, BODY.PEEK[] and a partial of
  BODY.PEEK[TEXT]) and reads its socket slowly, so the output high-water mark is hit again and again, while a
  second session sends NOOPs: the worst NOOP answer stays under MAX_NOOP_S. Before the reader,
  the loop thread read each 16 KiB chunk itself, refilling 256 KiB at a time (16 reads x SLOW_MS
  = 2.4 s of a frozen loop per refill): the worst NOOP waited about that long. The threshold
  (1.0 s) is generous for a loaded 2-core machine (a NOOP normally takes a millisecond) and still
  well under one stalled refill. The bodies arrive byte for byte, in order, the tagged OK after
  them, and a NOOP pipelined behind the FETCH is answered only after it; then a BINARY.PEEK[]
  (its counting pass and its bytes) of one of them, under the same probe;
- POP3: the same for RETR of a 1 MB message (the second session is IMAP);
- an expunge (with unlink) by another session while a slow FETCH of the message runs: the FETCH
  still sends every byte (the reader opened the file when the response started);
- memory: a client that FETCHes a 20 MB message and never reads grows ternd's RSS by less than
  MAX_GROWTH_KB (the reader reads ahead only while less than the high-water mark is queued); the
  same client then reads it all, byte for byte.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ALICE, BOB, Daemon, RawIMAP, RawPOP3, imap_tagged_ok, main_guard,  # noqa: E402
                     pop3_ok, start_daemon)

SLOW_MS = 150
MAX_NOOP_S = 1.0
MAX_GROWTH_KB = 16 * 1024
HERE = Path(__file__).resolve().parent


def body(n, size):
    """A message of about size bytes: CRLF lines, some starting with '.', one bare LF line."""
    head = (f"From: a@example.test\r\nTo: {ALICE}\r\nSubject: big {n}\r\n"
            f"Message-ID: <big{n}.{os.getpid()}@e2e.test>\r\n\r\n").encode()
    lines = []
    i = 0
    total = len(head)
    while total < size:
        line = (b"." if i % 17 == 0 else b"") + f"message {n} line {i} ".encode() + b"x" * 60
        lines.append(line)
        total += len(line) + 2
        i += 1
    return head + b"\r\n".join(lines) + b"\r\n"


class SlowReading:
    """Reads the socket 16 KiB at a time with a pause in between: a slow client."""

    def _fill(self):
        chunk = self.sock.recv(16384)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk
        time.sleep(0.01)


class SlowIMAP(SlowReading, RawIMAP):
    pass


class SlowPOP3(SlowReading, RawPOP3):
    pass


class NoopProbe(threading.Thread):
    """Sends NOOP on its own IMAP session every 50 ms until stopped; notes the worst wait."""

    def __init__(self, d, user):
        super().__init__(daemon=True)
        self.imap = RawIMAP(d.imap_port, timeout=120)
        tagged, _ = self.imap.login(user, d.passwords[user])
        assert imap_tagged_ok(tagged), tagged
        self.stop = threading.Event()
        self.worst = 0.0
        self.count = 0
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                tagged, _ = self.imap.command("NOOP")
                took = time.monotonic() - t0
                if not imap_tagged_ok(tagged):
                    self.error = tagged
                    return
                self.worst = max(self.worst, took)
                self.count += 1
                time.sleep(0.05)
        except Exception as exc:  # noqa: BLE001
            self.error = repr(exc)


def literals(lines):
    """The literal of each untagged FETCH line (response() keeps it inline after '}\\r\\n')."""
    out = []
    for line in lines:
        i = line.find(b"}\r\n")
        out.append(line[i + 3:line.rfind(b")")] if i >= 0 else None)
    return out


def build_shim(tmp):
    so = Path(tmp) / "slowio.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(so), str(HERE / "slowio.c"), "-ldl"],
                   check=True)
    return so


def imap_fetch_while_probed(c, d, flag, msgs):
    """Four slow FETCHes in one command, a NOOP pipelined behind it, NOOPs from another session."""
    probe = NoopProbe(d, BOB)
    r = SlowIMAP(d.imap_port, timeout=300)
    tagged, _ = r.login(ALICE, d.passwords[ALICE])
    c.check(imap_tagged_ok(tagged), "IMAP login of the slow reader", tagged)
    r.command("SELECT INBOX")
    flag.touch()
    probe.start()
    t0 = time.monotonic()
    r.send(b"f1 FETCH 1:4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[] BODY.PEEK[TEXT]<500.200000>)\r\n"
           b"f2 NOOP\r\n")
    lines = []
    tagged_f1 = tagged_f2 = None
    order = []
    while tagged_f2 is None:
        line = r.response()
        if line.startswith(b"f1 "):
            tagged_f1 = line.decode(errors="replace")
            order.append("f1")
        elif line.startswith(b"f2 "):
            tagged_f2 = line.decode(errors="replace")
            order.append("f2")
        elif line.startswith(b"* ") and b" FETCH " in line[:20]:
            lines.append(line)
            order.append("fetch")
    took = time.monotonic() - t0
    t1 = time.monotonic()
    tagged_f3, untagged = r.command("FETCH 2 BINARY.PEEK[]", tag="f3")
    binary = literals([u for u in untagged if b" FETCH " in u[:20]])
    took_binary = time.monotonic() - t1
    probe.stop.set()
    probe.join(30)
    flag.unlink()
    c.check(imap_tagged_ok(tagged_f3) and binary == [msgs[1]],
            f"FETCH BINARY.PEEK[] of a 1 MB message through the slow disk (counting pass and "
            f"bytes; {took_binary:.1f} s), byte for byte", tagged_f3)
    c.check(imap_tagged_ok(tagged_f1), f"FETCH of four 1 MB messages, 3 body items each, "
            f"through the slow disk ({took:.1f} s)", tagged_f1)
    c.check(order == ["fetch"] * 4 + ["f1", "f2"],
            "the four FETCH responses come in order, then the tagged OK, then the pipelined NOOP",
            order)
    ok = len(lines) == 4
    for n, line in enumerate(lines, start=1):
        want = msgs[n - 1]
        text = want[want.index(b"\r\n\r\n") + 4:]
        parts = []
        rest = line
        for _ in range(3):
            i = rest.find(b"}\r\n")
            size = int(rest[rest.rfind(b"{", 0, i) + 1:i])
            parts.append(rest[i + 3:i + 3 + size])
            rest = rest[i + 3 + size:]
        ok = ok and line.startswith(f"* {n} FETCH".encode()) and \
            parts[0] == f"Subject: big {n}\r\n\r\n".encode() and parts[1] == want and \
            parts[2] == text[500:200500]
    c.check(ok, "every body item is byte for byte the stored message (HEADER.FIELDS; whole; a "
            "partial of TEXT)")
    c.check(probe.error is None and probe.count >= 5,
            f"the other session's NOOPs were answered meanwhile ({probe.count} of them)",
            probe.error)
    c.check(probe.worst < MAX_NOOP_S,
            f"worst NOOP of the other session during the slow FETCHes: {probe.worst * 1000:.0f} ms "
            f"(< {MAX_NOOP_S * 1000:.0f} ms; a loop reading the disk itself stalls "
            f"~{16 * SLOW_MS} ms per refill)", f"worst {probe.worst:.3f} s")
    r.command("LOGOUT")
    probe.imap.command("LOGOUT")


def pop3_retr_while_probed(c, d, flag, msgs):
    probe = NoopProbe(d, BOB)
    p = SlowPOP3(d.pop3_port, timeout=300)
    p.send(f"USER {ALICE}\r\n".encode())
    p.reply()
    p.send(f"PASS {d.passwords[ALICE]}\r\n".encode())
    c.check(pop3_ok(p.reply()), "POP3 login of the slow reader")
    flag.touch()
    probe.start()
    t0 = time.monotonic()
    p.send(b"RETR 1\r\nNOOP\r\n")
    status = p.reply()
    got = p.multi_raw()
    noop = p.reply()
    took = time.monotonic() - t0
    probe.stop.set()
    probe.join(30)
    flag.unlink()
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in got) + b"\r\n"
    c.check(pop3_ok(status) and unstuffed == msgs[0],
            f"POP3 RETR of a 1 MB message through the slow disk, byte for byte ({took:.1f} s)",
            status)
    c.check(pop3_ok(noop), "the NOOP pipelined behind RETR is answered after it", noop)
    c.check(probe.error is None and probe.count >= 3,
            f"the IMAP session's NOOPs were answered meanwhile ({probe.count} of them)",
            probe.error)
    c.check(probe.worst < MAX_NOOP_S,
            f"worst NOOP of the other session during the slow RETR: {probe.worst * 1000:.0f} ms "
            f"(< {MAX_NOOP_S * 1000:.0f} ms)", f"worst {probe.worst:.3f} s")
    p.send(b"QUIT\r\n")
    p.reply()
    probe.imap.command("LOGOUT")


def expunge_during_fetch(c, d, flag, msgs):
    """Message 4 is expunged (and its file unlinked) by another session mid-FETCH."""
    r = SlowIMAP(d.imap_port, timeout=300)
    r.login(ALICE, d.passwords[ALICE])
    r.command("SELECT INBOX")
    other = RawIMAP(d.imap_port, timeout=60)
    other.login(ALICE, d.passwords[ALICE])
    other.command("SELECT INBOX")
    flag.touch()
    r.send(b"x1 FETCH 4 BODY.PEEK[]\r\n")
    time.sleep(0.5)  # the response has started: the file is open, the bytes are coming slowly
    tagged_s, _ = other.command("STORE 4 +FLAGS.SILENT (\\Deleted)")
    tagged_e, _ = other.command("EXPUNGE")
    deadline = time.monotonic() + 5
    while True:  # the committer unlinks after the commit
        files_left = len(list((d.data_dir / "mail").rglob("*.eml")))
        if files_left == len(msgs) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    tagged, untagged = r.read_until_tagged("x1")
    flag.unlink()
    fetched = literals([u for u in untagged if b" FETCH " in u[:20]])
    c.check(imap_tagged_ok(tagged_s) and imap_tagged_ok(tagged_e) and files_left == len(msgs),
            "another session expunged message 4 mid-FETCH and its file was unlinked",
            f"{tagged_s} {tagged_e} files={files_left}")
    c.check(imap_tagged_ok(tagged) and fetched == [msgs[3]],
            "the FETCH begun before the expunge still sends every byte of it", tagged)
    r.command("LOGOUT")
    other.command("LOGOUT")


def unread_big_fetch(c, d, big):
    """A client asks for 20 MB and reads nothing: ternd's RSS stays bounded."""
    r = RawIMAP(d.imap_port, timeout=300)
    r.login(ALICE, d.passwords[ALICE])
    tagged, untagged = r.command("SELECT INBOX")
    exists = [u for u in untagged if u.endswith(b" EXISTS")]
    seq = int(exists[0].split()[1])
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    before = d.proc_status("VmRSS")
    r.send(f"b1 FETCH {seq} BODY.PEEK[]\r\n".encode())
    time.sleep(4)
    after = d.proc_status("VmRSS")
    c.check(before is not None and after is not None and after - before < MAX_GROWTH_KB,
            f"a client not reading a 20 MB FETCH grows ternd's RSS by "
            f"{(after or 0) - (before or 0)} KiB (< {MAX_GROWTH_KB} KiB)")
    tagged, untagged = r.read_until_tagged("b1")
    c.check(imap_tagged_ok(tagged) and literals(untagged) == [big],
            "read later, the 20 MB body arrives byte for byte", tagged)
    r.command("LOGOUT")


def run(c):
    with tempfile.TemporaryDirectory(prefix="tern-slowio-") as tmp:
        so = build_shim(tmp)
        flag = Path(tmp) / "slow"
        os.environ["TERN_SLOWIO_FLAG"] = str(flag)
        os.environ["TERN_SLOWIO_MS"] = str(SLOW_MS)
        with Daemon("io-responsive", imap=True, options=["imap.idle_timeout=600"]) as d:
            os.environ["LD_PRELOAD"] = str(so)  # for ternd serve only
            try:
                started = start_daemon(c, d)
            finally:
                del os.environ["LD_PRELOAD"]
            if not started:
                return
            msgs = [body(n, 1 << 20) for n in range(1, 5)]
            big = body(5, 20 << 20)
            a = RawIMAP(d.imap_port, timeout=120)
            a.login(ALICE, d.passwords[ALICE])
            for m in msgs + [big]:
                tagged, _ = a.command(b"APPEND INBOX {%d+}\r\n" % len(m) + m)
                c.check(imap_tagged_ok(tagged), f"APPEND of a {len(m)}-byte message", tagged)
            a.command("LOGOUT")
            imap_fetch_while_probed(c, d, flag, msgs)
            pop3_retr_while_probed(c, d, flag, msgs)
            expunge_during_fetch(c, d, flag, msgs)
            unread_big_fetch(c, d, big)
            c.check(d.alive(), "ternd is still running")


if __name__ == "__main__":
    main_guard(run)
