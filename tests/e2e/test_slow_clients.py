#!/usr/bin/env python3
"""End-to-end: slow clients and a slow server against a real ternd (issue 10, section 4).

Deadlines that trickling bytes do not push back (server.command_timeout=3,
server.tls_handshake_timeout=3 here; idle timeouts stay long):
- a command line sent one byte a second is cut off after about 3 s, with the protocol's timeout
  reply, on SMTP, POP3, IMAP and push; so is an IMAP LOGIN literal before login;
- a TLS handshake sent one byte a second is dropped after about 3 s: implicit TLS (SMTPS, POP3S,
  IMAPS, push) and after STARTTLS (SMTP, IMAP);
- what must go on: a client silent between commands for longer than the deadline, a slow SMTP DATA,
  IMAP IDLE longer than the deadline, an IMAP APPEND literal streamed slowly for longer than the
  deadline (a literal that keeps coming is not a stalled command line).
A slow server (smtp.idle_timeout=5): another process holds the database's write lock for 8 s
while a message commits (as `sqlite3 tern.db` or a backup would): the client gets 250, never
421, and the message is stored exactly once; the same after STARTTLS (the socket under the TLS
filter keeps no timers of its own). A push client after STARTTLS and login stays connected through
9 s of silence (push.idle_timeout=5); silent before login after STARTTLS it is told goodbye.
Pre-auth memory: 400 unauthenticated IMAP connections each holding an unfinished LOGIN (15 LITERAL+
literals of 60 KB, one {1000000+} literal, a 60 KB line) grow ternd's RSS by less than 40 MiB, and
after they close RSS is back within 20 MiB; after login big literals still work.
Pre-auth clients that never read their replies: 400 connections each pipelining 20000 NOOPs (CAPA
for POP3; after EHLO for SMTP) on IMAP, POP3, SMTP and push grow RSS by less than 15 MiB each time,
and a normal client is served meanwhile.
"""

import base64
import socket
import sqlite3
import ssl
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (ALICE, Daemon, RawIMAP, RawPOP3, RawSMTP, free_ports, make_message,  # noqa: E402
                     start_daemon, unique_id, dot_stuff)

DEADLINE = 3
TRICKLE_FOR = 25  # seconds a trickler keeps going if nobody stops it
LATEST = 14       # the deadline plus a generous margin for a loaded machine


