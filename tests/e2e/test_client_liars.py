#!/usr/bin/env python3
"""End-to-end: the `tern` client against servers that lie (issue 4, Tests).

Fake SMTP and POP3 servers written here (threads on 127.0.0.1, ephemeral ports), one per scenario:
- a malformed greeting: SMTP "HELLO\\r\\n", POP3 "hi\\r\\n";
- a truncated multi-line response: SMTP EHLO "250-a\\r\\n" then close; POP3 RETR "+OK" and part of the
  body, then close without the terminating ".";
- a response injected after STARTTLS: SMTP "220 ready\\r\\n250 injected\\r\\n" in one send; POP3
  "+OK\\r\\n+OK injected\\r\\n" after STLS (the client must not start TLS, NO STARTTLS paper);
- a 1 GB line: 64 KiB chunks of "A" without a newline until the client disconnects or 1 GB is sent (as the
  SMTP greeting, as the POP3 greeting, inside a POP3 RETR body).
For each: `tern send` / `tern fetch` exits 1 (not a crash, not 0) within a time bound, prints a clear error on
stderr that names the problem, its peak memory (under /usr/bin/time -v, else VmHWM polled) stays under
100 MB, and the local store is unchanged (`tern list --json` identical, the same .eml files, nothing left
in TERN_HOME/tmp). The store holds one imported message beforehand so "unchanged" means something.
"""

import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import client_helpers as ch  # noqa: E402
from client_helpers import Tern, mentions  # noqa: E402

GB = 1 << 30
CHUNK = b"A" * 65536
MAX_RSS_KB = 100 * 1024
TIME_BOUND = 25.0

GREETING_WORDS = ("greeting", "malformed", "invalid", "unexpected", "protocol", "not a valid", "bad response",
                  "bad reply", "garbage")
TRUNCATED_WORDS = ("closed", "eof", "end of", "truncat", "unexpected", "disconnect", "incomplete", "reset",
                   "before the end", "premature")
INJECT_WORDS = ("inject", "after", "pipelin", "plaintext", "buffered", "extra", "unexpected", "unsolicited",
                "pending")
LONG_WORDS = ("too long", "line", "exceed", "limit", "too large", "too big", "oversize")


class FakeServer:
    """Accepts connections on 127.0.0.1 and runs handler(sock, state) for each in its own thread."""

    def __init__(self, name, handler, tls_context=None):
        self.name = name
        self.handler = handler
        self.tls_context = tls_context
        self.state = {"connections": 0, "tls_attempted": False, "sent": 0, "errors": []}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.threads = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.state["connections"] += 1
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, conn):
        conn.settimeout(20)
        try:
            self.handler(self, conn)
        except (OSError, ssl.SSLError) as exc:
            self.state["errors"].append(f"{type(exc).__name__}: {exc}")
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)

    # ---- helpers for handlers ----------------------------------------------------------------
    @staticmethod
    def read_line(conn, buf):
        """(line without CRLF, rest) or (None, buf) at EOF."""
        while b"\n" not in buf:
            try:
                chunk = conn.recv(65536)
            except (socket.timeout, OSError):
                return None, buf
            if not chunk:
                return None, buf
            buf += chunk
            if len(buf) > 1 << 20:
                return None, buf
        line, buf = buf.split(b"\n", 1)
        return line.rstrip(b"\r"), buf

    @staticmethod
    def drain(conn, seconds=10):
        """Reads until the client closes (or seconds pass)."""
        conn.settimeout(seconds)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def flood(self, conn, prefix):
        """prefix, then 64 KiB chunks of A without a newline until the client goes away or 1 GB is sent."""
        conn.settimeout(15)
        conn.sendall(prefix)
        self.state["lie_told"] = True
        sent = 0
        try:
            while sent < GB and not self.stopping.is_set():
                conn.sendall(CHUNK)
                sent += len(CHUNK)
                self.state["sent"] = sent
        except OSError:
            pass
        self.state["sent"] = sent

    def starttls_probe(self, conn):
        """After an injected reply: did the client start a TLS handshake? If it did, finish it (a vulnerable
        client then talks to us over TLS) and return the TLS socket; else None."""
        conn.settimeout(10)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except OSError:
            return None
        if first[:1] != b"\x16":
            self.state["after_starttls"] = first
            return None
        self.state["tls_attempted"] = True
        try:
            return self.tls_context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.state["errors"].append(f"handshake: {exc}")
            return None


