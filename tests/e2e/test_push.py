#!/usr/bin/env python3
"""End-to-end: the push service and webhooks (issue 6) against a real ternd with real TLS.

Push protocol (docs/push-protocol.md), over raw sockets on the implicit-TLS listener (push.listen) and
the plaintext one with STARTTLS (push.listen_plain), both on free loopback ports:
- greeting and CAPA (STARTTLS only where offered), AUTH PLAIN good (initial response and "+" continuation),
  bad, cancelled with "*", brute force (refused even with the right password after auth.max_failures);
- STARTTLS, and "STARTTLS\\r\\nCAPA\\r\\n" in one packet: the CAPA is discarded, never answered inside TLS;
- auth.allow_plaintext=never: no AUTH=PLAIN in CAPA on plaintext, AUTH gets "-ERR TLS required", works
  after STARTTLS;
- WATCH before AUTH refused, unknown command, over-long line (session goes on), 100 KB without a newline
  (closed), NUL in a line, no such mailbox, LOGOUT;
- WATCH INBOX Sent; a message sent over SMTP reaches the push client and an IMAP IDLE client within 2 s;
  an APPEND to Sent, IMAP STORE and EXPUNGE become "new"/"flags"/"expunge" events; CREATE/RENAME/DELETE
  become "mailbox" events; bob's push client sees none of alice's events;
- WATCH INBOX SINCE n replays exactly the messages above n (with "replay":true) before "+OK watching",
  then live events, no duplicates;
- keepalive at push.keepalive=1;
- 100 clients that never read while 2,000 messages are delivered: ternd's RSS stays bounded, the
  overflow is logged, and a client that reads again gets {"type":"resync","reason":"overflow"} and then
  live events again; the silent client before login is disconnected (push.idle_timeout).
Webhooks against a small HTTPS receiver (http.server + ssl, certificate made with openssl here):
- the POST (Content-Type application/json, User-Agent tern) carries the "new" event plus "account";
- a receiver answering 503 twice: the third attempt delivers (retries with backoff);
- a receiver that never answers: the POST times out and is retried, SMTP deliveries are not slowed, the
  bounded queue overflows (logged) and, once the receiver answers, the queued events arrive in order;
- without push.webhook_ca the self-signed certificate is refused (verification on);
- shutdown with a hung receiver gives up after the drain time and exits 0.
"""

import base64
import http.server
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (ALICE, BOB, Daemon, RawIMAP, RawSMTP, connect_ok, deliver_raw, free_ports,  # noqa: E402
                     imap_tagged_ok, make_message, unique_id)

CAROL = "carol@example.test"
EXTRA_USERS = {CAROL: "carol-Secret-3"}
SENDER = "sender@remote.test"
ERRORS = (OSError, ssl.SSLError, ValueError, ConnectionError)


class PushError(Exception):
    pass


