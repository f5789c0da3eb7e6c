#!/usr/bin/env python3
"""End-to-end: hostile and out-of-spec SMTP input against a real ternd, over raw sockets.

Each case is its own check (issue 2, section 4):
- basic verbs: VRFY 252, HELP 214, NOOP 250, RSET 250, QUIT 221 and close; EHLO extensions;
- commands out of order (503), NUL bytes in a command (500 5.5.2), malformed addresses (501);
- a command line over 512 octets (500 5.5.2, session goes on; exactly 512 is fine);
- 10 MB without a newline: the connection is closed, memory stays bounded, others are still served;
- SIZE: MAIL ... SIZE= too big is 552 5.3.4 up front; an oversized message is 552 5.3.4 after its data,
  nothing stored; a message under the limit is stored;
- SMTP smuggling: `\\n.\\n`, `\\r\\n.\\n`, `\\n.\\r\\n`, bare CR variants never end DATA early, never create a
  second message, the smuggled MAIL FROM is never executed, such a message gets a 5xx;
- STARTTLS injection (CVE-2011-0411): "STARTTLS\\r\\nRSET\\r\\n" in one packet; RSET is not answered in TLS;
- STARTTLS forgets everything from before TLS (RFC 3207 4.2): EHLO, the transaction and a plaintext AUTH;
- relay policy: no open relay on MX (550 5.7.1), unknown local user 550 5.1.1; submission needs AUTH
  (530 5.7.0), MAIL FROM bound to the account and its aliases (553 5.7.1);
- too many recipients: the 101st RCPT gets 452 4.5.3;
- log injection: MAIL FROM:<"a b=c x=y"@example.test> adds no key=value field to the daemon's log;
- brute force: failures are delayed (auth.failure_delay=1), then refused even with the right password
  from that address for that login, while other sessions, other users of that address and other
  addresses are served;
- auth.allow_plaintext=never: no AUTH advertised on plaintext, AUTH gets 538 5.7.11;
- idle timeout (smtp.idle_timeout=5): 421 4.4.2 and close;
- 200 concurrent connections each deliver one message, all stored;
- kill -9 in the middle of a burst: after restart every message that got 250 is present and intact, and
  every stored message is complete.
Every socket has a timeout; apart from the idle-timeout wait (run in parallel) the file takes well under 60 s.
"""

import random
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (ALICE, ALICE_ALIAS, BOB, Daemon, RawSMTP, SMTPError, deliver_raw, dot_stuff,  # noqa: E402
                     make_message, start_daemon, stored_matches, unique_id)

MAX_SIZE = 1024 * 1024
REMOTE = "sender@remote.test"


def reply_has(reply, code, enhanced=None):
    got_code, lines = reply
    if got_code != code:
        return False
    return enhanced is None or any(enhanced in line for line in lines)


def fmt(reply):
    return f"{reply[0]} {' | '.join(reply[1])}" if reply else "no reply"


def safe_reply(s, command=None):
    """A reply, or (None, [error]) if the connection failed."""
    try:
        return s.cmd(command) if command is not None else s.reply()
    except (OSError, SMTPError, ssl.SSLError) as exc:
        return None, [f"{type(exc).__name__}: {exc}"]


# ---- basic verbs, order, syntax ---------------------------------------------------------------
def test_basic_verbs(checks, d):
    with RawSMTP(d.mx_port) as s:
        checks.check(s.banner[0] == 220, "banner: 220 greeting", fmt(s.banner))
        code, lines = s.cmd("EHLO probe.e2e.test")
        exts = [l[4:].upper() for l in lines[1:]]
        checks.check(code == 250, "EHLO: 250", fmt((code, lines)))
        for ext in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"):
            checks.check(ext in exts, f"EHLO on MX advertises {ext}", exts)
        checks.check(f"SIZE {MAX_SIZE}" in exts, f"EHLO advertises SIZE {MAX_SIZE} (the configured limit)", exts)
        checks.check(s.cmd("VRFY alice@example.test")[0] == 252, "VRFY: 252")
        checks.check(s.cmd("HELP")[0] == 214, "HELP: 214")
        checks.check(s.cmd("NOOP")[0] == 250, "NOOP: 250")
        checks.check(s.cmd("RSET")[0] == 250, "RSET: 250")
        checks.check(s.cmd("HELO probe.e2e.test")[0] == 250, "HELO: 250")
        code, lines = s.cmd("QUIT")
        checks.check(code == 221, "QUIT: 221", fmt((code, lines)))
        checks.check(s.wait_closed(3), "QUIT: the server closes the connection")