# ---- SMTP liars ---------------------------------------------------------------------------------
def smtp_session(srv, conn, buf=b"", greet=True):
    """A permissive SMTP server: accepts everything."""
    if greet:
        conn.sendall(b"220 fake.test ESMTP\r\n")
    while True:
        line, buf = srv.read_line(conn, buf)
        if line is None:
            return
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            conn.sendall(b"250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
        elif verb == b"AUTH":
            conn.sendall(b"235 2.7.0 ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 go\r\n")
            while True:
                line, buf = srv.read_line(conn, buf)
                if line is None or line == b".":
                    break
            srv.state["delivered"] = srv.state.get("delivered", 0) + 1
            conn.sendall(b"250 2.0.0 queued\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        else:
            conn.sendall(b"250 ok\r\n")


def smtp_bad_greeting(srv, conn):
    conn.sendall(b"HELLO\r\n")
    srv.state["lie_told"] = True
    srv.drain(conn)


def smtp_truncated_ehlo(srv, conn):
    conn.sendall(b"220 fake.test ESMTP\r\n")
    line, _ = srv.read_line(conn, b"")
    srv.state["first_command"] = line
    conn.sendall(b"250-a\r\n")
    srv.state["lie_told"] = line is not None and line[:4].upper() in (b"EHLO", b"HELO")
    conn.shutdown(socket.SHUT_RDWR)


def smtp_starttls_inject(srv, conn):
    conn.sendall(b"220 fake.test ESMTP\r\n")
    buf = b""
    while True:
        line, buf = srv.read_line(conn, buf)
        if line is None:
            return
        verb = line[:8].upper()
        if verb.startswith(b"EHLO") or verb.startswith(b"HELO"):
            conn.sendall(b"250-fake.test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")
        elif verb.startswith(b"STARTTLS"):
            conn.sendall(b"220 ready\r\n250 injected\r\n")
            srv.state["lie_told"] = True
            tls = srv.starttls_probe(conn)
            if tls is not None:
                smtp_session(srv, tls, greet=False)
            else:
                srv.drain(conn)
            return
        else:
            conn.sendall(b"530 5.7.0 STARTTLS first\r\n")


def smtp_flood_greeting(srv, conn):
    srv.flood(conn, b"220 ")


# ---- POP3 liars ----------------------------------------------------------------------------------
MESSAGE = (b"From: <liar@fake.test>\r\nTo: <victim@example.test>\r\nSubject: from a liar\r\n"
           b"Message-ID: <liar@fake.test>\r\n\r\n" + b"".join(b"body line %03d\r\n" % i for i in range(200)))


def pop3_session(srv, conn, buf=b"", greet=True, capa=(b"UIDL", b"USER", b"TOP"), on_retr=None, on_stls=None):
    """A small POP3 server with one message; hooks replace RETR and STLS."""
    if greet:
        conn.sendall(b"+OK fake POP3 ready\r\n")
    while True:
        line, buf = srv.read_line(conn, buf)
        if line is None:
            return
        parts = line.split()
        verb = parts[0].upper() if parts else b""
        if verb == b"CAPA":
            conn.sendall(b"+OK\r\n" + b"".join(c + b"\r\n" for c in capa) + b".\r\n")
        elif verb in (b"USER", b"PASS", b"NOOP", b"RSET", b"DELE"):
            conn.sendall(b"+OK\r\n")
        elif verb == b"AUTH":
            conn.sendall(b"+OK logged in\r\n")
        elif verb == b"STAT":
            conn.sendall(b"+OK 1 %d\r\n" % len(MESSAGE))
        elif verb == b"LIST":
            conn.sendall(b"+OK 1 %d\r\n" % len(MESSAGE) if len(parts) > 1
                         else b"+OK\r\n1 %d\r\n.\r\n" % len(MESSAGE))
        elif verb == b"UIDL":
            conn.sendall(b"+OK 1 liar-uid-1\r\n" if len(parts) > 1 else b"+OK\r\n1 liar-uid-1\r\n.\r\n")
        elif verb == b"RETR" or verb == b"TOP":
            if on_retr is not None and verb == b"RETR":
                on_retr(srv, conn)
                return
            conn.sendall(b"+OK\r\n" + MESSAGE + b".\r\n")
        elif verb == b"STLS" and on_stls is not None:
            on_stls(srv, conn)
            return
        elif verb == b"QUIT":
            conn.sendall(b"+OK bye\r\n")
            return
        else:
            conn.sendall(b"-ERR unknown\r\n")


def pop3_bad_greeting(srv, conn):
    conn.sendall(b"hi\r\n")
    srv.state["lie_told"] = True
    srv.drain(conn)


def pop3_truncated_retr(srv, conn):
    def retr(srv, conn):
        conn.sendall(b"+OK %d octets\r\n" % len(MESSAGE) + MESSAGE[:len(MESSAGE) // 2])
        srv.state["lie_told"] = True
        conn.shutdown(socket.SHUT_RDWR)
    pop3_session(srv, conn, on_retr=retr)


def pop3_stls_inject(srv, conn):
    def stls(srv, conn):
        conn.sendall(b"+OK\r\n+OK injected\r\n")
        srv.state["lie_told"] = True
        tls = srv.starttls_probe(conn)
        if tls is not None:
            pop3_session(srv, tls, greet=False)
        else:
            srv.drain(conn)
    pop3_session(srv, conn, capa=(b"STLS", b"UIDL", b"USER", b"TOP"), on_stls=stls)


def pop3_flood_greeting(srv, conn):
    srv.flood(conn, b"+OK ")


def pop3_flood_retr(srv, conn):
    def retr(srv, conn):
        srv.flood(conn, b"+OK\r\nSubject: long\r\n\r\n")
    pop3_session(srv, conn, on_retr=retr)


SCENARIOS = [
    # name, protocol, handler, words, needs TLS (STARTTLS account)
    ("SMTP malformed greeting", "smtp", smtp_bad_greeting, GREETING_WORDS + ("HELLO",), False),
    ("SMTP truncated EHLO reply", "smtp", smtp_truncated_ehlo, TRUNCATED_WORDS, False),
    ("SMTP reply injected after STARTTLS", "smtp", smtp_starttls_inject, INJECT_WORDS, True),
    ("SMTP 1 GB greeting line", "smtp", smtp_flood_greeting, LONG_WORDS, False),
    ("POP3 malformed greeting", "pop3", pop3_bad_greeting, GREETING_WORDS + ("'hi'", '"hi"', ": hi"), False),
    ("POP3 truncated RETR", "pop3", pop3_truncated_retr, TRUNCATED_WORDS, False),
    ("POP3 reply injected after STLS", "pop3", pop3_stls_inject, INJECT_WORDS, True),
    ("POP3 1 GB greeting line", "pop3", pop3_flood_greeting, LONG_WORDS, False),
    ("POP3 1 GB line inside RETR", "pop3", pop3_flood_retr, LONG_WORDS + ("size",), False),
]


def snapshot(t):
    r = t.run(["list", "--json"])
    try:
        listing = ch.parse_messages(r.stdout) if r.rc == 0 else None
    except ValueError:
        listing = None
    files = {str(p.relative_to(t.home)): p.stat().st_size for p in t.eml_files()}
    return listing, files


def run_scenario(checks, t, tmp, index, scenario, cert, ctx, before, dead_port):
    name, proto, handler, words, tls = scenario
    srv = FakeServer(name, handler, tls_context=ctx)
    account = f"liar{index}"
    try:
        host = "localhost" if tls else "127.0.0.1"
        security = "starttls" if tls else "none"
        args = ["--user", "victim", f"--{proto}", f"{host}:{srv.port}", f"--{proto}-security", security]
        other = "pop3" if proto == "smtp" else "smtp"
        args += [f"--{other}", f"127.0.0.1:{dead_port}"]
        if tls:
            args += ["--ca-file", cert]
        r = t.account_add(account, "victim@example.test", "victim-pw", extra=args)
        if not checks.check(r.rc == 0, f"{name}: account add", r.detail()):
            return
        if proto == "smtp":
            r = t.run(["send", "--account", account, "--to", "someone@fake.test", "--subject", "to a liar",
                       "--text", "-"], input_bytes=b"this must not be stored or sent\n", timeout=90, measure=True)
        else:
            r = t.run(["fetch", "--account", account, "--keep"], timeout=90, measure=True)
        checks.check(r.rc == 1, f"{name}: exit status 1", r.detail())
        if not checks.check(srv.state["connections"] >= 1 and srv.state.get("lie_told"),
                            f"{name}: tern got as far as the lie", srv.state):
            return
        checks.note(f"{name}: tern said: {r.stderr.strip()[:300]}")
        checks.check(r.stderr.strip() and mentions(r.stderr, words),
                     f"{name}: a clear error on stderr naming the problem", r.detail())
        checks.check(not r.timed_out and r.elapsed < TIME_BOUND, f"{name}: fails within {TIME_BOUND:.0f}s",
                     f"{r.elapsed:.1f}s")
        if r.maxrss_kb is None:
            checks.check(False, f"{name}: peak memory measured", "no /usr/bin/time and no VmHWM sample")
        else:
            checks.check(r.maxrss_kb < MAX_RSS_KB, f"{name}: peak memory under 100 MB ({r.maxrss_kb} KiB)",
                         f"{r.maxrss_kb} KiB")
        if tls:
            checks.check(not srv.state["tls_attempted"],
                         f"{name}: no TLS handshake after the injected reply", srv.state)
        if "sent" in srv.state and srv.state["sent"]:
            checks.note(f"{name}: the server had sent {srv.state['sent'] >> 20} MiB when the client left")
        checks.check(not srv.state.get("delivered"), f"{name}: nothing delivered through the liar", srv.state)
        after = snapshot(t)
        checks.check(after == before, f"{name}: the local store is unchanged (list --json and .eml files)",
                     f"before {before}\nafter {after}")
        left = t.tmp_files()
        checks.check(not left, f"{name}: nothing left in TERN_HOME/tmp", [str(p) for p in left])
    finally:
        srv.stop()


def run(checks):
    if not ch.tern_built(checks):
        return
    checks.note("peak memory via " + (ch.TIME_BIN + " -v" if os.access(ch.TIME_BIN, os.X_OK)
                                      else "polling VmHWM (install the Debian package time for /usr/bin/time)"))
    tmp = Path(tempfile.mkdtemp(prefix="tern-client-liars-"))
    try:
        cert, key = ch.make_cert(tmp / "tls")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        t = Tern(tmp, "home")
        seed = tmp / "seed.eml"
        seed.write_bytes(b"From: Seed <seed@example.test>\r\nTo: <victim@example.test>\r\nSubject: seed message\r\n"
                         b"Date: Mon, 24 Nov 2025 12:00:00 +0000\r\nMessage-ID: <seed@e2e.test>\r\n\r\nseed body\r\n")
        r = t.run(["import", seed])
        checks.check(r.rc == 0, "import a seed message", r.detail())
        before = snapshot(t)
        checks.check(before[0] is not None and len(before[0]) == 1 and len(before[1]) == 1,
                     "the local store holds the seed message (list --json, one .eml file)", before)
        dead_port = harness.free_ports(1)[0]
        for i, scenario in enumerate(SCENARIOS):
            checks.guard(f"{scenario[0]}: scenario ran to the end", run_scenario, checks, t, tmp, i, scenario,
                         str(cert), ctx, before, dead_port)
    finally:
        if os.environ.get("TERN_E2E_KEEP") == "1":
            checks.note(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.main_guard(run)