class RawPush(RawSMTP):
    """A byte-exact push client. reply() returns the next status line (str); event lines ({...}) read on
    the way are parsed and kept in self.events (keepalives counted apart in self.keepalives)."""

    def __init__(self, port, tls_context=None, slow=False, **kw):
        self.events = []
        self.keepalives = []
        if not slow:
            super().__init__(port, tls_context=tls_context, **kw)
            return
        # A client that will stop reading: a small receive buffer and a small MSS (set before connect, so
        # that the server's kernel keeps little on its side) make ternd's own bounds the ones that count.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        sock.settimeout(harness.SOCKET_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        self.sock = tls_context.wrap_socket(sock, server_hostname="localhost") if tls_context else sock
        self.buf = b""
        self.banner = self.reply()

    def raw_line(self):
        return self.line().decode("utf-8")

    def _keep(self, text):
        ev = json.loads(text)
        if ev.get("type") == "keepalive":
            self.keepalives.append(ev)
        else:
            self.events.append(ev)
        return ev

    def reply(self):
        while True:
            text = self.raw_line()
            if text.startswith("{"):
                self._keep(text)
                continue
            if not (text.startswith("+OK") or text.startswith("-ERR") or text == "+" or text.startswith("+ ")):
                raise PushError(f"malformed status line {text!r}")
            return text

    def wait_event(self, pred, timeout):
        """The first kept or newly read event for which pred is true (removed from self.events), or None."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if pred(ev):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.settimeout(left)
            try:
                text = self.raw_line()
            except (socket.timeout, ssl.SSLError):
                return None
            finally:
                self.settimeout(harness.SOCKET_TIMEOUT)
            if not text.startswith("{"):
                raise PushError(f"status line {text!r} while waiting for an event")
            self._keep(text)

    def auth(self, user, password):
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    def starttls(self, context, server_hostname="localhost"):
        status = self.cmd("STARTTLS")
        if not status.startswith("+OK"):
            raise PushError(f"STARTTLS refused: {status}")
        if self.buf:
            raise PushError(f"plaintext bytes after the +OK of STARTTLS: {self.buf!r}")
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return status


def ok(status):
    return isinstance(status, str) and (status == "+OK" or status.startswith("+OK "))


def new_for(uid=None, mailbox="INBOX", subject=None):
    def pred(ev):
        return (ev.get("type") == "new" and ev.get("mailbox") == mailbox and (uid is None or ev.get("uid") == uid)
                and (subject is None or ev.get("subject") == subject))
    return pred


class PushDaemon(Daemon):
    """A Daemon with both push listeners on free loopback ports: the harness's push_port/push_plain_port when
    it gives them, otherwise ports chosen here (never the default 5050)."""

    def __init__(self, name, options=(), **kw):
        super().__init__(name, options=list(options), users=EXTRA_USERS, **kw)
        if getattr(self, "push_port", None) is None or getattr(self, "push_plain_port", None) is None:
            taken = {self.mx_port, self.submission_port, self.submissions_port, self.pop3_port, self.pop3s_port,
                     self.imap_port, self.imaps_port}
            fresh = [p for p in free_ports(12) if p not in taken]
            self.push_port, self.push_plain_port = fresh[0], fresh[1]
            self.options = [f"push.listen=127.0.0.1:{self.push_port}",
                            f"push.listen_plain=127.0.0.1:{self.push_plain_port}"] + self.options

    def start(self, ready_timeout=20.0):
        super().start(ready_timeout)
        deadline = time.monotonic() + ready_timeout
        while not (connect_ok(self.push_port) and connect_ok(self.push_plain_port)):
            if time.monotonic() > deadline:
                raise RuntimeError("push listeners not ready:\n" + self.stderr_tail())
            time.sleep(0.05)
        return self

    def push(self, user=None, tls=True, **kw):
        """A RawPush on the TLS listener (or the plaintext one), logged in as user when given."""
        s = RawPush(self.push_port if tls else self.push_plain_port,
                    tls_context=self.client_tls_context() if tls else None, **kw)
        if user is not None:
            status = s.auth(user, self.passwords[user])
            if not ok(status):
                s.close()
                raise PushError(f"AUTH as {user}: {status}")
        return s


def smtp_send(d, rcpt, subject, mid=None, body_lines=None):
    """Delivers one message over SMTP; returns (250?, seconds it took, message id)."""
    mid = mid or unique_id("push")
    msg = make_message(SENDER, [rcpt], subject, mid, body_lines=body_lines)
    t0 = time.monotonic()
    code = deliver_raw(d.mx_port, SENDER, [rcpt], msg)
    return code == 250, time.monotonic() - t0, mid


def uid_of(d, mid, user=ALICE):
    entry = d.find_message(user, mid)
    return entry.get("uid") if entry else None


def still_serving(d):
    try:
        with d.push() as s:
            return ok(s.banner)
    except ERRORS:
        return False


# ---- protocol basics --------------------------------------------------------------------------------
def test_greeting_capa(checks, d):
    with d.push() as s:
        checks.check(s.banner == "+OK tern push ready (capabilities: AUTH=PLAIN WATCH SINCE)",
                     "TLS listener: greeting without STARTTLS", s.banner)
        checks.check(s.cmd("CAPA") == "+OK AUTH=PLAIN WATCH SINCE", "TLS listener: CAPA")
        checks.check(s.cmd("NOOP") == "+OK", "NOOP -> +OK")
        checks.check(s.cmd("capa").startswith("+OK"), "commands are case-insensitive")
    with d.push(tls=False) as s:
        checks.check(s.banner == "+OK tern push ready (capabilities: STARTTLS AUTH=PLAIN WATCH SINCE)",
                     "plaintext listener: greeting offers STARTTLS", s.banner)
        checks.check(s.cmd("CAPA") == "+OK STARTTLS AUTH=PLAIN WATCH SINCE", "plaintext listener: CAPA")


def test_auth(checks, d):
    with d.push() as s:
        status = s.auth(ALICE, d.passwords[ALICE])
        checks.check(status == f"+OK authenticated as {ALICE}", "AUTH PLAIN with initial response", status)
        checks.check(s.cmd("AUTH PLAIN x") == "-ERR already authenticated", "AUTH twice refused")
        checks.check(s.cmd("STARTTLS") == "-ERR already authenticated", "STARTTLS after AUTH refused")
        checks.check(s.cmd("CAPA") == "+OK WATCH SINCE", "CAPA after AUTH: WATCH SINCE")
    with d.push() as s:
        status = s.auth(harness.ALICE_ALIAS, d.passwords[ALICE])
        checks.check(status == "-ERR authentication failed", "AUTH with an alias is refused (only the primary "
                     "address logs in, as for SMTP/POP3/IMAP)", status)
    with d.push() as s:
        first = s.cmd("AUTH PLAIN")
        token = base64.b64encode(b"\0" + BOB.encode() + b"\0" + d.passwords[BOB].encode()).decode()
        second = s.cmd(token)
        checks.check(first == "+" and second == f"+OK authenticated as {BOB}",
                     "AUTH PLAIN with a '+' continuation", (first, second))
    with d.push() as s:
        first = s.cmd("AUTH PLAIN")
        second = s.cmd("*")
        checks.check(first == "+" and second == "-ERR authentication aborted", "AUTH PLAIN cancelled with '*'",
                     (first, second))
        status = s.auth(ALICE, "wrong-password")
        checks.check(status == "-ERR authentication failed", "wrong password -> -ERR authentication failed", status)
        checks.check(s.cmd("AUTH LOGIN") == "-ERR unsupported mechanism (AUTH PLAIN)", "AUTH LOGIN refused")
        checks.check(s.cmd("AUTH PLAIN %%%") .startswith("-ERR syntax error"), "AUTH PLAIN with bad base64")
        checks.check(ok(s.auth(ALICE, d.passwords[ALICE])), "the session goes on: the right password works")


def test_brute_force(checks, d):
    """From 127.0.0.2, as carol: auth.max_failures (5) failures, then even the right password is refused."""
    statuses = []
    t0 = time.monotonic()
    with RawPush(d.push_port, tls_context=d.client_tls_context(), source_address=("127.0.0.2", 0)) as s:
        for _ in range(5):
            statuses.append(s.auth(CAROL, "guess"))
        elapsed = time.monotonic() - t0
        locked = s.auth(CAROL, d.passwords[CAROL])
    checks.check(all(x.startswith("-ERR authentication failed") for x in statuses),
                 "brute force: 5 wrong passwords refused", statuses)
    checks.check(elapsed >= 4.5, f"brute force: each failure answered after auth.failure_delay ({elapsed:.1f} s "
                 "for 5)")
    checks.check(locked == "-ERR authentication failed (too many attempts; try again later)",
                 "brute force: then the right password is refused too (throttled)", locked)
    checks.check("push session=" in d.stderr_text() and "event=auth result=locked" in d.stderr_text(),
                 "brute force: 'event=auth result=locked' logged")
    with d.push(ALICE) as s:
        checks.check(s.cmd("NOOP") == "+OK", "brute force: another user from 127.0.0.1 still logs in")


def test_starttls(checks, d):
    with d.push(tls=False) as s:
        status = s.starttls(d.client_tls_context())
        checks.check(status == "+OK begin TLS", "STARTTLS -> +OK begin TLS", status)
        checks.check(s.cmd("CAPA") == "+OK AUTH=PLAIN WATCH SINCE", "after STARTTLS: CAPA without STARTTLS")
        checks.check(s.cmd("STARTTLS") == "-ERR TLS already active", "STARTTLS twice refused")
        checks.check(ok(s.auth(ALICE, d.passwords[ALICE])), "AUTH inside STARTTLS works")
    with d.push(tls=False) as s:
        s.send(b"STARTTLS\r\nCAPA\r\n")
        status = s.reply()
        extra = s.buf
        s.sock = d.client_tls_context().wrap_socket(s.sock, server_hostname="localhost")
        answer = s.cmd("NOOP")
        checks.check(status == "+OK begin TLS" and extra == b"",
                     "STARTTLS injection: only the +OK before the handshake", (status, extra))
        checks.check(answer == "+OK", "STARTTLS injection: the first answer inside TLS is our NOOP's, the injected "
                     "CAPA was discarded", answer)
    time.sleep(0.2)
    checks.check(re.search(r"push session=\S+ event=starttls-injection discarded=6", d.stderr_text()) is not None,
                 "STARTTLS injection logged (discarded=6)")


def test_hostile(checks, d):
    with d.push() as s:
        checks.check(s.cmd("WATCH INBOX") == "-ERR authenticate first", "WATCH before AUTH -> -ERR authenticate first")
        checks.check(s.cmd("FROB") == "-ERR unknown command", "unknown command")
        checks.check(s.cmd("") == "-ERR unknown command", "empty line")
        checks.check(s.cmd("X" * 1001) == "-ERR line too long", "1001-octet line -> -ERR line too long")
        checks.check(s.cmd("NOOP" + " " * 996) == "+OK", "1000-octet line is read (NOOP with spaces)")
        checks.check(s.cmd(b"NO\x00OP").startswith("-ERR syntax error"), "NUL in a line -> -ERR syntax error")
        checks.check(s.cmd("NOOP") == "+OK", "the session goes on after each error")
        checks.check(s.cmd('WATCH "unterminated') .startswith("-ERR"), "hostile: unterminated quote")
    with d.push(tls=False) as s:
        try:
            for _ in range(100):
                s.sock.sendall(b"A" * 1000)
            closed = s.wait_closed(5)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        checks.check(closed, "100 KB without a newline: the connection is closed")
    with d.push() as s:
        replies = [s.cmd("BAD") for _ in range(10)]
        last = s.reply()
        closed = s.wait_closed(3)
        checks.check(replies[-1] == "-ERR unknown command" and last == "-ERR too many errors" and closed,
                     "push.max_errors: the 10th error is answered, then -ERR too many errors and close",
                     (replies[-1], last))
    with d.push(ALICE) as s:
        status = s.cmd("WATCH Nonexistent")
        checks.check(status == "-ERR no such mailbox Nonexistent", "WATCH of a missing mailbox", status)
        status = s.cmd('WATCH "Sent Stuff"')
        checks.check(status == '-ERR no such mailbox "Sent Stuff"', "quoted missing name echoed quoted", status)
        status = s.cmd("WATCH INBOX SINCE x")
        checks.check(status.startswith("-ERR syntax"), "SINCE without a number", status)
        status = s.cmd("LOGOUT")
        checks.check(status == "+OK bye" and s.wait_closed(3), "LOGOUT -> +OK bye, closed", status)
    checks.check(still_serving(d), "after the hostile inputs: still serving")


# ---- events -----------------------------------------------------------------------------------------
def idle_start(imap):
    tagged, untagged = imap.command("SELECT INBOX")
    exists = None
    for line in untagged:
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            exists = int(m.group(1))
    tag = imap.next_tag()
    imap.send(f"{tag} IDLE\r\n")
    cont = imap.response()
    return tag, exists, cont


def idle_wait(imap, pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        imap.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            line = imap.response()
        except (socket.timeout, ssl.SSLError):
            break
        if re.match(pattern, line):
            return line
    return None


def test_events(checks, d):
    alice = d.push(ALICE)
    bob = d.push(BOB)
    imap = RawIMAP(d.imaps_port, tls_context=d.client_tls_context())
    try:
        status = alice.cmd("WATCH INBOX Sent")
        checks.check(status == "+OK watching INBOX Sent", "WATCH INBOX Sent", status)
        checks.check(ok(bob.cmd("WATCH")), "bob: WATCH (INBOX by default)")
        checks.check(imap_tagged_ok(imap.login(ALICE, d.passwords[ALICE])[0]), "IMAP: alice logs in")
        tag, exists, cont = idle_start(imap)
        checks.check(cont.startswith(b"+"), "IMAP IDLE started", cont)

        subject = "Push test \u00e9t\u00e9 \"quoted\" \\ back"
        sent, took, mid = smtp_send(d, ALICE, "=?utf-8?q?Push_test_=C3=A9t=C3=A9_=22quoted=22_=5C_back?=")
        t250 = time.monotonic()
        checks.check(sent, f"SMTP: 250 for a message to alice ({took * 1000:.0f} ms)")
        ev = alice.wait_event(new_for(), 2.0)
        dt_push = time.monotonic() - t250
        checks.check(ev is not None, f"push: 'new' event within 2 s of the 250 ({dt_push * 1000:.0f} ms)", ev)
        line = idle_wait(imap, rb"\* \d+ EXISTS", 2.0)
        checks.check(line is not None and exists is not None and line == f"* {exists + 1} EXISTS".encode(),
                     "IMAP IDLE: * n EXISTS within 2 s of the same delivery", line)
        uid = uid_of(d, mid)
        if ev is not None:
            checks.check(ev.get("uid") == uid and ev.get("subject") == subject, "event: uid and decoded subject",
                         (ev, uid))
            checks.check(ev.get("from") == f"<{SENDER}>" or ev.get("from") == SENDER,
                         "event: from", ev.get("from"))
            checks.check(isinstance(ev.get("uidvalidity"), int) and ev["uidvalidity"] > 0, "event: uidvalidity")
            checks.check(isinstance(ev.get("size"), int) and ev["size"] > 100, "event: size", ev.get("size"))
            checks.check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ev.get("date") or "") is not None,
                         "event: date is RFC 3339 UTC", ev.get("date"))
        other = bob.wait_event(lambda e: True, 1.0)
        checks.check(other is None, "bob's push client sees nothing of alice's mail", other)
        imap.send(b"DONE\r\n")
        tagged, _ = imap.read_until_tagged(tag)
        checks.check(imap_tagged_ok(tagged, tag), "IMAP IDLE: DONE -> OK", tagged)

        # Flags and expunge through IMAP.
        tagged, _ = imap.command(f"UID STORE {uid} +FLAGS (\\Seen \\Flagged)")
        if checks.check(imap_tagged_ok(tagged), "IMAP UID STORE +FLAGS (\\Seen \\Flagged): OK", tagged):
            ev = alice.wait_event(lambda e: e.get("type") == "flags" and e.get("uid") == uid, 2.0)
            checks.check(ev is not None and "\\Seen" in ev.get("flags", []) and "\\Flagged" in ev.get("flags", []),
                         "IMAP STORE -> 'flags' event with \\Seen and \\Flagged", ev)
        tagged, _ = imap.command(f"UID STORE {uid} +FLAGS (\\Deleted)")
        tagged2, _ = imap.command("EXPUNGE")
        if checks.check(imap_tagged_ok(tagged) and imap_tagged_ok(tagged2), "IMAP STORE \\Deleted + EXPUNGE: OK",
                        (tagged, tagged2)):
            ev = alice.wait_event(lambda e: e.get("type") == "expunge" and e.get("uid") == uid, 2.0)
            checks.check(ev is not None and ev.get("mailbox") == "INBOX", "IMAP EXPUNGE -> 'expunge' event", ev)

        # A new message in the second watched mailbox: APPEND to Sent.
        msg = make_message(ALICE, [BOB], "Appended to Sent", unique_id("append"))
        imap.send(f"a1 APPEND Sent {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        tagged, _ = imap.read_until_tagged("a1")
        if checks.check(imap_tagged_ok(tagged), "IMAP APPEND to Sent: OK", tagged):
            ev = alice.wait_event(new_for(mailbox="Sent", subject="Appended to Sent"), 2.0)
            checks.check(ev is not None, "IMAP APPEND to Sent -> 'new' event for the second watched mailbox", ev)

        # Mailbox events.
        tagged, _ = imap.command("CREATE Projects")
        if checks.check(imap_tagged_ok(tagged), "IMAP CREATE Projects: OK", tagged):
            ev = alice.wait_event(lambda e: e.get("type") == "mailbox", 2.0)
            checks.check(ev == {"type": "mailbox", "event": "created", "mailbox": "Projects"},
                         "IMAP CREATE -> mailbox created event", ev)
            tagged, _ = imap.command("RENAME Projects Archive")
            ev = alice.wait_event(lambda e: e.get("type") == "mailbox", 2.0)
            checks.check(imap_tagged_ok(tagged) and ev == {"type": "mailbox", "event": "renamed",
                                                           "mailbox": "Archive", "old": "Projects"},
                         "IMAP RENAME -> mailbox renamed event with the old name", (tagged, ev))
            tagged, _ = imap.command("DELETE Archive")
            ev = alice.wait_event(lambda e: e.get("type") == "mailbox", 2.0)
            checks.check(imap_tagged_ok(tagged) and ev == {"type": "mailbox", "event": "deleted", "mailbox": "Archive"},
                         "IMAP DELETE -> mailbox deleted event", (tagged, ev))
        stray = bob.wait_event(lambda e: True, 0.5)
        checks.check(stray is None, "bob still saw nothing of alice's mailboxes", stray)
        checks.check(ok(alice.cmd("LOGOUT")), "LOGOUT")
    finally:
        for c in (alice, bob, imap):
            c.close()


def test_since(checks, d):
    mids = []
    for i in range(3):
        sent, _, mid = smtp_send(d, ALICE, f"Since {i}")
        mids.append(mid)
    uids = [uid_of(d, m) for m in mids]
    checks.check(all(uids) and uids == sorted(uids), "three messages for the replay", uids)
    with d.push(ALICE) as s:
        status = s.cmd(f"WATCH INBOX SINCE {uids[0]}")
        replayed = [e for e in s.events if e.get("type") == "new"]
        s.events.clear()
        checks.check(status == "+OK watching INBOX", "WATCH INBOX SINCE n -> +OK after the replay", status)
        checks.check([e.get("uid") for e in replayed] == uids[1:] and all(e.get("replay") is True for e in replayed),
                     "SINCE: exactly the messages above n, in order, with replay:true",
                     [(e.get("uid"), e.get("replay")) for e in replayed])
        checks.check([e.get("subject") for e in replayed] == ["Since 1", "Since 2"], "SINCE: replayed subjects")
        sent, _, mid = smtp_send(d, ALICE, "After since")
        ev = s.wait_event(new_for(subject="After since"), 2.0)
        checks.check(ev is not None and "replay" not in ev and ev.get("uid") == uid_of(d, mid),
                     "after the replay: live events", ev)
        dup = s.wait_event(new_for(), 0.5)
        checks.check(dup is None, "no duplicates after the replay", dup)
        status = s.cmd("WATCH INBOX SINCE 4294967295")
        checks.check(status == "+OK watching INBOX" and not s.events, "SINCE beyond the last UID: nothing replayed",
                     (status, s.events))


def test_since_chunks(checks, d):
    """A replay longer than one step (PUSH_REPLAY_CHUNK 256 rows, each step reading only the next
    UIDs): 600 messages of bob's Archive, one of them recalled (skipped, but it still moves the
    replay on), arrive once each, in order."""
    import imaplib
    import sqlite3
    m = imaplib.IMAP4("127.0.0.1", d.imap_port)
    m.login(BOB, d.passwords[BOB])
    m.create("Archive")
    for i in range(75):
        m.append("Archive", None, None, b"Subject: chunk %d\r\n\r\nbody\r\n" % i)
    m.select("Archive")
    for _ in range(3):  # 75 -> 600
        m.copy("1:*", "Archive")
    typ, data = m.select("Archive")
    uids = [int(x) for x in m.uid("SEARCH", "ALL")[1][0].split()]
    m.logout()
    checks.check(len(uids) == 600, "bob's Archive holds 600 messages", len(uids))
    recalled = uids[255]  # the last row of the first step
    with sqlite3.connect(str(d.data_dir / "tern.db"), timeout=30) as conn:
        conn.execute("UPDATE messages SET recalled = 1 WHERE uid = ? AND mailbox_id = (SELECT b.id FROM "
                     "mailboxes b JOIN accounts a ON a.id = b.account_id WHERE a.address = ? AND "
                     "b.name = 'Archive')", (recalled, BOB))
    with d.push(BOB) as s:
        s.settimeout(30)
        status = s.cmd("WATCH Archive SINCE 0")
        replayed = [e.get("uid") for e in s.events if e.get("type") == "new" and e.get("replay")]
        want = [u for u in uids if u != recalled]
        checks.check(status == "+OK watching Archive" and replayed == want,
                     "WATCH Archive SINCE 0: the 599 messages not recalled, once each, in UID order, over "
                     "three replay steps", (status, len(replayed), replayed[250:260]))


def test_keepalive(checks, d):
    with d.push(ALICE) as s:
        checks.check(ok(s.cmd("WATCH")), "keepalive: WATCH")
        s.keepalives.clear()
        s.wait_event(lambda e: False, 2.5)
        times = [k.get("time") for k in s.keepalives]
        checks.check(len(times) >= 2 and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t or "") for t in times),
                     "keepalive: a {\"type\":\"keepalive\",\"time\":...} every second (push.keepalive=1)", times)


def deliver_many(d, n, subject, threads=4):
    """n messages to alice over a few SMTP sessions in parallel; returns the number accepted."""
    counts = [0] * threads

    def worker(k):
        with RawSMTP(d.mx_port) as s:
            s.ehlo()
            for i in range(k, n, threads):
                msg = make_message(SENDER, [ALICE], f"{subject} {i:05d}", unique_id("many"))
                if s.cmd(f"MAIL FROM:<{SENDER}>")[0] != 250 or s.cmd(f"RCPT TO:<{ALICE}>")[0] != 250:
                    continue
                if s.cmd("DATA")[0] != 354:
                    continue
                s.send(msg + b".\r\n")
                if s.reply()[0] == 250:
                    counts[k] += 1

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts)


def test_never_reads(checks, d):
    """Clients that stop reading: memory stays bounded, overflow is logged, the client resyncs."""
    n_clients, n_msgs = 100, 2000
    stuck = []
    for _ in range(n_clients):
        s = d.push(ALICE, slow=True)
        if ok(s.cmd("WATCH INBOX")):
            stuck.append(s)
    checks.check(len(stuck) == n_clients, f"{n_clients} clients watch alice's INBOX, then stop reading")
    time.sleep(0.3)
    rss0 = d.proc_status("VmRSS")
    subject = "Overflow " + "x" * 240
    t0 = time.monotonic()
    delivered = deliver_many(d, n_msgs // 2, subject)
    rss_mid = d.proc_status("VmRSS")
    delivered += deliver_many(d, n_msgs - n_msgs // 2, subject)
    took = time.monotonic() - t0
    rss1 = d.proc_status("VmRSS")
    line_bytes = 430
    unbounded_mib = n_clients * n_msgs * line_bytes / (1 << 20)
    checks.check(delivered == n_msgs, f"{n_msgs} messages delivered in {took:.1f} s while they do not read")
    if None in (rss0, rss_mid, rss1):
        checks.check(False, "ternd RSS measured", (rss0, rss_mid, rss1))
    else:
        first, second = (rss_mid - rss0) / 1024, (rss1 - rss_mid) / 1024
        # Bounded: per client 64 KiB of output and push.queue (32) events, reached in the first half;
        # the second half adds (almost) nothing. Queuing every event would add ~unbounded/2 per half.
        checks.check(first + second < 48 and second < 8,
                     f"ternd RSS grew by {first:.1f} MiB, then {second:.1f} MiB (bounded; queuing every event "
                     f"would take ~{unbounded_mib:.0f} MiB)", (rss0, rss_mid, rss1))
    overflows = len(re.findall(r"push session=\S+ event=overflow", d.stderr_text()))
    checks.check(overflows >= n_clients, f"overflow logged ({overflows} times)")
    # One client reads again: the resync, then live events.
    s = stuck[0]
    s.settimeout(10)
    got_resync = s.wait_event(lambda e: e.get("type") == "resync", 10)
    checks.check(got_resync == {"type": "resync", "reason": "overflow"},
                 "reading again: {\"type\":\"resync\",\"reason\":\"overflow\"}", got_resync)
    s.wait_event(lambda e: False, 1.0)  # what was queued after the resync
    seen = sum(1 for e in s.events if e.get("type") == "new")
    checks.check(seen < n_msgs, f"events were dropped for the slow client ({seen} of {n_msgs} reached it)")
    s.events.clear()
    sent, _, mid = smtp_send(d, ALICE, "After resync")
    ev = s.wait_event(new_for(subject="After resync"), 3.0)
    checks.check(ev is not None, "after the resync: live events again", ev)
    checks.check(ok(s.cmd("NOOP")), "after the resync: commands answered")
    # Closing sockets with unread data resets them: writes to the dead connections must be harmless.
    for c in stuck:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
    resets = deliver_many(d, 50, "After reset", threads=2)
    checks.check(resets == 50 and d.alive() and still_serving(d),
                 "the slow clients reset their connections during deliveries: still serving")


# ---- webhooks ---------------------------------------------------------------------------------------
class Hook:
    """An HTTPS receiver on loopback: records every POST; mode "ok", "fail" (503 while fail_left > 0) or
    "hang" (never answers until released)."""

    def __init__(self, tmp):
        self.cert, self.key = tmp / "hook-cert.pem", tmp / "hook-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.lock = threading.Lock()
        self.requests = []
        self.mode = "ok"
        self.fail_left = 0
        self.release = threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.lock:
                    hook.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "mode": hook.mode, "time": time.monotonic()})
                    mode = hook.mode
                    code = 200
                    if mode == "fail" and hook.fail_left > 0:
                        hook.fail_left -= 1
                        code = 503
                if mode == "hang":
                    hook.release.wait(60)
                    self.close_connection = True
                    return
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return f"https://127.0.0.1:{self.port}/hook?token=s3cret"

    def bodies(self):
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def wait(self, pred, timeout, count=1):
        """The requests matching pred once there are count of them (or what there is after timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [r for r in self.requests if pred(r)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def subject_of(r):
    try:
        return json.loads(r["body"]).get("subject")
    except ValueError:
        return None


def test_webhook(checks, tmp):
    hook = Hook(tmp)
    opts = [f"push.webhook={hook.url()}", f"push.webhook_ca={hook.cert}", "push.webhook_retries=2",
            "push.webhook_timeout=2", "push.webhook_queue=3", "auth.allow_plaintext=never",
            "push.idle_timeout=5"]
    try:
        with PushDaemon("push-webhook", options=opts) as d:
            if not harness.start_daemon(checks, d, "ternd with a webhook started"):
                return
            # Delivered at once, with the right payload and headers.
            sent, _, mid = smtp_send(d, ALICE, "Hook one")
            got = hook.wait(lambda r: subject_of(r) == "Hook one", 3)
            checks.check(sent and len(got) == 1, "webhook: one POST for a new message", got)
            if got:
                r = got[0]
                body = json.loads(r["body"])
                uid = uid_of(d, mid)
                hdrs = {k.lower(): v for k, v in r["headers"].items()}
                checks.check(hdrs.get("content-type") == "application/json" and hdrs.get("user-agent") == "tern",
                             "webhook: Content-Type application/json, User-Agent tern", hdrs)
                checks.check(r["path"] == "/hook?token=s3cret", "webhook: POSTed to the configured path", r["path"])
                checks.check(body.get("type") == "new" and body.get("account") == ALICE and body.get("mailbox") == "INBOX"
                             and body.get("uid") == uid and isinstance(body.get("uidvalidity"), int)
                             and body["uidvalidity"] > 0 and body.get("size", 0) > 0
                             and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body.get("date", "")) is not None,
                             "webhook: the push 'new' event plus account", body)
                checks.check("s3cret" not in d.stderr_text(), "webhook: the URL's query is not logged")

            # An account added while the daemon runs: its events carry its own address (looked up
            # by id when first seen, not by reloading every account).
            late = f"late-hook@{harness.DOMAIN}"
            harness.run_ternd(["user", "add", late, "--data-dir", d.data_dir, "--password-stdin"],
                              input_bytes=b"late-hook-password\n")
            sent, _, _ = smtp_send(d, late, "Hook late account")
            got = hook.wait(lambda r: subject_of(r) == "Hook late account", 3)
            checks.check(sent and len(got) == 1 and json.loads(got[0]["body"]).get("account") == late,
                         "webhook: an account added after the start is named by its address",
                         [json.loads(r["body"]) for r in got])

            # Retries: 503 twice, then 200.
            with hook.lock:
                hook.mode, hook.fail_left = "fail", 2
            smtp_send(d, ALICE, "Hook retry")
            attempts = hook.wait(lambda r: subject_of(r) == "Hook retry", 8, count=3)
            time.sleep(0.3)
            gaps = [b["time"] - a["time"] for a, b in zip(attempts, attempts[1:])]
            checks.check(len(attempts) == 3 and len(set(r["body"] for r in attempts)) == 1,
                         "webhook: 503, 503, then delivered on the third attempt (same body)", len(attempts))
            checks.check(len(gaps) == 2 and gaps[0] >= 0.9 and gaps[1] >= 1.9,
                         "webhook: exponential backoff between attempts (1 s, 2 s)", [f"{g:.2f}" for g in gaps])
            for _ in range(20):
                if re.search(r"webhook event=delivered .*attempts=3", d.stderr_text()):
                    break
                time.sleep(0.1)
            checks.check(re.search(r"webhook event=delivered .*attempts=3", d.stderr_text()) is not None,
                         "webhook: 'delivered ... attempts=3' logged")

            # A receiver that never answers: deliveries are not slowed, the queue overflows.
            with hook.lock:
                hook.mode = "hang"
            smtp_send(d, ALICE, "Hook hang 0")
            hook.wait(lambda r: subject_of(r) == "Hook hang 0", 3)
            times = []
            for i in range(1, 6):
                sent, took, _ = smtp_send(d, ALICE, f"Hook hang {i}")
                times.append(took)
            checks.check(max(times) < 1.0, "webhook hung: SMTP deliveries not slowed (max "
                         f"{max(times) * 1000:.0f} ms)", [f"{t:.3f}" for t in times])
            time.sleep(0.3)
            checks.check(len(re.findall(r"webhook event=overflow", d.stderr_text())) == 2,
                         "webhook: bounded queue (3): 2 of 5 events dropped and logged",
                         re.findall(r"webhook event=overflow.*", d.stderr_text()))
            timeout_re = r"webhook event=attempt-failed .*error=\".*timed out"
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and re.search(timeout_re, d.stderr_text()) is None:
                time.sleep(0.2)
            checks.check(re.search(timeout_re, d.stderr_text()) is not None,
                         "webhook: the hung POST times out (push.webhook_timeout=2) and is logged")
            with hook.lock:
                hook.mode = "ok"
            hook.release.set()
            got = hook.wait(lambda r: subject_of(r) == "Hook hang 3" and r["mode"] == "ok", 15)
            with hook.lock:
                ok_subjects = [subject_of(r) for r in hook.requests if r["mode"] == "ok"]
            tail = [x for x in ok_subjects if x and x.startswith("Hook hang")]
            checks.check(tail[-3:] == ["Hook hang 1", "Hook hang 2", "Hook hang 3"],
                         "webhook: once the receiver answers, the queued events arrive in order", tail)

            # Plaintext rule and pre-login timeout on this daemon (allow_plaintext=never, idle_timeout=5).
            with d.push(tls=False) as s:
                checks.check(s.banner == "+OK tern push ready (capabilities: STARTTLS WATCH SINCE)",
                             "allow_plaintext=never: no AUTH=PLAIN offered before STARTTLS", s.banner)
                checks.check(s.auth(ALICE, d.passwords[ALICE]) == "-ERR TLS required",
                             "allow_plaintext=never: AUTH on plaintext -> -ERR TLS required")
                s.starttls(d.client_tls_context())
                checks.check(ok(s.auth(ALICE, d.passwords[ALICE])), "allow_plaintext=never: AUTH after STARTTLS")
            with d.push() as s:
                t0 = time.monotonic()
                closed = s.wait_closed(10)
                checks.check(closed and b"-ERR disconnected for inactivity" in s.buf and 4 < time.monotonic() - t0 < 9,
                             "a silent client before login is disconnected after push.idle_timeout (5 s)", s.buf)

            # Shutdown with a hung receiver: gives up after the drain time.
            with hook.lock:
                hook.mode = "hang"
            hook.release.clear()
            smtp_send(d, ALICE, "Hook at shutdown 0")
            smtp_send(d, ALICE, "Hook at shutdown 1")
            hook.wait(lambda r: subject_of(r) == "Hook at shutdown 0", 3)
            t0 = time.monotonic()
            status = d.stop(timeout=20)
            took = time.monotonic() - t0
            checks.check(status == 0 and took < 9, f"shutdown with a hung webhook: exit 0 after {took:.1f} s "
                         "(drain at most 5 s)", d.stderr_tail())
            checks.check(re.search(r"webhook event=(abandoned|failed)", d.stderr_text()) is not None,
                         "shutdown: the undelivered webhook events are logged")
            hook.release.set()

        # Verification on: without push.webhook_ca the self-signed certificate is refused.
        with hook.lock:
            hook.mode = "ok"
            before = len(hook.requests)
        opts = [f"push.webhook={hook.url()}", "push.webhook_retries=0"]
        with PushDaemon("push-webhook-verify", options=opts) as d:
            if harness.start_daemon(checks, d, "ternd with a webhook and the system CA store started"):
                smtp_send(d, ALICE, "Hook verify")
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and "webhook event=failed" not in d.stderr_text():
                    time.sleep(0.1)
                with hook.lock:
                    after = len(hook.requests)
                checks.check(after == before and re.search(r"webhook event=attempt-failed .*error=\".*(certificate|SSL)",
                                                           d.stderr_text()) is not None,
                             "webhook: the self-signed certificate is refused without push.webhook_ca",
                             re.findall(r"webhook event=attempt-failed.*", d.stderr_text()))
                d.stop()
    finally:
        hook.close()


def run(checks):
    import os
    import tempfile
    # TERN_PUSH_ONLY=events,webhook runs a subset (names as below), for work on one part.
    only = set(filter(None, os.environ.get("TERN_PUSH_ONLY", "").split(",")))
    parts = [("greeting", test_greeting_capa), ("auth", test_auth), ("starttls", test_starttls),
             ("hostile", test_hostile), ("events", test_events), ("since", test_since), ("since_chunks", test_since_chunks),
             ("keepalive", test_keepalive), ("brute_force", test_brute_force), ("never_reads", test_never_reads)]
    opts = ["push.keepalive=1", "push.queue=32", "auth.failure_delay=1", "server.max_connections_per_ip=200"]
    with PushDaemon("push", options=opts, imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        for name, fn in parts:
            if not only or name in only:
                checks.guard(f"{name} tests ran", fn, checks, d)
        checks.check(d.alive(), "ternd still running after every client")
        status = d.stop()
        checks.check(status == 0, "SIGTERM: ternd exits with status 0", f"exit status {status}\n" + d.stderr_tail())
    if not only or "webhook" in only:
        with tempfile.TemporaryDirectory(prefix="tern-push-hook-") as tmp:
            checks.guard("webhook tests ran", test_webhook, checks, Path(tmp))


if __name__ == "__main__":
    harness.main_guard(run)