def client_hello(hostname="localhost"):
    """The bytes of a real TLS ClientHello (from Python's ssl on memory BIOs)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Trickler(threading.Thread):
    """Sends data one byte a second on sock (after prelude), and notes when the server hangs up
    and what it said last."""

    def __init__(self, label, sock, data, interval=1.0):
        super().__init__(daemon=True)
        self.label, self.sock, self.data, self.interval = label, sock, data, interval
        self.closed_after = None
        self.received = b""
        self.error = None

    def run(self):
        start = time.monotonic()
        self.sock.settimeout(self.interval)
        i = 0
        try:
            while time.monotonic() - start < TRICKLE_FOR:
                if i < len(self.data):
                    try:
                        self.sock.send(self.data[i:i + 1])
                    except OSError:
                        self.closed_after = time.monotonic() - start
                        return
                    i += 1
                try:
                    chunk = self.sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    self.closed_after = time.monotonic() - start
                    return
                if not chunk:
                    self.closed_after = time.monotonic() - start
                    return
                self.received += chunk
        except Exception as exc:  # noqa: BLE001
            self.error = exc
        finally:
            self.sock.close()


def raw_after_banner(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    banner = b""
    while b"\r\n" not in banner:
        chunk = sock.recv(4096)
        if not chunk:
            break
        banner += chunk
    return sock


def slow_line_cases(d, push_plain):
    cases = []
    # A command line that never ends: one byte a second, far longer than the deadline.
    cases.append(("SMTP command line", raw_after_banner(d.mx_port), b"EHLO " + b"x" * 60, b"421 4.4.2"))
    cases.append(("POP3 command line", raw_after_banner(d.pop3_port), b"USER " + b"x" * 60, b"-ERR"))
    cases.append(("IMAP command line", raw_after_banner(d.imap_port), b"a1 LOGIN " + b"x" * 60, b"* BYE"))
    cases.append(("push command line", raw_after_banner(push_plain), b"AUTH PLAIN " + b"x" * 60, b"-ERR"))
    # Before login an IMAP literal is part of the command: a LOGIN literal trickled in is cut off.
    sock = raw_after_banner(d.imap_port)
    sock.sendall(b"a1 LOGIN {200+}\r\n")
    cases.append(("IMAP pre-auth LOGIN literal", sock, b"x" * 60, b"* BYE"))
    # A line begun after a whole command: the deadline starts at its first byte.
    sock = raw_after_banner(d.mx_port)
    sock.sendall(b"NOOP\r\n")
    cases.append(("SMTP line after a command", sock, b"MAIL FROM:<" + b"x" * 60, b"421 4.4.2"))
    return cases


def slow_tls_cases(d, push_tls):
    hello = client_hello()
    cases = []
    for label, port in (("SMTPS", d.submissions_port), ("POP3S", d.pop3s_port), ("IMAPS", d.imaps_port),
                        ("push TLS", push_tls)):
        cases.append((f"{label} handshake", socket.create_connection(("127.0.0.1", port), timeout=10), hello, None))
    s = RawSMTP(d.submission_port)
    s.ehlo()
    code, _ = s.cmd("STARTTLS")
    cases.append(("SMTP STARTTLS handshake" if code == 220 else f"SMTP STARTTLS refused {code}", s.sock, hello, None))
    i = RawIMAP(d.imap_port)
    tagged, _ = i.command("STARTTLS")
    cases.append(("IMAP STARTTLS handshake" if " OK" in tagged else f"IMAP STARTTLS refused {tagged}", i.sock, hello,
                  None))
    p = RawPOP3(d.pop3_port)
    status = p.cmd("STLS")
    cases.append(("POP3 STLS handshake" if status.startswith("+OK") else f"POP3 STLS refused {status}", p.sock,
                  hello, None))
    return cases


def test_deadlines(checks, d, push_plain, push_tls):
    cases = slow_line_cases(d, push_plain) + slow_tls_cases(d, push_tls)
    threads = [Trickler(label, sock, data) for label, sock, data, _ in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TRICKLE_FOR + 10)
    for (label, _, _, reply), t in zip(cases, threads):
        after = t.closed_after
        checks.check(after is not None and DEADLINE - 1 <= after <= LATEST,
                     f"{label} trickled a byte a second: closed after about {DEADLINE} s ({after})",
                     f"received {t.received[-200:]!r} error {t.error}")
        if reply is not None:
            checks.check(reply in t.received, f"{label}: the protocol's timeout reply ({reply.decode()}) came first",
                         t.received[-200:])
    log = d.stderr_text()
    checks.check("event=command-timeout" in log and "event=tls-timeout" in log,
                 "the log names command-timeout and tls-timeout")


def test_patient_clients(checks, d):
    """Silence between commands, slow DATA, IDLE and a slowly streamed APPEND literal all go on."""
    results = {}

    def smtp_quiet_and_slow_data():
        with RawSMTP(d.mx_port) as s:
            s.ehlo()
            time.sleep(DEADLINE + 2)
            results["smtp silent between commands"] = s.cmd("NOOP")[0] == 250
            mid = unique_id("slowdata")
            s.cmd("MAIL FROM:<sender@remote.test>")
            s.cmd(f"RCPT TO:<{ALICE}>")
            s.cmd("DATA")
            msg = dot_stuff(make_message("sender@remote.test", [ALICE], "slow data", mid,
                                         body_lines=[f"line {i}" for i in range(40)]))
            step = max(1, len(msg) // 12)
            for i in range(0, len(msg), step):
                s.send(msg[i:i + step])  # no CRLF boundaries kept: partial lines in DATA
                time.sleep(0.5)
            r = s.cmd(".")
            results["smtp slow DATA (6 s) stored"] = r[0] == 250 and d.find_message(ALICE, mid) is not None

    def imap_idle():
        with RawIMAP(d.imap_port) as i:
            i.login(ALICE, d.passwords[ALICE])
            i.command("SELECT INBOX")
            i.send(b"i1 IDLE\r\n")
            first = i.response()
            time.sleep(DEADLINE + 3)
            i.send(b"DONE\r\n")
            tagged, _ = i.read_until_tagged("i1")
            results["imap IDLE longer than the deadline"] = first.startswith(b"+") and " OK" in tagged

    def imap_slow_append():
        with RawIMAP(d.imap_port) as i:
            i.login(ALICE, d.passwords[ALICE])
            mid = unique_id("slowappend")
            msg = make_message(ALICE, [ALICE], "slow append", mid, body_lines=[f"line {n}" for n in range(60)])
            i.send(f"a1 APPEND INBOX {{{len(msg)}}}\r\n".encode())
            cont = i.response()
            step = max(1, len(msg) // 16)
            for n in range(0, len(msg), step):
                i.send(msg[n:n + step])
                time.sleep(0.5)
            i.send(b"\r\n")
            tagged, _ = i.read_until_tagged("a1")
            results["imap APPEND literal streamed over 8 s"] = cont.startswith(b"+") and " OK" in tagged

    threads = [threading.Thread(target=checks.guard, args=(f"{f.__name__} ran", f), daemon=True)
               for f in (smtp_quiet_and_slow_data, imap_idle, imap_slow_append)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for what in ("smtp silent between commands", "smtp slow DATA (6 s) stored", "imap IDLE longer than the deadline",
                 "imap APPEND literal streamed over 8 s"):
        checks.check(results.get(what) is True, f"patient client: {what}", results.get(what))


def slow_commit_once(checks, d, label, tls_context=None):
    """One message committed while another process holds the database's write lock for 8 s."""
    mid = unique_id("slowcommit")
    msg = dot_stuff(make_message("sender@remote.test", [ALICE], "slow commit", mid, body_lines=["hello"]))
    with RawSMTP(d.mx_port, timeout=40) as s:
        s.ehlo()
        if tls_context is not None:
            s.starttls(tls_context)
            s.ehlo()
        s.cmd("MAIL FROM:<sender@remote.test>")
        s.cmd(f"RCPT TO:<{ALICE}>")
        s.cmd("DATA")
        s.send(msg)
        db = sqlite3.connect(str(d.data_dir / "tern.db"), isolation_level=None, timeout=10,
                             check_same_thread=False)
        db.execute("BEGIN EXCLUSIVE")
        release = threading.Timer(8.0, lambda: db.execute("COMMIT"))
        release.start()
        start = time.monotonic()
        try:
            r = s.cmd(".")
        except (OSError, harness.SMTPError) as e:
            r = (None, [repr(e)])
        took = time.monotonic() - start
        release.join()
        db.close()
        checks.check(r[0] == 250, f"slow commit{label}: 250 after the lock is released ({took:.1f} s), never 421",
                     r)
        checks.check(took >= 6, f"slow commit{label}: the commit really waited for the lock ({took:.1f} s)")
        if r[0] == 250:
            r2 = s.cmd("NOOP")
            checks.check(r2[0] == 250, f"slow commit{label}: the session goes on afterwards", r2)
    found = [m for m in d.mail_list(ALICE) if str(m.get("message_id") or "").strip("<>") == mid]
    checks.check(len(found) == 1, f"slow commit{label}: the message is stored exactly once", len(found))


