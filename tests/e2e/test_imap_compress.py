#!/usr/bin/env python3
"""End-to-end: IMAP COMPRESS=DEFLATE (RFC 4978) against a real ternd on loopback (issue 10).

What is checked:
- CAPABILITY lists COMPRESS=DEFLATE; COMPRESS before login is refused, an unknown mechanism gets NO,
  a missing argument BAD;
- a raw client: LOGIN, COMPRESS DEFLATE -> OK in the clear, then every byte both ways is raw deflate
  (zlib, wbits -15): the server's bytes do not contain the plain text and inflate to well-formed
  responses (each burst ends in a sync flush, so nothing waits in the server's compressor);
  NOOP, APPEND with a synchronizing literal, SELECT, FETCH BODY[] byte-exact for a 1 MB message
  (output backpressure under the filter), LIST, a second COMPRESS gets NO [COMPRESSIONACTIVE];
- a command compressed in the same packet as COMPRESS itself is answered;
- the same over STARTTLS (the deflate filter on top of TLS) and on the implicit-TLS port;
- Python's imaplib with its socket I/O wrapped in zlib after COMPRESS: SELECT, FETCH, LIST, LOGOUT;
- hostile: decompression bombs: about 300 KB of deflate that inflates to 300 MB without a line end
  is refused, and a 64 MiB APPEND literal sent as about 64 KB of deflate is stored while ternd's
  memory grows by less than 16 MiB while it streams in (an inflate that ignores the filter's bound holds it all); a corrupt deflate stream closes only that connection; ternd keeps
  serving.
"""

import imaplib
import socket
import ssl
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ALICE, PASSWORDS, Daemon, IMAPError, RawIMAP, imap_tagged_ok,  # noqa: E402
                     main_guard, make_message, start_daemon, unique_id)

PASSWORD = PASSWORDS[ALICE]
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))  # imaplib knows no COMPRESS


class DeflateIMAP(RawIMAP):
    """RawIMAP that, after compress(), sends and receives raw deflate (RFC 4978)."""

    deflating = False
    raw_received = b""

    def compress(self):
        tagged, untagged = self.command("COMPRESS DEFLATE")
        if not imap_tagged_ok(tagged):
            raise IMAPError(f"COMPRESS refused: {tagged}")
        if self.buf:
            raise IMAPError(f"uncompressed bytes after the OK of COMPRESS: {self.buf!r}")
        self.start_deflate()
        return tagged

    def start_deflate(self):
        self.deflating = True
        self.z_out = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.z_in = zlib.decompressobj(-15)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.deflating:
            data = self.z_out.compress(data) + self.z_out.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        if self.deflating:
            self.raw_received += chunk[:4096] if len(self.raw_received) < 65536 else b""
            chunk = self.z_in.decompress(chunk)
        self.buf += chunk


class DeflateIMAP4(imaplib.IMAP4):
    """Python's imaplib with its socket reads and writes wrapped in raw deflate after COMPRESS."""

    def compress_deflate(self):
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"COMPRESS: {typ} {data}")
        self._z_out = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._z_in = zlib.decompressobj(-15)
        self._zbuf = b""
        return typ

    def _zfill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort("socket closed")
        self._zbuf += self._z_in.decompress(chunk)

    def read(self, size):
        if not hasattr(self, "_z_in"):
            return super().read(size)
        while len(self._zbuf) < size:
            self._zfill()
        data, self._zbuf = self._zbuf[:size], self._zbuf[size:]
        return data

    def readline(self):
        if not hasattr(self, "_z_in"):
            return super().readline()
        while b"\n" not in self._zbuf:
            self._zfill()
        i = self._zbuf.index(b"\n") + 1
        line, self._zbuf = self._zbuf[:i], self._zbuf[i:]
        return line

    def send(self, data):
        if hasattr(self, "_z_out"):
            data = self._z_out.compress(data) + self._z_out.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)


