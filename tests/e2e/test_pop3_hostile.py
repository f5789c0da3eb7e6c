#!/usr/bin/env python3
"""End-to-end: hostile and out-of-spec POP3 input against a real ternd, over raw sockets (issue 3).

Each case is its own check:
- unknown commands (-ERR, session goes on); commands in the wrong state (every TRANSACTION command before
  login, PASS before USER, USER/PASS/AUTH/STLS after login); bad passwords and unknown users (-ERR [AUTH]),
  malformed SASL (bad base64, "*" cancel, unknown mechanism), APOP (not offered);
- over-long lines: over 512 octets -ERR and the session goes on (exactly 512 is fine), in both states;
- 10 MB without a newline: the connection is closed, memory stays bounded, others are still served;
- NUL and control bytes in a command: -ERR, session goes on;
- RETR/TOP/LIST/UIDL/DELE of a deleted message (-ERR ... already deleted) and of non-existent or malformed
  message numbers (-ERR no such message / -ERR);
- STLS injection: "STLS\\r\\nCAPA\\r\\n" in one packet; the CAPA is not answered inside TLS; STLS inside TLS
  and on POP3S refused; STLS forgets a USER given before it, and is refused after login;
- auth.allow_plaintext=never: no USER/SASL PLAIN in CAPA on plaintext, USER/PASS and AUTH get
  "-ERR [AUTH] ... STLS"; after STLS login works;
- pop3.max_errors: a session that keeps sending bad commands is closed;
- repeated auth failures: delayed (auth.failure_delay=1), then refused with -ERR [SYS/TEMP] even with the
  right password from that address, while other sessions, other users of that address and another
  address (127.0.0.2) are served;
- a client that reads nothing while a 50 MB RETR is streamed to it (small receive buffer): ternd's VmRSS
  stays below 100 MiB and grows by less than 32 MiB, other clients are served meanwhile, and when the client
  finally reads, it gets the whole message;
- idle timeout (pop3.idle_timeout=30, its minimum; run in parallel): the connection is closed after about
  30 s, and a session idle after DELE deletes nothing.
Every socket has a timeout; apart from the idle-timeout wait (run in parallel) the file takes well under 60 s.
"""

import base64
import re
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (ALICE, BOB, Daemon, POP3Error, RawPOP3, SMTPError, deliver_raw, make_message,  # noqa: E402
                     pop3_ok, start_daemon, unique_id)

REMOTE = "sender@remote.test"
CAROL = "carol@example.test"
DAVE = "dave@example.test"
EXTRA_USERS = {CAROL: "carol-Secret-3", DAVE: "dave-Secret-4"}
BIG_SIZE = 50 * 1024 * 1024
ERRORS = (OSError, POP3Error, SMTPError, ssl.SSLError, ValueError)


def safe(s, command=None):
    """A status line, or "<error: ...>" if the connection failed."""
    try:
        return s.cmd(command) if command is not None else s.reply()
    except ERRORS as exc:
        return f"<error: {type(exc).__name__}: {exc}>"