def push_silent_after_starttls(checks, d, push_plain):
    """After STARTTLS and login a push client only listens: silence longer than push.idle_timeout (5 s)
    must not end it (only the session's timers count, not leftovers on the socket under TLS)."""
    with RawPOP3(push_plain, timeout=20) as s:
        status = s.cmd("STARTTLS")
        s.sock = d.client_tls_context().wrap_socket(s.sock, server_hostname="localhost")
        token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + d.passwords[ALICE].encode()).decode()
        auth = s.cmd(f"AUTH PLAIN {token}")
        checks.check(status.startswith("+OK") and auth.startswith("+OK"), "push: STARTTLS and AUTH", (status, auth))
        time.sleep(9)
        try:
            noop = s.cmd("NOOP")
        except (OSError, harness.POP3Error) as e:
            noop = repr(e)
        checks.check(noop == "+OK", "push after STARTTLS and login: 9 s of silence (push.idle_timeout=5) do not "
                     "end the session", noop)
    # The session's own idle timeout still applies inside TLS: silent before login, it ends.
    with RawPOP3(push_plain, timeout=20) as s:
        s.cmd("STARTTLS")
        s.sock = d.client_tls_context().wrap_socket(s.sock, server_hostname="localhost")
        t0 = time.monotonic()
        closed = s.wait_closed(15)
        took = time.monotonic() - t0
        checks.check(closed and b"-ERR disconnected for inactivity" in s.buf and 4 < took < 13,
                     f"push after STARTTLS, silent before login: disconnected by push.idle_timeout ({took:.1f} s)",
                     s.buf)