def deliver(daemon, size_lines=0, subject="compress"):
    body = [f"line {i} " + "x" * 60 for i in range(size_lines)] or ["hello"]
    msg = make_message("sender@remote.test", [ALICE], subject, unique_id("cz"), body_lines=body)
    import smtplib
    with smtplib.SMTP("127.0.0.1", daemon.mx_port, timeout=30) as smtp:
        smtp.sendmail("sender@remote.test", [ALICE], msg)
    return msg


def check_session(checks, s, label):
    """Commands over an established compressed session."""
    tagged, _ = s.command("NOOP")
    checks.check(imap_tagged_ok(tagged), f"{label}: NOOP answered through deflate", tagged)
    checks.check(b"OK" not in s.raw_received and len(s.raw_received) > 0,
                 f"{label}: the server's bytes after COMPRESS are deflated, not plain text",
                 repr(s.raw_received[:80]))
    tagged, untagged = s.command("CAPABILITY")
    checks.check(imap_tagged_ok(tagged) and any(b"COMPRESS=DEFLATE" in u for u in untagged),
                 f"{label}: CAPABILITY through deflate", (tagged, untagged))
    message = b"From: a@b.test\r\nSubject: appended\r\n\r\nbody " + b"y" * 5000 + b"\r\n"
    tag = s.next_tag()
    s.send(f"{tag} APPEND INBOX {{{len(message)}}}\r\n".encode())
    cont = s.response()
    checks.check(cont.startswith(b"+"), f"{label}: APPEND's literal continuation through deflate", cont)
    s.send(message + b"\r\n")
    tagged, _ = s.read_until_tagged(tag)
    checks.check(imap_tagged_ok(tagged), f"{label}: APPEND of a literal through deflate", tagged)
    tagged, untagged = s.command("SELECT INBOX")
    exists = [u for u in untagged if u.endswith(b" EXISTS")]
    checks.check(imap_tagged_ok(tagged) and exists, f"{label}: SELECT INBOX", (tagged, untagged))
    n = int(exists[0].split()[1]) if exists else 1
    tagged, untagged = s.command(f"FETCH {n} BODY.PEEK[]")
    checks.check(imap_tagged_ok(tagged) and untagged and untagged[0].endswith(message + b")"),
                 f"{label}: FETCH BODY[] of the appended message is byte-exact", (tagged, untagged[:1]))
    tagged, untagged = s.command('LIST "" "*"')
    checks.check(imap_tagged_ok(tagged) and len(untagged) >= 5, f"{label}: LIST through deflate",
                 (tagged, untagged))
    tagged, _ = s.command("COMPRESS DEFLATE")
    checks.check(tagged.split(" ")[1:3] == ["NO", "[COMPRESSIONACTIVE]"],
                 f"{label}: a second COMPRESS gets NO [COMPRESSIONACTIVE]", tagged)