def crlf(data):
    """Every LF not preceded by CR as CRLF: what RETR sends for a stored message."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def is_err(status):
    return isinstance(status, str) and (status == "-ERR" or status.startswith("-ERR "))


def session(d, user=None, tls=False, **kw):
    """A RawPOP3, logged in as user if given (plaintext port on loopback, or POP3S)."""
    port = d.pop3s_port if tls else d.pop3_port
    s = RawPOP3(port, tls_context=d.client_tls_context() if tls else None, **kw)
    if user is not None:
        deadline = time.monotonic() + 5
        while True:
            status = s.login(user, d.passwords[user])
            if pop3_ok(status):
                break
            s.close()
            if "[IN-USE]" not in status or time.monotonic() > deadline:
                raise POP3Error(f"login as {user} failed: {status}")
            time.sleep(0.2)
            s = RawPOP3(port, tls_context=d.client_tls_context() if tls else None, **kw)
    return s


def deliver_small(d, user, count, tag):
    mids = []
    for i in range(count):
        mid = unique_id(f"{tag}-{i}")
        msg = make_message(REMOTE, [user], f"{tag} {i}", mid, body_lines=[f"{tag} message {i}", ".dot", "end"])
        if deliver_raw(d.mx_port, REMOTE, [user], msg) != 250:
            raise RuntimeError(f"delivery of {tag} {i} to {user} failed")
        mids.append(mid)
    for mid in mids:
        if d.find_message(user, mid) is None:
            raise RuntimeError(f"{mid} not stored")
    return mids


# ---- commands, states, auth -------------------------------------------------------------------------
def test_unknown_commands(checks, d):
    with RawPOP3(d.pop3_port) as s:
        checks.check(pop3_ok(s.greeting), "greeting: +OK", s.greeting)
        for line in ("XYZZY", "HELO pop3.e2e.test", "EHLO x", "LIST2", "RETRX 1", ""):
            r = safe(s, line)
            checks.check(is_err(r), f"unknown command {line!r} before login: -ERR", r)
        caps = s.capa()
        checks.check(caps is not None and "UIDL" in caps, "session goes on after unknown commands (CAPA answered)",
                     caps)
    with session(d, DAVE) as s:
        r = safe(s, "XYZZY 1 2")
        checks.check(is_err(r), "unknown command after login: -ERR", r)
        r = safe(s, "NOOP")
        checks.check(pop3_ok(r), "session goes on after an unknown command in TRANSACTION state", r)


def test_wrong_state(checks, d):
    with RawPOP3(d.pop3_port) as s:
        for line in ("STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL", "UIDL 1"):
            r = safe(s, line)
            checks.check(is_err(r), f"{line} before login: -ERR", r)
        r = safe(s, "PASS " + d.passwords[DAVE])
        checks.check(is_err(r), "PASS before USER: -ERR", r)
        r = safe(s, "QUIT")
        checks.check(pop3_ok(r), "QUIT before login: +OK", r)
        checks.check(s.wait_closed(3), "QUIT before login: the server closes the connection")
    with session(d, DAVE) as s:
        for line in (f"USER {DAVE}", f"PASS {d.passwords[DAVE]}", "AUTH PLAIN " +
                     base64.b64encode(b"\0" + DAVE.encode() + b"\0" + d.passwords[DAVE].encode()).decode(),
                     "AUTH LOGIN", "STLS", "APOP dave 0123456789abcdef0123456789abcdef"):
            r = safe(s, line)
            checks.check(is_err(r), f"{line.split()[0]} after login: -ERR", r)
            if r.startswith("+ "):
                safe(s, "*")
        r = safe(s, "STAT")
        checks.check(pop3_ok(r), "session goes on after commands in the wrong state (STAT +OK)", r)
        r = safe(s, "QUIT")
        checks.check(pop3_ok(r), "QUIT after login: +OK", r)


def test_bad_auth(checks, d):
    with RawPOP3(d.pop3_port) as s:
        r = s.login(DAVE, "not-the-password")
        checks.check(r.startswith("-ERR [AUTH]"), "USER/PASS with a wrong password: -ERR [AUTH]", r)
        r = s.login("nobody@example.test", "whatever")
        checks.check(r.startswith("-ERR [AUTH]"), "USER/PASS of an unknown user: -ERR [AUTH] (no enumeration)", r)
        r = safe(s, "AUTH PLAIN !!!not-base64!!!")
        checks.check(is_err(r), "AUTH PLAIN with invalid base64: -ERR", r)
        r = safe(s, "AUTH PLAIN")
        if checks.check(r.startswith("+"), "AUTH PLAIN without initial response: \"+ \" continuation", r):
            r = safe(s, "*")
            checks.check(is_err(r), "AUTH cancelled with \"*\": -ERR", r)
        r = safe(s, "AUTH CRAM-MD5")
        checks.check(is_err(r), "AUTH with an unsupported mechanism: -ERR", r)
        r = safe(s, "AUTH PLAIN " + base64.b64encode(b"\0" + DAVE.encode() + b"\0wrong").decode())
        checks.check(r.startswith("-ERR [AUTH]"), "AUTH PLAIN with a wrong password: -ERR [AUTH]", r)
        r = safe(s, f"APOP {DAVE} 0123456789abcdef0123456789abcdef")
        checks.check(is_err(r), "APOP: -ERR (not offered)", r)
        r = s.login(DAVE, d.passwords[DAVE])
        checks.check(pop3_ok(r), "after all that, the right password logs in on the same connection", r)
        safe(s, "QUIT")


def test_long_lines(checks, d):
    with RawPOP3(d.pop3_port) as s:
        r = safe(s, "USER " + "x" * 600)
        checks.check(is_err(r), "USER line of 607 octets before login: -ERR", r)
        r = safe(s, "CAPA")
        ok = pop3_ok(r)
        if ok:
            s.multi()
        checks.check(ok, "session goes on after an over-long line (CAPA +OK)", r)
        r = safe(s, "NOOP " + "y" * 3000)
        checks.check(is_err(r), "line of 3007 octets: -ERR", r)
        r = s.login(DAVE, d.passwords[DAVE])
        checks.check(pop3_ok(r), "login works after over-long lines", r)
        r = safe(s, "NOOP" + " " * 506)  # 512 octets with CRLF
        checks.check(pop3_ok(r), "command line of exactly 512 octets (with CRLF) is accepted", r)
        r = safe(s, "NOOP" + " " * 507)  # 513
        checks.check(is_err(r), "command line of 513 octets: -ERR", r)
        r = safe(s, "LIST " + "1" * 700)
        checks.check(is_err(r), "over-long LIST line after login: -ERR", r)
        r = safe(s, "STAT")
        checks.check(pop3_ok(r), "session goes on after over-long lines in TRANSACTION state", r)
        safe(s, "QUIT")


def test_nul_bytes(checks, d):
    with RawPOP3(d.pop3_port) as s:
        r = safe(s, b"US\x00ER " + DAVE.encode())
        checks.check(is_err(r), "NUL byte in a verb: -ERR", r)
        r = safe(s, b"USER da\x00ve@example.test")
        checks.check(is_err(r), "NUL byte in USER's argument: -ERR", r)
        r = safe(s, b"CA\x01PA")
        checks.check(is_err(r), "control byte in a command: -ERR", r)
        r = s.login(DAVE, d.passwords[DAVE])
        checks.check(pop3_ok(r), "session goes on after NUL bytes: login +OK", r)
        r = safe(s, b"NO\x00OP")
        checks.check(is_err(r), "NUL byte in a command after login: -ERR", r)
        r = safe(s, b"RETR 1\x00")
        checks.check(is_err(r), "NUL byte after a message number: -ERR", r)
        r = safe(s, "NOOP")
        checks.check(pop3_ok(r), "session goes on after NUL bytes in TRANSACTION state", r)
        safe(s, "QUIT")


def test_message_numbers(checks, d):
    before = sorted(e["uid"] for e in d.mail_list(DAVE))
    with session(d, DAVE) as s:
        stat = safe(s, "STAT")
        count = int(stat.split()[1]) if pop3_ok(stat) else 0
        if not checks.check(count >= 2, "message numbers: dave has messages", stat):
            return
        for line in (f"RETR {count + 1}", "RETR 4294967295", f"TOP {count + 1} 0", f"LIST {count + 1}",
                     f"UIDL {count + 1}", f"DELE {count + 1}"):
            r = safe(s, line)
            checks.check(is_err(r) and "no such message" in r.lower(), f"{line} (non-existent): -ERR no such message",
                         r)
        for line in ("RETR 0", "RETR -1", "RETR +1", "RETR abc", "RETR 99999999999999999999", "RETR",
                     "TOP 1", "TOP 1 -1", "TOP 1 x", "DELE", "LIST 0x1"):
            r = safe(s, line)
            checks.check(is_err(r), f"{line!r} (malformed): -ERR", r)
        r = safe(s, "DELE 1")
        checks.check(pop3_ok(r), "DELE 1: +OK", r)
        for line in ("RETR 1", "TOP 1 0", "LIST 1", "UIDL 1", "DELE 1"):
            r = safe(s, line)
            checks.check(is_err(r), f"{line} of a deleted message: -ERR", r)
            if line == "RETR 1":
                checks.check("deleted" in r.lower(), "RETR of a deleted message: -ERR ... already deleted", r)
        status, lines = s.cmd_multi("LIST")
        checks.check(pop3_ok(status) and lines is not None and not any(l.split()[0] == b"1" for l in lines),
                     "LIST leaves the deleted message out", lines)
        r = safe(s, "RETR 2")
        ok = pop3_ok(r)
        if ok:
            s.multi()
        checks.check(ok, "RETR of another message still works", r)
        checks.check(pop3_ok(safe(s, "RSET")), "RSET: +OK")
        checks.check(pop3_ok(safe(s, "QUIT")), "QUIT: +OK")
    checks.check(sorted(e["uid"] for e in d.mail_list(DAVE)) == before, "DELE + RSET + QUIT deleted nothing")


def test_ten_megabytes_no_newline(checks, d):
    # Log in first: a password check (argon2id) has a large peak of its own, which is not what we measure.
    logged_in = session(d, DAVE, timeout=15)
    time.sleep(0.2)
    hwm_before = d.proc_status("VmHWM")
    rss_before = d.proc_status("VmRSS")
    for state in ("before login", "after login"):
        closed_while_sending = False
        s = logged_in if state == "after login" else RawPOP3(d.pop3_port, timeout=15)
        try:
            chunk = b"A" * 65536
            sent = 0
            try:
                while sent < 10 * 1024 * 1024:
                    s.sock.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                closed_while_sending = True
            closed = closed_while_sending or s.wait_closed(10)
            checks.check(closed, f"10 MB without a newline ({state}): the server closes the connection",
                         f"sent {sent} bytes, connection still open")
        finally:
            s.close()
    checks.check(d.alive(), "10 MB without a newline: the daemon is still running")
    hwm_after = d.proc_status("VmHWM")
    if hwm_before is not None and hwm_after is not None:
        growth = hwm_after - max(hwm_before, rss_before or 0)
        checks.check(growth < 8 * 1024, "10 MB without a newline: peak RSS grew by less than 8 MiB",
                     f"VmHWM {hwm_before} -> {hwm_after} KiB")
    try:
        with session(d, DAVE) as other:
            r = other.cmd("STAT")
            ok = pop3_ok(r)
            other.cmd("QUIT")
    except ERRORS as exc:
        ok, r = False, str(exc)
    checks.check(ok, "10 MB without a newline: another client is served meanwhile", r)


def test_stls_injection(checks, d):
    ctx = d.client_tls_context()
    with RawPOP3(d.pop3_port) as s:
        s.send(b"STLS\r\nCAPA\r\n")
        r = safe(s)
        if not checks.check(pop3_ok(r), "STLS injection: STLS answered +OK", r):
            return
        checks.check(not s.buf, "STLS injection: nothing answered in plaintext after STLS's +OK", s.buf)
        try:
            s.sock = ctx.wrap_socket(s.sock, server_hostname="localhost")
            s.buf = b""
        except (ssl.SSLError, OSError) as exc:
            checks.check(True, f"STLS injection: server refused to go on (handshake ended: {exc})")
            return
        extra = s.pending_data(0.5)
        checks.check(extra == b"", "STLS injection: nothing unsolicited inside TLS (the CAPA was discarded)", extra)
        r = safe(s, "STAT")
        checks.check(is_err(r), "STLS injection: the first answer inside TLS is our STAT's (-ERR, not logged in), "
                     "not the injected CAPA's", r)
        r = safe(s, "STLS")
        checks.check(is_err(r), "STLS inside TLS: -ERR", r)
        r = s.login(DAVE, d.passwords[DAVE])
        checks.check(pop3_ok(r), "after STLS: login +OK", r)
        r = safe(s, "NOOP")
        extra = s.pending_data(0.3)
        checks.check(pop3_ok(r) and not extra, "after STLS: no stray reply inside TLS", f"{r} extra={extra!r}")
        safe(s, "QUIT")
    with RawPOP3(d.pop3s_port, tls_context=ctx) as s:
        r = safe(s, "STLS")
        checks.check(is_err(r), "STLS on POP3S (implicit TLS): -ERR", r)


def test_stls_forgets_state(checks, d):
    """RFC 2595 4: USER and a half-done AUTH from before STLS are gone inside TLS; STLS after login is refused."""
    with session(d) as s:
        r = safe(s, f"USER {DAVE}")
        checks.check(pop3_ok(r), "STLS forgets USER: USER in the clear +OK", r)
        s.stls(d.client_tls_context())
        r = safe(s, f"PASS {d.passwords[DAVE]}")
        checks.check(is_err(r), "STLS forgets USER: PASS inside TLS without a new USER: -ERR", r)
        r = s.login(DAVE, d.passwords[DAVE])
        checks.check(pop3_ok(r), "STLS forgets USER: USER/PASS inside TLS +OK", r)
        safe(s, "QUIT")
    with session(d, user=BOB) as s:
        r = safe(s, "STLS")
        checks.check(is_err(r), "STLS after login (TRANSACTION state): -ERR", r)
        safe(s, "QUIT")


def test_non_reader(checks, d):
    """A 50 MB RETR to a client with a 4 KiB receive buffer that reads nothing."""
    with session(d, CAROL, rcvbuf=4096, timeout=60) as s:
        status, lines = s.cmd_multi("LIST")
        sizes = {int(l.split()[0]): int(l.split()[1]) for l in lines or []}
        big = max(sizes, key=sizes.get) if sizes else None
        status, lines = s.cmd_multi("UIDL")
        uids = {int(l.split()[0]): int(l.split()[1].split(b".")[1]) for l in lines or []}
        if not checks.check(big is not None and sizes[big] > BIG_SIZE, "non-reader: carol has the 50 MB message",
                            sizes):
            return
        # The other client logs in now: a password check (argon2id) has a large memory peak of its own,
        # which must not be mistaken for the RETR's.
        o = session(d, BOB)
        time.sleep(0.3)
        rss_before = d.proc_status("VmRSS") or 0
        s.send(f"RETR {big}\r\n")
        samples = []
        other = {}

        def other_client():
            start = time.monotonic()
            try:
                with RawPOP3(d.pop3_port) as fresh:
                    caps = fresh.capa()
                st, body = o.cmd_multi("RETR 1")
                other["ok"] = caps is not None and pop3_ok(st) and bool(body) and pop3_ok(o.cmd("QUIT"))
            except ERRORS as exc:
                other["ok"] = False
                other["error"] = exc
            finally:
                o.close()
            other["took"] = time.monotonic() - start

        t = None
        start = time.monotonic()
        while time.monotonic() - start < 5.0:
            rss = d.proc_status("VmRSS")
            if rss is not None:
                samples.append(rss)
            if t is None and time.monotonic() - start > 1.0:
                t = threading.Thread(target=other_client)
                t.start()
            time.sleep(0.05)
        t.join(20)
        peak = max(samples) if samples else None
        checks.note(f"non-reader: ternd VmRSS {rss_before} KiB before RETR, peak {peak} KiB over 5 s")
        checks.check(d.alive(), "non-reader: the daemon is still running")
        checks.check(peak is not None and peak < 100 * 1024,
                     "non-reader: ternd VmRSS stays below 100 MiB while 50 MB wait for the client", peak)
        checks.check(peak is not None and peak - rss_before < 32 * 1024,
                     "non-reader: ternd VmRSS grows by less than 32 MiB (the message is not loaded whole)",
                     f"{rss_before} -> {peak} KiB")
        checks.check(other.get("ok") and other.get("took", 99) < 3.0,
                     f"non-reader: meanwhile a new connection gets CAPA and another session RETRs "
                     f"({other.get('took', 0):.2f}s)", other)
        # Now read it all: the whole message arrives, byte-exact.
        peak_read = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak_read.append(d.proc_status("VmRSS") or 0)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            first = s.reply()
            lines = s.multi() if pop3_ok(first) else []
            data = b"".join(l + b"\r\n" for l in lines)
            stored = d.mail_cat(CAROL, uids[big]) if big in uids else b""
            ok = pop3_ok(first) and len(data) == sizes[big] and data == crlf(stored)
            detail = f"{first}; {len(data)} bytes vs LIST {sizes[big]}, stored (CRLF) {len(crlf(stored))}"
        except ERRORS as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        finally:
            stop.set()
            sampler.join()
        checks.check(ok, "non-reader: when it finally reads, the whole 50 MB message arrives (LIST size exact, "
                     "bytes equal to mail cat)", detail)
        checks.check(max(peak_read or [0]) < 100 * 1024, "non-reader: VmRSS below 100 MiB while the message is read",
                     max(peak_read or [0]))
        checks.check(pop3_ok(safe(s, "QUIT")), "non-reader: QUIT +OK after the big RETR")


def deliver_big(d):
    line = b"%08d big message line, some filler to make it about a hundred octets long..........\r\n"
    body = b"".join((b"." if i % 10 == 0 else b"") + line % i for i in range(BIG_SIZE // len(line % 0) + 1000))
    mid = unique_id("big50")
    msg = make_message(REMOTE, [CAROL], "fifty megabytes", mid, body=body)
    if deliver_raw(d.mx_port, REMOTE, [CAROL], msg, timeout=120) != 250:
        raise RuntimeError("50 MB delivery refused")
    if d.find_message(CAROL, mid, timeout=10) is None:
        raise RuntimeError("50 MB message not stored")
    return len(msg)


# ---- allow_plaintext=never, max_errors, idle ----------------------------------------------------------
def test_plaintext_never(checks, d):
    with RawPOP3(d.pop3_port) as s:
        caps = s.capa() or []
        checks.check("USER" not in caps, "allow_plaintext=never: CAPA on plaintext does not list USER", caps)
        checks.check(not any(c.startswith("SASL") and "PLAIN" in c for c in caps),
                     "allow_plaintext=never: CAPA on plaintext lists no SASL PLAIN", caps)
        checks.check("STLS" in caps, "allow_plaintext=never: CAPA on plaintext lists STLS", caps)
        r = s.login(BOB, d.passwords[BOB])
        checks.check(r.startswith("-ERR [AUTH]") and "STLS" in r.upper(),
                     "allow_plaintext=never: USER/PASS on plaintext: -ERR [AUTH] ... STLS", r)
        r = s.auth_plain(BOB, d.passwords[BOB])
        checks.check(r.startswith("-ERR [AUTH]") and "STLS" in r.upper(),
                     "allow_plaintext=never: AUTH PLAIN on plaintext: -ERR [AUTH] ... STLS", r)
        s.stls(d.client_tls_context())
        caps = s.capa() or []
        checks.check("USER" in caps, "allow_plaintext=never: CAPA after STLS lists USER", caps)
        r = s.login(BOB, d.passwords[BOB])
        checks.check(pop3_ok(r), "allow_plaintext=never: USER/PASS after STLS: +OK", r)
        safe(s, "QUIT")


def test_max_errors(checks, d):
    with RawPOP3(d.pop3_port) as s:
        answers = []
        closed = False
        for i in range(15):
            r = safe(s, f"BOGUS{i}")
            if r.startswith("<error"):
                closed = True
                break
            answers.append(r)
        closed = closed or s.wait_closed(3)
        checks.check(closed and 9 <= len(answers) <= 11 and all(is_err(a) for a in answers),
                     "pop3.max_errors=10: the session is closed after about 10 bad commands",
                     f"closed={closed}, {len(answers)} answers: {answers[-3:]}")


class IdleWatcher(threading.Thread):
    """Connects (optionally logs in and DELEs), then says nothing; records what comes and when it closes."""

    def __init__(self, d, login=None):
        super().__init__(daemon=True)
        self.d = d
        self.login = login
        self.lines = []
        self.closed_after = None
        self.error = None
        self.dele = None
        self.greeting = None

    def run(self):
        try:
            if self.login:
                s = session(self.d, self.login, tls=True, timeout=70)
                self.dele = s.cmd("DELE 1")
            else:
                s = RawPOP3(self.d.pop3_port, timeout=70)
                self.greeting = s.greeting
        except Exception as exc:  # noqa: BLE001
            self.error = exc
            return
        start = time.monotonic()
        try:
            while True:
                self.lines.append(s.line())
        except (OSError, ssl.SSLError, ConnectionError):
            self.closed_after = time.monotonic() - start
        except Exception as exc:  # noqa: BLE001
            self.error = exc
        s.close()


def run(checks):
    checks.note("not covered: mail in the Junk mailbox is left out of the maildrop "
                "(nothing can put mail into Junk yet)")
    idle = Daemon("pop3-idle", options=["pop3.idle_timeout=30", "auth.allow_plaintext=never"])
    watchers = []
    idle_mids = []
    try:
        if start_daemon(checks, idle):
            try:
                idle_mids = deliver_small(idle, ALICE, 2, "idle")
            except Exception as exc:  # noqa: BLE001
                checks.check(False, "idle daemon: messages for alice delivered", exc)
            watchers = [IdleWatcher(idle), IdleWatcher(idle, login=ALICE)]
            for w in watchers:
                w.start()
            checks.guard("test_plaintext_never ran", test_plaintext_never, checks, idle)
            checks.guard("test_max_errors ran", test_max_errors, checks, idle)

        options = ["smtp.max_message_size=67108864", "server.max_connections_per_ip=1000", "pop3.max_errors=1000",
                   "auth.failure_delay=0", "auth.max_failures=1000",
                   "auth.max_failures_per_ip=100000"]
        with Daemon("pop3-hostile", options=options, users=EXTRA_USERS) as d:
            if start_daemon(checks, d):
                ok = checks.guard("messages for dave and bob delivered",
                                  lambda: (deliver_small(d, DAVE, 3, "dave"), deliver_small(d, BOB, 1, "bob")))
                big = checks.guard("50 MB message for carol delivered", deliver_big, d)
                checks.check(ok is not None and big is not None, "hostile daemon: test mail delivered over SMTP")
                for test in (test_unknown_commands, test_wrong_state, test_bad_auth, test_long_lines, test_nul_bytes,
                             test_message_numbers, test_stls_injection, test_stls_forgets_state,
                             test_ten_megabytes_no_newline,
                             test_non_reader):
                    checks.guard(f"{test.__name__} ran without an exception", test, checks, d)
                checks.check(d.alive(), "hostile daemon: still running after every hostile case")
                status = d.stop()
                checks.check(status == 0, "hostile daemon: SIGTERM exits 0", f"status {status}\n" + d.stderr_tail())

        checks.guard("test_brute_force ran without an exception", test_brute_force, checks)

        if watchers:
            for w in watchers:
                w.join(60)
            plain, dele = watchers
            checks.check(plain.closed_after is not None and 25.0 <= plain.closed_after <= 45.0,
                         f"idle timeout 30s: a silent client is disconnected after about 30 s ({plain.closed_after})",
                         f"lines {plain.lines} error {plain.error}")
            checks.check(pop3_ok(plain.greeting or "") and len(plain.lines) <= 1 and
                         all(l.startswith(b"-ERR") for l in plain.lines),
                         "idle timeout: nothing but the greeting and an optional -ERR before the close",
                         f"{plain.greeting!r} {plain.lines}")
            checks.check(pop3_ok(dele.dele or "") and dele.closed_after is not None and dele.closed_after <= 45.0,
                         f"idle timeout after DELE: the session is closed ({dele.closed_after})",
                         f"DELE {dele.dele} error {dele.error}")
            mids = {str(e.get("message_id") or "").strip("<>") for e in idle.mail_list(ALICE)}
            checks.check(idle_mids and all(m in mids for m in idle_mids),
                         "idle timeout after DELE: nothing deleted", f"{idle_mids} vs {mids}")
            status = idle.stop()
            checks.check(status == 0, "idle daemon: SIGTERM exits 0", status)
    finally:
        idle.cleanup()


# ---- brute force ------------------------------------------------------------------------------------
def auth_attempt(d, user, password, source="127.0.0.1"):
    """One USER/PASS on a fresh POP3S connection; returns (status, seconds the PASS answer took)."""
    with RawPOP3(d.pop3s_port, tls_context=d.client_tls_context(), source_address=(source, 0), timeout=15) as s:
        r = s.cmd(f"USER {user}")
        start = time.monotonic()
        if pop3_ok(r):
            r = s.cmd(f"PASS {password}")
        took = time.monotonic() - start
        if pop3_ok(r):
            s.cmd("QUIT")
        return r, took


def test_brute_force(checks):
    options = ["auth.max_failures=3", "auth.failure_delay=1", "auth.failure_window=300"]
    with Daemon("pop3-bruteforce", options=options) as d:
        if not start_daemon(checks, d):
            return
        r, took = auth_attempt(d, ALICE, "wrong-1")
        checks.check(r.startswith("-ERR [AUTH]"), "brute force: first wrong password: -ERR [AUTH]", r)
        checks.check(took >= 0.8, f"brute force: the failure answer is delayed (failure_delay=1; took {took:.2f}s)")

        holder = {}
        t = threading.Thread(target=lambda: holder.update(result=auth_attempt(d, ALICE, "wrong-2")))
        t.start()
        time.sleep(0.2)
        start = time.monotonic()
        try:
            with RawPOP3(d.pop3_port, timeout=5) as other:
                caps = other.capa()
            quick = time.monotonic() - start
        except ERRORS as exc:
            caps, quick = str(exc), 99
        t.join(20)
        checks.check(isinstance(caps, list) and quick < 0.7,
                     f"brute force: another session is served during a delayed failure ({quick:.2f}s)", caps)
        r2 = holder.get("result", ("no result", 0))[0]
        checks.check(is_err(r2), "brute force: second wrong password: -ERR", r2)
        r, _ = auth_attempt(d, ALICE, "wrong-3")
        checks.check(is_err(r), "brute force: third wrong password: -ERR", r)

        r, took = auth_attempt(d, ALICE, d.passwords[ALICE])
        checks.check(is_err(r), "brute force: after max_failures the right password is refused", r)
        checks.check(r.startswith("-ERR [SYS/TEMP]"),
                     "brute force: the refusal is temporary: -ERR [SYS/TEMP], not [AUTH] (RFC 3206)", r)
        checks.note(f"brute force: refusal was {r!r} after {took:.2f}s")
        r, _ = auth_attempt(d, BOB, d.passwords[BOB])
        checks.check(pop3_ok(r), "brute force: another user from the same address still logs in (the "
                     "address is throttled per login; auth.max_failures_per_ip is far higher)", r)
        try:
            r, _ = auth_attempt(d, BOB, d.passwords[BOB], source="127.0.0.2")
            checks.check(pop3_ok(r), "brute force: a client from another address (127.0.0.2) still logs in", r)
        except OSError as exc:
            checks.note(f"skip: cannot connect from 127.0.0.2 ({exc})")
        checks.check(d.alive(), "brute force: the daemon is still running")
        status = d.stop()
        checks.check(status == 0, "brute-force daemon: SIGTERM exits 0", status)


if __name__ == "__main__":
    harness.main_guard(run)