def test_slow_commit(checks):
    """The database is locked by another process while a message commits: no 421, one copy; in the
    clear and after STARTTLS (where the socket under TLS must not keep timers of its own). A push
    client silent after STARTTLS and login stays connected."""
    push_tls, push_plain = free_ports(2)
    options = ["smtp.idle_timeout=5", "push.idle_timeout=5", f"push.listen=127.0.0.1:{push_tls}",
               f"push.listen_plain=127.0.0.1:{push_plain}", "auth.failure_delay=0"]
    with Daemon("slow-commit", options=options) as d:
        if not start_daemon(checks, d):
            return
        slow_commit_once(checks, d, "")
        slow_commit_once(checks, d, " after STARTTLS", d.client_tls_context())
        for _ in range(50):
            if harness.connect_ok(push_plain):
                break
            time.sleep(0.1)
        push_silent_after_starttls(checks, d, push_plain)
        checks.check("write-timeout" not in d.stderr_text(),
                     "slow commit, silent push: no session ended by a write timeout", d.stderr_tail())


PREAUTH_CONNS = 400


def send_all(sock, payload):
    try:
        sock.sendall(payload)
    except OSError:
        pass  # the server may hang up on it part way: that is fine


def send_what_fits(sock, payload):
    """Writes what the kernel takes now and stops (a client that will not wait for us)."""
    sock.setblocking(False)
    for _ in range(50):
        try:
            payload = payload[sock.send(payload):]
        except OSError:  # BlockingIOError included
            return
        if not payload:
            return


def preauth_flood(port, payload, count, send=send_all):
    """count connections that each send payload (an unfinished command) and stay open."""
    socks = []
    refused = 0
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            refused += 1
            continue
        socks.append(sock)
        send(sock, payload)
    return socks, refused


def close_all(socks):
    for sock in socks:
        try:
            sock.close()
        except OSError:
            pass


def test_imap_preauth_memory(checks):
    """Unauthenticated IMAP input is bounded to a few KiB per connection, and memory comes back."""
    # Many 60 KB LITERAL+ literals in one unfinished LOGIN: each under the (post-login) literal
    # limit, together about 900 KB held per connection by the old parser.
    multi = b"a1 LOGIN" + b"".join(b" {60000+}\r\n" + b"x" * 60000 for _ in range(15))
    one_big = b"a1 LOGIN {1000000+}\r\n" + b"y" * 900000
    long_line = b"a1 LOGIN " + b" ".join([b"z" * 1000] * 60)
    options = ["server.max_connections_per_ip=2000", "server.max_connections=5000"]
    with Daemon("preauth", options=options, imap=True) as d:
        if not start_daemon(checks, d):
            return
        warm = [RawIMAP(d.imap_port) for _ in range(10)]
        for w in warm:
            w.close()
        time.sleep(0.5)
        base = d.proc_status("VmRSS")
        for label, payload in (("unfinished LOGIN with 15 literals of 60 KB", multi),
                               ("unfinished {1000000+} literal", one_big),
                               ("unfinished 60 KB line", long_line)):
            socks, refused = preauth_flood(d.imap_port, payload, PREAUTH_CONNS)
            time.sleep(1.0)
            peak = d.proc_status("VmRSS")
            growth = (peak - base) / 1024 if peak and base else None
            checks.check(refused == 0 and growth is not None and growth < 40,
                         f"pre-auth IMAP, {PREAUTH_CONNS} x {label}: RSS grows less than 40 MiB "
                         f"({growth and round(growth, 1)} MiB)", f"base {base} KiB peak {peak} KiB refused {refused}")
            close_all(socks)
            time.sleep(1.5)
            after = d.proc_status("VmRSS")
            kept = (after - base) / 1024 if after and base else None
            checks.check(kept is not None and kept < 20,
                         f"pre-auth IMAP, {label}: after the connections close RSS is back within 20 MiB "
                         f"of the start ({kept and round(kept, 1)} MiB)", f"base {base} KiB after {after} KiB")
        with RawIMAP(d.imap_port) as i:
            user, password = ALICE.encode(), d.passwords[ALICE].encode()
            tagged, _ = i.command(b"LOGIN {%d+}\r\n%s {%d+}\r\n%s" % (len(user), user, len(password), password))
            checks.check(" OK" in tagged, "pre-auth IMAP: LOGIN with LITERAL+ literals still works afterwards",
                         tagged)
            i.command("SELECT INBOX")
            msg = make_message(ALICE, [ALICE], "big after login", unique_id("bigappend"),
                               body=b"w" * 200000 + b"\r\n")
            tagged, _ = i.command(f"APPEND INBOX {{{len(msg)}+}}\r\n".encode()[:-2] + b"\r\n" + msg)
            checks.check(" OK" in tagged, "after login the big limits apply: a 200 KB LITERAL+ APPEND is stored",
                         tagged)
            tagged, _ = i.command(b"SEARCH TEXT {60000+}\r\n" + b"q" * 60000)
            checks.check(" BAD" not in tagged, "after login a 60 KB literal in a command is still read", tagged)