def test_out_of_order(checks, d):
    with RawSMTP(d.mx_port) as s:
        r = safe_reply(s, f"MAIL FROM:<{REMOTE}>")
        checks.check(reply_has(r, 503, "5.5.1"), "MAIL before EHLO: 503 5.5.1", fmt(r))
        for line in (f"RCPT TO:<{ALICE}>", "DATA", "AUTH PLAIN"):
            r = safe_reply(s, line)
            checks.check(reply_has(r, 503, "5.5.1") and "HELO/EHLO" in " ".join(r[1]),
                         f"{line.split()[0]} before EHLO: 503 5.5.1 send HELO/EHLO first", fmt(r))
        s.ehlo()
        r = safe_reply(s, f"RCPT TO:<{ALICE}>")
        checks.check(reply_has(r, 503, "5.5.1"), "RCPT before MAIL: 503 5.5.1", fmt(r))
        r = safe_reply(s, "DATA")
        checks.check(reply_has(r, 503, "5.5.1"), "DATA before MAIL: 503 5.5.1", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{REMOTE}>")
        checks.check(r[0] == 250, "MAIL after EHLO: 250", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{REMOTE}>")
        checks.check(r[0] == 503, "a second MAIL in one transaction: 503", fmt(r))
        r = safe_reply(s, "DATA")
        # RFC 5321 3.3 allows 503 (out of sequence) or 554 (no valid recipients) here.
        checks.check(r[0] in (503, 554) and "5.5.1" in " ".join(r[1]), "DATA before any RCPT: 503 or 554, 5.5.1",
                     fmt(r))
        r = safe_reply(s, "AUTH PLAIN")
        checks.check(reply_has(r, 503, "5.5.1") and "transaction" in " ".join(r[1]),
                     "AUTH inside a mail transaction: 503 5.5.1 (RFC 4954 4)", fmt(r))
        r = safe_reply(s, f"RCPT TO:<{ALICE}>")
        checks.check(r[0] == 250, "RCPT after MAIL: 250", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{REMOTE}>")
        checks.check(reply_has(r, 503, "5.5.1"), "MAIL after RCPT: 503 5.5.1 (nested)", fmt(r))
        r = safe_reply(s, "RSET")
        checks.check(r[0] == 250, "RSET ends the transaction: 250", fmt(r))
        r = safe_reply(s, "DATA")
        checks.check(reply_has(r, 503, "5.5.1"), "DATA after RSET: 503 5.5.1", fmt(r))
        r = safe_reply(s, "NOOP")
        checks.check(r[0] == 250, "session goes on after out-of-order commands", fmt(r))


def test_nul_bytes(checks, d):
    with RawSMTP(d.mx_port) as s:
        s.ehlo()
        r = safe_reply(s, b"NO\x00OP")
        checks.check(reply_has(r, 500, "5.5.2"), "NUL byte in a verb: 500 5.5.2", fmt(r))
        r = safe_reply(s, b"MAIL FROM:<ali\x00ce@example.test>")
        checks.check(reply_has(r, 500, "5.5.2"), "NUL byte in MAIL FROM: 500 5.5.2", fmt(r))
        r = safe_reply(s, "NOOP")
        checks.check(r[0] == 250, "session goes on after NUL bytes", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{REMOTE}>")
        checks.check(r[0] == 250, "no transaction was started by the NUL command (MAIL now 250)", fmt(r))


def test_malformed_addresses(checks, d):
    bad_mail = ["MAIL FROM:<alice@example.test", "MAIL FROM:<alice@exa mple.test>",
                "MAIL FROM:<<alice@example.test>>", "MAIL FROM <alice@example.test>",
                "MAIL FROM:<alice@>"]
    bad_rcpt = ["RCPT TO:<alice@@example.test>", "RCPT TO:<>", "RCPT TO:<alice@example.test",
                "RCPT TO:<@>", "RCPT TO:alice@example.test>", "RCPT TO:<a\"b@example.test>"]
    with RawSMTP(d.mx_port) as s:
        s.ehlo()
        for line in bad_mail:
            r = safe_reply(s, line)
            checks.check(r[0] == 501, f"malformed {line!r}: 501", fmt(r))
        r = safe_reply(s, "MAIL FROM:<>")
        checks.check(r[0] == 250, "null reverse-path MAIL FROM:<> on MX: 250", fmt(r))
        for line in bad_rcpt:
            r = safe_reply(s, line)
            checks.check(r[0] == 501, f"malformed {line!r}: 501", fmt(r))
        r = safe_reply(s, "RSET")
        checks.check(r[0] == 250, "session goes on after malformed addresses", fmt(r))


def test_long_line(checks, d):
    with RawSMTP(d.mx_port) as s:
        s.ehlo()
        r = safe_reply(s, "NOOP " + "x" * 600)
        checks.check(reply_has(r, 500, "5.5.2"), "command line of 607 octets: 500 5.5.2", fmt(r))
        r = safe_reply(s, "NOOP")
        checks.check(r[0] == 250, "session goes on after an over-long line", fmt(r))
        r = safe_reply(s, "NOOP " + "y" * 505)  # 512 octets with CRLF
        checks.check(r[0] == 250, "command line of exactly 512 octets (with CRLF) is accepted", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{'z' * 700}@remote.test>")
        checks.check(r[0] in (500, 501), "over-long MAIL FROM line: 500/501", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{REMOTE}>")
        checks.check(r[0] == 250, "the over-long MAIL line started no transaction", fmt(r))


def test_ten_megabytes_no_newline(checks, d):
    hwm_before = d.proc_status("VmHWM")
    rss_before = d.proc_status("VmRSS")
    closed_while_sending = False
    s = RawSMTP(d.mx_port, timeout=15)
    try:
        s.ehlo()
        chunk = b"A" * 65536
        sent = 0
        try:
            while sent < 10 * 1024 * 1024:
                s.sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            closed_while_sending = True
        closed = closed_while_sending or s.wait_closed(10)
        checks.check(closed, "10 MB without a newline: the server closes the connection",
                     f"sent {sent} bytes, connection still open")
    finally:
        s.close()
    checks.check(d.alive(), "10 MB without a newline: the daemon is still running")
    hwm_after = d.proc_status("VmHWM")
    if hwm_before is not None and hwm_after is not None:
        growth = hwm_after - max(hwm_before, rss_before or 0)
        checks.check(growth < 8 * 1024, "10 MB without a newline: peak RSS grew by less than 8 MiB",
                     f"VmHWM {hwm_before} -> {hwm_after} KiB")
        checks.note(f"VmHWM before {hwm_before} KiB, after {hwm_after} KiB")
    try:
        with RawSMTP(d.mx_port) as other:
            r = safe_reply(other, "NOOP")
        ok = r[0] == 250
    except (OSError, SMTPError) as exc:
        ok, r = False, (None, [str(exc)])
    checks.check(ok, "10 MB without a newline: another client is served meanwhile", fmt(r))


def test_size_limits(checks, d):
    before = d.mail_count(ALICE)
    with RawSMTP(d.mx_port, timeout=20) as s:
        s.ehlo()
        r = safe_reply(s, f"MAIL FROM:<{REMOTE}> SIZE={MAX_SIZE * 2}")
        checks.check(reply_has(r, 552, "5.3.4"), "MAIL FROM ... SIZE= over the limit: 552 5.3.4 up front", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{REMOTE}> SIZE={MAX_SIZE // 2}")
        checks.check(r[0] == 250, "MAIL FROM ... SIZE= under the limit: 250", fmt(r))
        r = safe_reply(s, f"RCPT TO:<{ALICE}>")
        r2 = safe_reply(s, "DATA")
        if checks.check(r[0] == 250 and r2[0] == 354, "oversized message: RCPT 250, DATA 354", fmt(r) + fmt(r2)):
            mid = unique_id("oversize")
            body = b"".join(b"%07d oversized message line of some length........................\r\n" % i
                            for i in range(2 * MAX_SIZE // 70))
            msg = make_message(REMOTE, [ALICE], "oversized", mid, body=body)
            try:
                s.send(dot_stuff(msg) + b".\r\n")
                r = safe_reply(s)
            except OSError as exc:
                r = (None, [str(exc)])
            checks.check(reply_has(r, 552, "5.3.4"), "message over SIZE: 552 5.3.4 after the data", fmt(r))
            r = safe_reply(s, "NOOP")
            checks.check(r[0] == 250, "oversized message: the session goes on (data was read to the end)", fmt(r))
            checks.check(d.find_message(ALICE, mid, timeout=0.5) is None and d.mail_count(ALICE) == before,
                         "oversized message: nothing stored")
    mid = unique_id("undersize")
    body = b"".join(b"%07d a message just under the size limit..............................\r\n" % i
                    for i in range(int(MAX_SIZE * 0.85) // 72))
    msg = make_message(REMOTE, [ALICE], "under the limit", mid, body=body)
    code = deliver_raw(d.mx_port, REMOTE, [ALICE], msg, timeout=20)
    checks.check(code == 250, "message of 85% of SIZE: 250", code)
    entry = d.find_message(ALICE, mid)
    if checks.check(entry is not None, "message of 85% of SIZE: stored"):
        ok, why = stored_matches(d.mail_cat(ALICE, entry["uid"]), REMOTE, msg)
        checks.check(ok, "message of 85% of SIZE: stored bytes exact", why)


# ---- smuggling ----------------------------------------------------------------------------------
SMUGGLE_SEPARATORS = [
    ("LF.LF", b"\n.\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CR.CR", b"\r.\r"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CR.CRLF", b"\r.\r\n"),
]


def smuggle_once(checks, d, label, separator, smuggled_from):
    """One DATA with an embedded fake end-of-data followed by a second transaction."""
    mid = unique_id(f"smuggle-{label}")
    smuggled_mid = unique_id(f"smuggled-{label}")
    first = (f"From: <{REMOTE}>\r\nTo: <{ALICE}>\r\nSubject: smuggle {label}\r\n"
             f"Message-ID: <{mid}>\r\n\r\nfirst part").encode()
    second = (f"MAIL FROM:<{smuggled_from}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n"
              f"From: <{smuggled_from}>\r\nSubject: smuggled {label}\r\nMessage-ID: <{smuggled_mid}>\r\n\r\n"
              f"smuggled body\r\n").encode()
    alice_before, bob_before = d.mail_count(ALICE), d.mail_count(BOB)
    with RawSMTP(d.mx_port) as s:
        s.ehlo()
        ok = (s.cmd(f"MAIL FROM:<{REMOTE}>")[0] == 250 and s.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
              and s.cmd("DATA")[0] == 354)
        if not checks.check(ok, f"smuggling {label}: transaction reaches DATA"):
            return
        s.send(first + separator + second + b".\r\n")
        r = safe_reply(s)
        checks.check(r[0] is not None and 500 <= r[0] < 600,
                     f"smuggling {label}: the message is rejected with a 5xx (policy: bare CR/LF refused)",
                     fmt(r))
        if r[0] != 550 or not any("5.6.11" in l for l in r[1]):
            checks.note(f"smuggling {label}: reply was {fmt(r)} (policy says 550 5.6.11)")
        # If DATA had ended early, replies to the smuggled MAIL/RCPT/DATA/. would be queued up now.
        r = safe_reply(s, "NOOP")
        extra = s.pending_data(0.3) if r[0] is not None else None
        checks.check(r[0] == 250 and not extra,
                     f"smuggling {label}: no replies to smuggled commands (next reply is our NOOP's)",
                     f"{fmt(r)}; extra bytes {extra!r}")
    checks.check(d.mail_count(BOB) == bob_before and d.find_message(BOB, smuggled_mid, timeout=0) is None,
                 f"smuggling {label}: the smuggled MAIL FROM:<{smuggled_from}> created no message")
    checks.check(d.mail_count(ALICE) - alice_before <= 1 and d.find_message(ALICE, smuggled_mid, timeout=0) is None,
                 f"smuggling {label}: no second message created")


def test_smuggling(checks, d):
    # Positive control: the same path with clean CRLF data is accepted, so the 5xx below means something.
    mid = unique_id("clean-control")
    msg = make_message(REMOTE, [ALICE], "clean control", mid)
    checks.check(deliver_raw(d.mx_port, REMOTE, [ALICE], msg) == 250,
                 "smuggling control: a clean CRLF message on the same path gets 250")
    for label, sep in SMUGGLE_SEPARATORS:
        smuggle_once(checks, d, label, sep, f"smuggled-{label.replace('.', '').lower()}@evil.test")
    # Bare LF in a header and bare CR in the body, with no dot involved: also rejected.
    for label, payload in (("bare LF in a header", b"Subject: x\nX-Injected: y\r\n\r\nbody\r\n"),
                           ("bare CR in the body", b"Subject: x\r\n\r\nbo\rdy\r\n")):
        before = d.mail_count(ALICE)
        with RawSMTP(d.mx_port) as s:
            s.ehlo()
            s.cmd(f"MAIL FROM:<{REMOTE}>")
            s.cmd(f"RCPT TO:<{ALICE}>")
            s.cmd("DATA")
            s.send(payload + b".\r\n")
            r = safe_reply(s)
        checks.check(r[0] is not None and 500 <= r[0] < 600, f"{label}: 5xx", fmt(r))
        checks.check(d.mail_count(ALICE) == before, f"{label}: nothing stored")


# ---- STARTTLS injection -------------------------------------------------------------------------
def test_starttls_injection(checks, d, port, role):
    ctx = d.client_tls_context()
    with RawSMTP(port) as s:
        s.ehlo()
        s.send(b"STARTTLS\r\nRSET\r\n")
        r = safe_reply(s)
        if not checks.check(r[0] == 220, f"STARTTLS injection ({role}): STARTTLS answered 220", fmt(r)):
            return
        if s.buf:
            checks.note(f"STARTTLS injection ({role}): plaintext after the 220: {s.buf!r}")
        try:
            s.sock = ctx.wrap_socket(s.sock, server_hostname="localhost")
            s.buf = b""
        except (ssl.SSLError, OSError) as exc:
            checks.check(True, f"STARTTLS injection ({role}): server refused to go on (handshake ended: {exc})")
            return
        r = safe_reply(s, "EHLO after.tls.test")
        if r[0] is None:
            checks.check(True, f"STARTTLS injection ({role}): server closed instead of answering in TLS")
            return
        checks.check(r[0] == 250 and len(r[1]) >= 2,
                     f"STARTTLS injection ({role}): first reply inside TLS is our EHLO's, not the RSET's", fmt(r))
        r = safe_reply(s, "NOOP")
        extra = s.pending_data(0.3)
        checks.check(r[0] == 250 and not extra,
                     f"STARTTLS injection ({role}): no stray reply inside TLS", f"{fmt(r)} extra={extra!r}")


# ---- log injection --------------------------------------------------------------------------------
def log_fields(line):
    """The key=value fields of one log line as a reader sees them: values are bare words or
    double-quoted with backslash escapes; bare words without '=' (the module) are skipped."""
    fields, i, n = [], 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        j = i
        while j < n and line[j] not in "= ":
            j += 1
        if j >= n or line[j] != "=":
            i = j
            continue
        key, j = line[i:j], j + 1
        if j < n and line[j] == '"':
            j += 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            j += 1
        else:
            while j < n and line[j] != " ":
                j += 1
        fields.append((key, line[i + len(key) + 1:j]))
        i = j
    return fields


def test_log_injection(checks, d):
    """A quoted local part with spaces and '=' (RFC 5321 allows it) stays one log value."""
    evil_from = '"a b=c x=y"@example.test'
    evil_rcpt = '"p q=r level=error"@example.test'
    with RawSMTP(d.mx_port) as s:
        s.ehlo("evil.example.test")
        r = s.cmd(f"MAIL FROM:<{evil_from}>")
        checks.check(r[0] == 250, "log injection: MAIL FROM with a quoted local part is accepted", fmt(r))
        r = s.cmd(f"RCPT TO:<{evil_rcpt}>")
        checks.check(r[0] == 550, "log injection: RCPT TO an unknown quoted local part is refused", fmt(r))
        s.cmd("QUIT")
    time.sleep(0.3)
    log = d.stderr_text().splitlines()
    helo = [ln for ln in log if "event=helo" in ln and "helo=evil.example.test" in ln]
    session = dict(log_fields(helo[-1])).get("session") if helo else None
    lines = [ln for ln in log if session and f"session={session} " in ln and
             ("event=mail-from" in ln or "event=rcpt-to" in ln or "event=helo" in ln)]
    checks.check(len(lines) == 3, "log injection: helo, mail-from and rcpt-to were logged", lines)
    allowed = {"ts", "prog", "level", "session", "event", "verb", "helo", "from", "to", "result", "target",
               "account"}
    for ln in lines:
        keys = [k for k, _ in log_fields(ln)]
        checks.check(set(keys) <= allowed and len(keys) == len(set(keys)),
                     "log injection: the client added no key of its own", ln)
    mail = next((ln for ln in lines if "event=mail-from" in ln), "")
    checks.check(dict(log_fields(mail)).get("from") == '"<\\"a b=c x=y\\"@example.test>"',
                 "log injection: from= is one quoted value with escaped quotes", mail)


def test_starttls_forgets_auth(checks, d):
    """RFC 3207 4.2: a login made before STARTTLS is gone inside TLS (as are EHLO and MAIL)."""
    with RawSMTP(d.submission_port) as s:
        s.ehlo()
        r = s.auth_plain(ALICE, d.passwords[ALICE])
        if not checks.check(r[0] == 235, "STARTTLS forgets AUTH: AUTH PLAIN in the clear on loopback: 235", fmt(r)):
            return
        r = s.cmd(f"MAIL FROM:<{ALICE}>")
        checks.check(r[0] == 250, "STARTTLS forgets AUTH: MAIL before STARTTLS: 250", fmt(r))
        r = s.cmd("STARTTLS")
        checks.check(r[0] == 220, "STARTTLS forgets AUTH: STARTTLS in a transaction: 220", fmt(r))
        s.sock = d.client_tls_context().wrap_socket(s.sock, server_hostname="localhost")
        s.buf = b""
        r = safe_reply(s, "MAIL FROM:<%s>" % ALICE)
        checks.check(r[0] == 503, "STARTTLS forgets EHLO: MAIL before EHLO inside TLS: 503", fmt(r))
        exts = [e.upper() for e in s.ehlo()]
        checks.check(any(e.startswith("AUTH") for e in exts),
                     "STARTTLS forgets AUTH: EHLO inside TLS offers AUTH again", exts)
        r = safe_reply(s, f"MAIL FROM:<{ALICE}>")
        checks.check(reply_has(r, 530, "5.7.0"), "STARTTLS forgets AUTH: MAIL inside TLS needs AUTH: 530 5.7.0",
                     fmt(r))
        r = s.auth_plain(ALICE, d.passwords[ALICE])
        checks.check(r[0] == 235, "STARTTLS forgets AUTH: AUTH inside TLS: 235", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{ALICE}>")
        checks.check(r[0] == 250, "STARTTLS forgets AUTH: MAIL after AUTH inside TLS: 250", fmt(r))


# ---- policy ---------------------------------------------------------------------------------------
def test_relay_policy(checks, d):
    with RawSMTP(d.mx_port) as s:
        s.ehlo()
        s.cmd(f"MAIL FROM:<{REMOTE}>")
        r = safe_reply(s, "RCPT TO:<victim@elsewhere.example>")
        checks.check(reply_has(r, 550, "5.7.1"), "MX: non-local recipient without AUTH: 550 5.7.1 (no open relay)",
                     fmt(r))
        r = safe_reply(s, "RCPT TO:<nosuchuser@example.test>")
        checks.check(reply_has(r, 550, "5.1.1"), "MX: unknown local user: 550 5.1.1", fmt(r))
        r = safe_reply(s, f"RCPT TO:<{ALICE}>")
        checks.check(r[0] == 250, "MX: local user: 250", fmt(r))
        r = safe_reply(s, f"RCPT TO:<{ALICE_ALIAS}>")
        checks.check(r[0] == 250, "MX: alias: 250", fmt(r))
        s.cmd("RSET")

    with RawSMTP(d.submission_port) as s:
        exts = [e.upper() for e in s.ehlo()]
        checks.check(any(e.startswith("AUTH") for e in exts),
                     "submission: AUTH advertised on loopback plaintext (allow_plaintext=loopback default)", exts)
        r = safe_reply(s, f"MAIL FROM:<{ALICE}>")
        checks.check(reply_has(r, 530, "5.7.0"), "submission: MAIL before AUTH: 530 5.7.0", fmt(r))
        r = safe_reply(s, "RCPT TO:<victim@elsewhere.example>")
        checks.check(r[0] is not None and r[0] >= 500, "submission: RCPT before AUTH refused", fmt(r))
        r = s.auth_plain(ALICE, "wrong-password")
        checks.check(reply_has(r, 535, "5.7.8"), "submission: wrong password: 535 5.7.8", fmt(r))
        r = s.auth_plain(ALICE, d.passwords[ALICE])
        checks.check(r[0] == 235, "submission: AUTH PLAIN: 235", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{BOB}>")
        checks.check(reply_has(r, 553, "5.7.1"), "submission: MAIL FROM another account's address: 553 5.7.1",
                     fmt(r))
        r = safe_reply(s, "MAIL FROM:<someone@elsewhere.example>")
        checks.check(reply_has(r, 553, "5.7.1"), "submission: MAIL FROM a foreign address: 553 5.7.1", fmt(r))
        r = safe_reply(s, f"MAIL FROM:<{ALICE_ALIAS}>")
        checks.check(r[0] == 250, "submission: MAIL FROM the account's alias: 250", fmt(r))
        r = safe_reply(s, "RCPT TO:<someone@elsewhere.example>")
        checks.check(r[0] == 250, "submission: authenticated mail to a non-local domain: 250", fmt(r))
        s.cmd("RSET")


def test_too_many_recipients(checks, d):
    with RawSMTP(d.submission_port, timeout=20) as s:
        s.ehlo()
        if not checks.check(s.auth_plain(BOB, d.passwords[BOB])[0] == 235, "recipient limit: AUTH as bob"):
            return
        s.cmd(f"MAIL FROM:<{BOB}>")
        s.send(b"".join(b"RCPT TO:<rcpt%03d@elsewhere.example>\r\n" % i for i in range(101)))
        replies = [safe_reply(s) for _ in range(101)]
        checks.check(all(r[0] == 250 for r in replies[:100]), "recipient limit: the first 100 RCPT get 250",
                     [fmt(r) for r in replies[:100] if r[0] != 250][:3])
        checks.check(reply_has(replies[100], 452, "4.5.3"), "recipient limit: the 101st RCPT gets 452 4.5.3",
                     fmt(replies[100]))
        r = safe_reply(s, "RSET")
        checks.check(r[0] == 250, "recipient limit: session goes on", fmt(r))


# ---- concurrency ------------------------------------------------------------------------------------
def test_concurrent_200(checks, d):
    count = 200
    barrier = threading.Barrier(count, timeout=30)
    results = [None] * count
    messages = []
    for i in range(count):
        rcpt = ALICE if i % 2 == 0 else BOB
        mid = unique_id(f"concurrent-{i}")
        messages.append((rcpt, mid, make_message(REMOTE, [rcpt], f"concurrent {i}", mid)))

    def worker(i):
        rcpt, mid, msg = messages[i]
        s = None
        try:
            s = RawSMTP(d.mx_port, timeout=30)
            s.ehlo()
        except Exception as exc:  # noqa: BLE001
            results[i] = f"connect/EHLO: {exc}"
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        if s is None:
            return
        try:
            steps = [s.cmd(f"MAIL FROM:<{REMOTE}>")[0], s.cmd(f"RCPT TO:<{rcpt}>")[0], s.cmd("DATA")[0]]
            if steps != [250, 250, 354]:
                results[i] = f"refused {steps}"
                return
            s.send(dot_stuff(msg) + b".\r\n")
            code = s.reply()[0]
            results[i] = code
            s.cmd("QUIT")
        except Exception as exc:  # noqa: BLE001
            if results[i] is None:
                results[i] = f"error: {exc}"
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    bad = [(i, r) for i, r in enumerate(results) if r != 250]
    checks.check(not bad, f"200 concurrent connections: every message got 250 ({elapsed:.1f}s)",
                 f"{len(bad)} failed, e.g. {bad[:5]}")
    listed = {}
    for user in (ALICE, BOB):
        for entry in d.mail_list(user):
            listed[(user, str(entry.get("message_id") or "").strip("<>"))] = entry
    missing = [mid for rcpt, mid, _ in messages if (rcpt, mid) not in listed]
    checks.check(not missing, "200 concurrent connections: every message is stored", f"missing {missing[:5]}")
    wrong = []
    for rcpt, mid, msg in messages:
        entry = listed.get((rcpt, mid))
        if entry is not None:
            ok, why = stored_matches(d.mail_cat(rcpt, entry["uid"]), REMOTE, msg)
            if not ok:
                wrong.append((mid, why))
    checks.check(not wrong, "200 concurrent connections: every stored message is byte-exact", wrong[:3])
    checks.check(d.alive(), "200 concurrent connections: the daemon is still running")


# ---- durability under kill -9 -----------------------------------------------------------------------
def test_kill9_durability(checks):
    with Daemon("crash", options=["server.max_connections_per_ip=1000"]) as d:
        if not start_daemon(checks, d):
            return
        rng = random.Random(20251124)
        sizes = [rng.choice([300, 2000, 20000, 120000, 400000]) for _ in range(100000)]
        lock = threading.Lock()
        sent = {}  # message id -> (bytes, acknowledged)
        counter = iter(range(10 ** 9))
        stop = threading.Event()

        def worker():
            try:
                s = RawSMTP(d.mx_port, timeout=10)
                s.ehlo()
                while not stop.is_set():
                    with lock:
                        n = next(counter)
                    mid = unique_id(f"durable-{n}")
                    body = (b"%08d durability payload line.............................................\r\n" % n)
                    msg = make_message(REMOTE, [ALICE], f"durable {n}", mid,
                                       body=body * max(1, sizes[n] // len(body)))
                    if [s.cmd(f"MAIL FROM:<{REMOTE}>")[0], s.cmd(f"RCPT TO:<{ALICE}>")[0],
                            s.cmd("DATA")[0]] != [250, 250, 354]:
                        return
                    with lock:
                        sent[mid] = (msg, False)
                    s.send(dot_stuff(msg) + b".\r\n")
                    code = s.reply()[0]
                    if code == 250:
                        with lock:
                            sent[mid] = (msg, True)
            except Exception:  # noqa: BLE001 - the kill ends every session
                return

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            with lock:
                acked = sum(1 for _, a in sent.values() if a)
            if acked >= 80:
                break
            time.sleep(0.02)
        d.kill9()
        stop.set()
        for t in threads:
            t.join(15)
        acked_ids = {mid for mid, (_, a) in sent.items() if a}
        checks.note(f"kill -9 after {len(acked_ids)} acknowledged of {len(sent)} started messages")
        checks.check(len(acked_ids) > 0, "kill -9: some deliveries were acknowledged before the kill")
        if not start_daemon(checks, d, "kill -9: ternd restarts on the same data dir"):
            return
        stored = {}
        duplicates = []
        for entry in d.mail_list(ALICE):
            mid = str(entry.get("message_id") or "").strip("<>")
            if mid in stored:
                duplicates.append(mid)
            stored[mid] = entry
        lost = [mid for mid in acked_ids if mid not in stored]
        checks.check(not lost, f"kill -9: all {len(acked_ids)} messages that got 250 are present",
                     f"{len(lost)} lost, e.g. {lost[:3]}")
        checks.check(not duplicates, "kill -9: no message stored twice", duplicates[:3])
        damaged = []
        unacked_present = 0
        for mid, entry in stored.items():
            if mid not in sent:
                continue
            msg, acked = sent[mid]
            unacked_present += 0 if acked else 1
            data = d.mail_cat(ALICE, entry["uid"])
            ok, why = stored_matches(data, REMOTE, msg)
            if not ok or entry.get("size") != len(data):
                damaged.append((mid, "acked" if acked else "unacked", why, entry.get("size"), len(data)))
        checks.note(f"kill -9: {unacked_present} messages without a 250 are present (allowed, if complete)")
        checks.check(not damaged, "kill -9: every stored message is complete and its size matches",
                     damaged[:3])
        mid = unique_id("after-restart")
        msg = make_message(REMOTE, [ALICE], "after restart", mid)
        checks.check(deliver_raw(d.mx_port, REMOTE, [ALICE], msg) == 250 and d.find_message(ALICE, mid),
                     "kill -9: after restart a new delivery is stored")
        status = d.stop()
        checks.check(status == 0, "kill -9 daemon: SIGTERM exits 0 after the restart", status)


# ---- brute force ------------------------------------------------------------------------------------
def auth_attempt(d, ctx, user, password, source="127.0.0.1"):
    """One AUTH PLAIN on a fresh submissions connection; returns (reply, seconds the reply took)."""
    with RawSMTP(d.submissions_port, tls_context=ctx, source_address=(source, 0), timeout=15) as s:
        s.ehlo()
        start = time.monotonic()
        r = s.auth_plain(user, password)
        return r, time.monotonic() - start


def test_brute_force(checks):
    options = ["auth.max_failures=3", "auth.failure_delay=1", "auth.failure_window=300"]
    with Daemon("bruteforce", options=options) as d:
        if not start_daemon(checks, d):
            return
        ctx = d.client_tls_context()
        r, took = auth_attempt(d, ctx, ALICE, "wrong-1")
        checks.check(reply_has(r, 535, "5.7.8"), "brute force: first wrong password: 535 5.7.8", fmt(r))
        checks.check(took >= 0.8, f"brute force: the failure reply is delayed (failure_delay=1; took {took:.2f}s)")

        # While the second failure is being delayed, another session is served at once.
        holder = {}
        t = threading.Thread(target=lambda: holder.update(result=auth_attempt(d, ctx, ALICE, "wrong-2")))
        t.start()
        time.sleep(0.2)
        start = time.monotonic()
        try:
            with RawSMTP(d.mx_port, timeout=5) as other:
                other.ehlo()
                r_other = other.cmd("NOOP")
            quick = time.monotonic() - start
        except (OSError, SMTPError) as exc:
            r_other, quick = (None, [str(exc)]), 99
        t.join(20)
        checks.check(r_other[0] == 250 and quick < 0.7,
                     f"brute force: another session is served during a delayed failure ({quick:.2f}s)", fmt(r_other))
        r2 = holder.get("result", ((None, ["no result"]), 0))[0]
        checks.check(r2[0] == 535, "brute force: second wrong password: 535", fmt(r2))
        r, _ = auth_attempt(d, ctx, ALICE, "wrong-3")
        checks.check(r[0] == 535, "brute force: third wrong password: 535", fmt(r))

        r, took = auth_attempt(d, ctx, ALICE, d.passwords[ALICE])
        checks.check(r[0] in (454, 535) and (r[0] != 454 or any("4.7.0" in l for l in r[1])),
                     "brute force: after max_failures the right password is refused (454 4.7.0 or 535)", fmt(r))
        if r[0] == 535:
            checks.check(took >= 0.8, f"brute force: the refusal is delayed ({took:.2f}s)")
        r, _ = auth_attempt(d, ctx, BOB, d.passwords[BOB])
        checks.check(r[0] == 235, "brute force: another user from the same address still logs in (the "
                     "address is throttled per login; auth.max_failures_per_ip is far higher)", fmt(r))
        try:
            r, _ = auth_attempt(d, ctx, BOB, d.passwords[BOB], source="127.0.0.2")
            checks.check(r[0] == 235, "brute force: a client from another address (127.0.0.2) still logs in",
                         fmt(r))
        except OSError as exc:
            checks.note(f"skip: cannot connect from 127.0.0.2 ({exc})")
        checks.check(d.alive(), "brute force: the daemon is still running")
        status = d.stop()
        checks.check(status == 0, "brute-force daemon: SIGTERM exits 0", status)


# ---- idle timeout and allow_plaintext=never -----------------------------------------------------------
class IdleWatcher(threading.Thread):
    """Opens a connection, says nothing, and records what the server sends and when it closes."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.reply = None
        self.reply_after = None
        self.closed_after = None
        self.error = None

    def run(self):
        try:
            s = RawSMTP(self.port, timeout=20)
        except Exception as exc:  # noqa: BLE001
            self.error = exc
            return
        start = time.monotonic()
        try:
            self.reply = s.reply()
            self.reply_after = time.monotonic() - start
        except Exception as exc:  # noqa: BLE001
            self.error = exc
        if s.wait_closed(5):
            self.closed_after = time.monotonic() - start
        s.close()


def test_plaintext_never(checks, d):
    with RawSMTP(d.submission_port) as s:
        exts = [e.upper() for e in s.ehlo()]
        checks.check(not any(e.startswith("AUTH") for e in exts),
                     "allow_plaintext=never: AUTH not advertised on plaintext submission", exts)
        r = s.auth_plain(ALICE, d.passwords[ALICE])
        checks.check(reply_has(r, 538, "5.7.11"), "allow_plaintext=never: AUTH on plaintext: 538 5.7.11", fmt(r))
        s.starttls(d.client_tls_context())
        exts = [e.upper() for e in s.ehlo()]
        checks.check(any(e.startswith("AUTH") for e in exts), "allow_plaintext=never: AUTH advertised after STARTTLS",
                     exts)
        r = s.auth_plain(ALICE, d.passwords[ALICE])
        checks.check(r[0] == 235, "allow_plaintext=never: AUTH after STARTTLS: 235", fmt(r))


def run(checks):
    idle = Daemon("idle", options=["smtp.idle_timeout=5", "auth.allow_plaintext=never"])
    watcher = None
    try:
        if start_daemon(checks, idle):
            watcher = IdleWatcher(idle.mx_port)
            watcher.start()
            test_plaintext_never(checks, idle)

        options = [f"smtp.max_message_size={MAX_SIZE}", "server.max_connections=2000",
                   "server.max_connections_per_ip=1000", "auth.failure_delay=0", "smtp.max_errors=100"]
        with Daemon("hostile", options=options) as d:
            if start_daemon(checks, d):
                for test in (test_basic_verbs, test_ten_megabytes_no_newline, test_out_of_order, test_nul_bytes,
                             test_malformed_addresses, test_long_line, test_size_limits, test_smuggling,
                             test_relay_policy, test_too_many_recipients, test_log_injection, test_starttls_forgets_auth,
                             test_concurrent_200):
                    checks.guard(f"{test.__name__} ran without an exception", test, checks, d)
                for port, role in ((d.mx_port, "MX"), (d.submission_port, "submission")):
                    checks.guard(f"STARTTLS injection ({role}) ran", test_starttls_injection, checks, d, port, role)
                checks.check(d.alive(), "hostile daemon: still running after every hostile case")
                status = d.stop()
                checks.check(status == 0, "hostile daemon: SIGTERM exits 0", f"status {status}\n" + d.stderr_tail())

        checks.guard("test_brute_force ran without an exception", test_brute_force, checks)
        checks.guard("test_kill9_durability ran without an exception", test_kill9_durability, checks)

        if watcher is not None:
            watcher.join(20)
            r = watcher.reply
            checks.check(r is not None and reply_has(r, 421, "4.4.2"),
                         "idle timeout 5s: the server sends 421 4.4.2",
                         f"{fmt(r) if r else None} error={watcher.error}")
            checks.check(watcher.reply_after is not None and 4.0 <= watcher.reply_after <= 15.0,
                         f"idle timeout 5s: the 421 comes after about 5 s ({watcher.reply_after})")
            checks.check(watcher.closed_after is not None, "idle timeout: the server closes the connection")
            status = idle.stop()
            checks.check(status == 0, "idle daemon: SIGTERM exits 0", status)
    finally:
        idle.cleanup()


if __name__ == "__main__":
    harness.main_guard(run)