def run(checks):
    daemon = Daemon("imap-compress", imap=True, options=["smtp.max_message_size=104857600"])
    with daemon:
        if not start_daemon(checks, daemon):
            return
        big = deliver(daemon, size_lines=16000, subject="big")  # about 1 MB

        # --- refusals and the capability ---
        s = DeflateIMAP(daemon.imap_port)
        tagged, _ = s.command("COMPRESS DEFLATE")
        checks.check(tagged.split(" ")[1] in ("BAD", "NO"), "COMPRESS before login is refused", tagged)
        s.login(ALICE, PASSWORD)
        tagged, untagged = s.command("CAPABILITY")
        checks.check(any(b"COMPRESS=DEFLATE" in u for u in untagged),
                     "CAPABILITY after login lists COMPRESS=DEFLATE", untagged)
        tagged, _ = s.command("COMPRESS FOO")
        checks.check(tagged.split(" ")[1] == "NO", "COMPRESS with an unknown mechanism gets NO", tagged)
        tagged, _ = s.command("COMPRESS")
        checks.check(tagged.split(" ")[1] == "BAD", "COMPRESS without a mechanism gets BAD", tagged)
        tagged, _ = s.command("NOOP")
        checks.check(imap_tagged_ok(tagged), "the session is still uncompressed after the refusals", tagged)
        s.close()

        # --- plain connection ---
        s = DeflateIMAP(daemon.imap_port)
        s.login(ALICE, PASSWORD)
        checks.check(imap_tagged_ok(s.compress()), "COMPRESS DEFLATE answers OK in the clear")
        check_session(checks, s, "plain")
        # A 1 MB FETCH goes through the filter under output backpressure.
        tagged, untagged = s.command("UID SEARCH SUBJECT big")
        uid = untagged[0].split()[-1].decode() if untagged else "1"
        started = time.monotonic()
        tagged, untagged = s.command(f"UID FETCH {uid} BODY.PEEK[]")
        want = big.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        checks.check(imap_tagged_ok(tagged) and untagged and want in untagged[0],
                     f"a 1 MB FETCH BODY[] through deflate is byte-exact "
                     f"({time.monotonic() - started:.1f} s)", (tagged, [u[:200] for u in untagged]))
        tagged, _ = s.command("LOGOUT")
        checks.check(imap_tagged_ok(tagged), "LOGOUT through deflate", tagged)
        s.close()

        # --- a compressed command in the same packet as COMPRESS ---
        s = DeflateIMAP(daemon.imap_port)
        s.login(ALICE, PASSWORD)
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        s.sock.sendall(b"c1 COMPRESS DEFLATE\r\n" + z.compress(b"c2 NOOP\r\n") + z.flush(zlib.Z_SYNC_FLUSH))
        first = s.response()
        ok = first.startswith(b"c1 OK")
        s.start_deflate()
        s.z_out = z
        plain, s.buf = s.buf, b""
        s.buf = s.z_in.decompress(plain)
        tagged = s.read_until_tagged("c2")[0] if ok else ""
        checks.check(ok and imap_tagged_ok(tagged),
                     "a command deflated right behind COMPRESS in one packet is answered", (first, tagged))
        s.close()

        # --- over STARTTLS and implicit TLS ---
        ctx = daemon.client_tls_context()
        s = DeflateIMAP(daemon.imap_port)
        s.starttls(ctx)
        s.login(ALICE, PASSWORD)
        checks.check(imap_tagged_ok(s.compress()), "COMPRESS DEFLATE over STARTTLS answers OK")
        check_session(checks, s, "starttls")
        s.close()
        s = DeflateIMAP(daemon.imaps_port, tls_context=ctx)
        s.login(ALICE, PASSWORD)
        checks.check(imap_tagged_ok(s.compress()), "COMPRESS DEFLATE on the implicit-TLS port answers OK")
        check_session(checks, s, "imaps")
        s.close()

        # --- Python's imaplib ---
        def with_imaplib():
            m = DeflateIMAP4("127.0.0.1", daemon.imap_port)
            m.login(ALICE, PASSWORD)
            checks.check(m.compress_deflate() == "OK", "imaplib: COMPRESS DEFLATE OK")
            typ, data = m.select("INBOX")
            checks.check(typ == "OK" and int(data[0]) >= 2, "imaplib: SELECT INBOX through deflate", data)
            typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
            checks.check(typ == "OK" and data and isinstance(data[0], tuple) and data[0][1].endswith(want),
                         "imaplib: 1 MB UID FETCH BODY.PEEK[] byte-exact through deflate")
            typ, data = m.list()
            checks.check(typ == "OK" and any(b"Trash" in d for d in data), "imaplib: LIST through deflate",
                         data)
            typ, _ = m.logout()
            checks.check(typ == "BYE", "imaplib: LOGOUT through deflate", typ)
        checks.guard("imaplib over COMPRESS=DEFLATE", with_imaplib)

        # --- hostile: a decompression bomb, a corrupt stream ---
        rss_before = daemon.proc_status("VmRSS") or 0
        s = DeflateIMAP(daemon.imap_port)
        s.login(ALICE, PASSWORD)
        s.compress()
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = z.compress(b"a" * (300 << 20)) + z.flush(zlib.Z_SYNC_FLUSH)
        checks.note(f"bomb: {len(bomb)} bytes of deflate for 300 MB without a line end")
        peak = rss_before
        closed = False
        s.settimeout(2)
        try:
            for i in range(0, len(bomb), 16384):
                s.sock.sendall(bomb[i:i + 16384])
                peak = max(peak, daemon.proc_status("VmRSS") or 0)
        except OSError:
            closed = True
        deadline = time.monotonic() + 30
        answer = b""
        while time.monotonic() < deadline:
            peak = max(peak, daemon.proc_status("VmRSS") or 0)
            try:
                s._fill()
                answer = s.buf
                if b"BAD" in answer or b"BYE" in answer:
                    break
            except socket.timeout:
                continue
            except (OSError, ConnectionError, zlib.error):
                closed = True
                break
        checks.check(closed or b"BAD" in answer or b"BYE" in answer,
                     "the bomb's endless line is refused (BAD/BYE or the connection closed)", answer[:200])
        grew = (peak - rss_before) // 1024
        checks.check(grew < 64, f"ternd's memory grew by {grew} MiB (< 64 MiB) while 300 MB were inflated",
                     f"before {rss_before} KiB, peak {peak} KiB")
        s.close()

        # A bomb the session does take: a 64 MiB APPEND literal that deflates to about 64 KB. The
        # session streams it to disk, so only the filter's bound keeps ternd from inflating the
        # whole compressed buffer at once.
        rss_before = daemon.proc_status("VmRSS") or 0
        s = DeflateIMAP(daemon.imap_port)
        s.login(ALICE, PASSWORD)
        s.compress()
        line = b"b" * 998 + b"\r\n"
        literal = b"Subject: bomb\r\n\r\n" + line * (64 << 10)
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = (z.compress(f"b1 APPEND INBOX {{{len(literal)}+}}\r\n".encode()) + z.compress(literal)
                + z.compress(b"\r\n") + z.flush(zlib.Z_SYNC_FLUSH))
        checks.note(f"bomb: {len(bomb)} bytes of deflate for a {len(literal) >> 20} MiB APPEND literal")
        # Memory is sampled while the literal streams in, up to its last 4 KB: once the message is
        # complete, the store's MIME parse of 64 MiB takes memory of its own.
        peak = rss_before
        s.settimeout(60)
        for i in range(0, len(bomb) - 4096, 4096):
            s.sock.sendall(bomb[i:i + 4096])
            peak = max(peak, daemon.proc_status("VmRSS") or 0)
        for _ in range(10):
            time.sleep(0.1)
            peak = max(peak, daemon.proc_status("VmRSS") or 0)
        s.sock.sendall(bomb[i + 4096:])
        tagged = ""
        deadline = time.monotonic() + 120
        s.settimeout(0.2)
        while time.monotonic() < deadline and not tagged:
            try:
                s._fill()
            except socket.timeout:
                continue
            if b"b1 " in s.buf:
                tagged = s.buf.decode(errors="replace")
        checks.check("b1 OK" in tagged, "the 64 MiB APPEND literal through deflate is stored", tagged)
        grew = (peak - rss_before) // 1024
        checks.check(grew < 16, f"ternd's memory grew by {grew} MiB (< 16 MiB) while the literal was inflated",
                     f"before {rss_before} KiB, peak {peak} KiB")
        s.close()

        s = DeflateIMAP(daemon.imap_port)
        s.login(ALICE, PASSWORD)
        s.compress()
        s.settimeout(10)
        s.sock.sendall(b"\xff" * 64 + b"garbage that is not deflate\r\n")
        started = time.monotonic()
        try:
            while True:
                s._fill()
        except socket.timeout:
            closed = False
        except (OSError, ConnectionError, zlib.error):
            closed = True
        checks.check(closed, f"a corrupt deflate stream closes that connection "
                     f"({time.monotonic() - started:.1f} s, not by a timeout)")

        s = RawIMAP(daemon.imap_port)
        tagged, _ = s.login(ALICE, PASSWORD)
        tagged2, _ = s.command("NOOP")
        checks.check(imap_tagged_ok(tagged) and imap_tagged_ok(tagged2) and daemon.alive(),
                     "ternd still serves a new login after the bomb and the corrupt stream", (tagged, tagged2))
        s.close()


if __name__ == "__main__":
    main_guard(run)