NOOP_FLOOD = b"a NOOP\r\n" * 20000


def test_preauth_unread_replies(checks):
    """Clients that pipeline commands before login and never read the replies: the server stops
    reading them (little input kept, little output queued), and others are still served."""
    options = ["server.max_connections_per_ip=2000", "server.max_connections=5000"]
    push_tls, push_plain = free_ports(2)
    options += [f"push.listen=127.0.0.1:{push_tls}", f"push.listen_plain=127.0.0.1:{push_plain}"]
    with Daemon("preauth-unread", options=options, imap=True) as d:
        if not start_daemon(checks, d):
            return
        for _ in range(50):
            if harness.connect_ok(push_plain):
                break
            time.sleep(0.1)
        cases = (("IMAP", d.imap_port, NOOP_FLOOD, b""),
                 ("POP3", d.pop3_port, b"CAPA\r\n" * 20000, b""),
                 ("SMTP", d.mx_port, b"NOOP\r\n" * 20000, b"EHLO flood.test\r\n"),
                 ("push", push_plain, b"NOOP\r\n" * 20000, b""))
        for label, port, payload, prelude in cases:
            warm = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
            close_all(warm)
            time.sleep(0.5)
            base = d.proc_status("VmRSS")
            socks, refused = preauth_flood(port, prelude + payload, PREAUTH_CONNS, send_what_fits)
            time.sleep(2.0)
            # More from each while the server may have drained some.
            for sock in socks:
                try:
                    sock.send(payload[:65536])
                except OSError:
                    pass
            time.sleep(2.0)
            peak = d.proc_status("VmRSS")
            growth = (peak - base) / 1024 if peak and base else None
            checks.check(refused == 0 and growth is not None and growth < 15,
                         f"pre-auth {label}, {PREAUTH_CONNS} clients pipelining NOOPs without reading: RSS grows "
                         f"less than 15 MiB ({growth and round(growth, 1)} MiB)",
                         f"base {base} KiB peak {peak} KiB refused {refused}")
            served = False
            try:
                if label == "IMAP":
                    with RawIMAP(d.imap_port, timeout=10) as i:
                        served = " OK" in i.login(ALICE, d.passwords[ALICE])[0]
                elif label == "POP3":
                    with RawPOP3(d.pop3_port, timeout=10) as p3:
                        served = p3.cmd("CAPA").startswith("+OK")
                elif label == "SMTP":
                    with RawSMTP(d.mx_port, timeout=10) as sm:
                        served = sm.cmd("NOOP")[0] == 250
                else:
                    with RawPOP3(push_plain, timeout=10) as ps:
                        served = ps.cmd("NOOP").startswith("+OK")
            except (OSError, harness.SMTPError, harness.POP3Error, harness.IMAPError) as e:
                served = repr(e)
            checks.check(served is True, f"pre-auth {label} flood: a normal client is served meanwhile", served)
            close_all(socks)
            time.sleep(1.0)
        checks.check(d.alive(), "pre-auth unread flood: ternd still running")


def run(checks):
    push_tls, push_plain = free_ports(2)
    options = [f"server.command_timeout={DEADLINE}", f"server.tls_handshake_timeout={DEADLINE}",
               f"push.listen=127.0.0.1:{push_tls}", f"push.listen_plain=127.0.0.1:{push_plain}",
               "auth.failure_delay=0"]
    with Daemon("slow", options=options, imap=True) as d:
        if start_daemon(checks, d):
            for _ in range(50):
                if harness.connect_ok(push_tls) and harness.connect_ok(push_plain):
                    break
                time.sleep(0.1)
            checks.guard("test_deadlines ran", test_deadlines, checks, d, push_plain, push_tls)
            checks.guard("test_patient_clients ran", test_patient_clients, checks, d)
            checks.check(d.alive(), "slow daemon: still running")
            checks.check(d.stop() == 0, "slow daemon: SIGTERM exits 0")
    checks.guard("test_slow_commit ran", test_slow_commit, checks)
    checks.guard("test_imap_preauth_memory ran", test_imap_preauth_memory, checks)
    checks.guard("test_preauth_unread_replies ran", test_preauth_unread_replies, checks)


if __name__ == "__main__":
    harness.main_guard(run)
