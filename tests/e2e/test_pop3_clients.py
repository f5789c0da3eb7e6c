#!/usr/bin/env python3
"""End-to-end: real POP3 clients against a real ternd on loopback (issue 3, Tests).

Mail goes in over SMTP (smtplib to the MX port: a plain message, an 8-bit body, dot-leading lines, about
1,000 lines, 5 MB; and one over a raw socket with BDAT ... LAST and bare LF line endings, which ternd
stores with CRLF line endings), then comes out over POP3:
- Python's poplib: CAPA before and after STLS, USER/PASS over STLS (certificate verified for "localhost"),
  AUTH PLAIN over POP3S (raw `AUTH PLAIN <b64>` through poplib), AUTH PLAIN without initial response and
  AUTH LOGIN dialogues, STAT, LIST, LIST n, UIDL, UIDL n, TOP n 0 / TOP n 5, RETR;
- LIST sizes equal the exact octets RETR sends (lines joined with CRLF, before dot-stuffing), STAT agrees;
- RETR bytes equal `ternd mail cat` with line endings normalized to CRLF, and a message sent over SMTP comes
  back out of RETR as Return-Path + Received + the exact bytes sent;
- UIDL is "<uidvalidity>.<uid>" with the store's UIDs, the same in a later session;
- RETR sets \\Seen (visible in `mail list --json`), DELE + RSET deletes nothing, DELE + QUIT removes the
  message (and the other UIDLs stay), DELE + a dropped connection removes nothing, a second concurrent
  login gets -ERR [IN-USE], PIPELINING answers commands sent in one write in order;
- curl: pop3:// LIST, RETR of one message, pop3s:// with --cacert, --ssl-reqd over the plain port (STLS),
  -X UIDL;
- fetchmail (Debian package): over POP3S with `keep` (nothing deleted), then over STLS with
  `fetchall nokeep` into an MDA that writes each message to a file: every message arrives with the same bytes
  (after fetchmail's own Received header, CR stripped as fetchmail does for an MDA), and the maildrop is empty.
Not covered: mail in the Junk mailbox is not in the maildrop (nothing can put mail into Junk yet).
"""

import base64
import os
import poplib
import pwd
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (ALICE, BOB, Daemon, POP3Error, RawPOP3, SMTPError, make_message, pop3_ok,  # noqa: E402
                     stored_matches, unique_id)

REMOTE = "sender@remote.test"
UIDL_RE = re.compile(r"^(\d+)\.(\d+)$")


def crlf(data):
    """Every LF not preceded by CR as CRLF (a bare CR stays): what POP3 sends for a stored message."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def lf(data):
    return data.replace(b"\r\n", b"\n")


def joined(lines):
    """poplib's RETR/TOP lines back to the message bytes: every line ends in CRLF."""
    return b"".join(l + b"\r\n" for l in lines)


def run_tool(argv, timeout=60, env=None):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=env)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, -1, exc.stdout or b"", b"timed out")


# ---- mail in --------------------------------------------------------------------------------------
def smtp_deliver(checks, d, rcpt, what, msg, mail_options=()):
    try:
        with smtplib.SMTP("127.0.0.1", d.mx_port, timeout=60) as client:
            client.ehlo()
            refused = client.sendmail(REMOTE, [rcpt], msg, mail_options=list(mail_options))
        return checks.check(refused == {}, f"SMTP in: {what} accepted", refused)
    except (smtplib.SMTPException, OSError) as exc:
        checks.check(False, f"SMTP in: {what} accepted", f"{type(exc).__name__}: {exc}")
        return False


def bdat_deliver(d, rcpt, msg):
    """One message with BDAT <n> LAST over a raw socket; returns the final reply code."""
    with harness.RawSMTP(d.mx_port, timeout=30) as s:
        s.ehlo()
        if s.cmd(f"MAIL FROM:<{REMOTE}>")[0] != 250 or s.cmd(f"RCPT TO:<{rcpt}>")[0] != 250:
            return None
        s.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        code, _ = s.reply()
        try:
            s.cmd("QUIT")
        except (OSError, SMTPError):
            pass
        return code


def make_corpus():
    """(key, message bytes, how) for every message alice gets; how is 'smtp', 'smtp8' or 'bdat-lf'."""
    corpus = []
    mid = unique_id("pop3-plain")
    corpus.append(("plain", mid, make_message(REMOTE, [ALICE], "plain pop3 message", mid), "smtp"))

    mid = unique_id("pop3-8bit")
    raw = bytes(b for b in range(1, 256) if b not in (10, 13))
    body = b"".join(raw[i:i + 60] + b"\r\n" for i in range(0, len(raw), 60))
    body += "Grüße, ça va? Ωμέγα 日本語\r\n".encode("utf-8")
    msg = make_message(REMOTE, [ALICE], "8bit body", mid, body=body).replace(
        b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n")
    corpus.append(("8bit", mid, msg, "smtp8"))

    mid = unique_id("pop3-dots")
    corpus.append(("dots", mid, make_message(REMOTE, [ALICE], "dots", mid,
                                             body_lines=[".foo", "..bar", ".", "middle", "...", ". space",
                                                         "end.", "."]), "smtp"))

    mid = unique_id("pop3-1000")
    corpus.append(("1000 lines", mid, make_message(REMOTE, [ALICE], "a thousand lines", mid,
                                                   body_lines=[f"line {i:04d} of a thousand" + (
                                                       " ." if i % 7 else "") for i in range(1000)]), "smtp"))

    mid = unique_id("pop3-5mb")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_=+!?#$%^&*()"
    body = b"".join(b"%06d " % i + line + b"\r\n" for i in range(5 * 1024 * 1024 // (len(line) + 9) + 1))
    corpus.append(("5 MB", mid, make_message(REMOTE, [ALICE], "five megabytes", mid, body=body), "smtp"))

    mid = unique_id("pop3-bdat-lf")
    msg = (f"From: <{REMOTE}>\nTo: <{ALICE}>\nSubject: bare LF via BDAT\nMessage-ID: <{mid}>\n"
           f"Date: Mon, 24 Nov 2025 12:00:00 +0000\n\nfirst line\n.leading dot\n..two dots\n.\nlast line\n").encode()
    corpus.append(("BDAT bare LF", mid, msg, "bdat-lf"))
    return corpus


def deliver_corpus(checks, d, corpus):
    """Delivers the corpus to alice; returns {key: (mail list entry, sent bytes, how)}."""
    got = {}
    for key, mid, msg, how in corpus:
        if how == "bdat-lf":
            code = harness_guard(lambda: bdat_deliver(d, ALICE, msg))
            ok = checks.check(code == 250, f"SMTP in: {key} message via BDAT LAST accepted (250)", code)
        else:
            ok = smtp_deliver(checks, d, ALICE, key, msg, ["BODY=8BITMIME"] if how == "smtp8" else ())
        if not ok:
            continue
        entry = d.find_message(ALICE, mid)
        if checks.check(entry is not None, f"SMTP in: {key} message stored in alice's INBOX"):
            got[key] = (entry, msg, how)
    return got


def harness_guard(func):
    try:
        return func()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


# ---- poplib ---------------------------------------------------------------------------------------
def poplib_stls(d):
    p = poplib.POP3("localhost", d.pop3_port, timeout=30)
    return p


def parse_list(lines):
    out = {}
    for l in lines:
        n, size = l.split()[:2]
        out[int(n)] = int(size)
    return out


def parse_uidl(lines):
    out = {}
    for l in lines:
        n, uid = l.split()[:2]
        out[int(n)] = uid.decode()
    return out


def test_poplib_stls(checks, d, delivered):
    """Session A: STLS + USER/PASS, CAPA, STAT/LIST/UIDL/TOP/RETR; returns {n: retr bytes} and uidl map."""
    ctx = d.client_tls_context()
    result = {"retr": {}, "uidl": {}, "list": {}}
    before = {e["uid"]: e for e in d.mail_list(ALICE)}
    checks.check(before and not any("\\Seen" in (e.get("flags") or []) for e in before.values()),
                 "before any RETR: no message in alice's INBOX has \\Seen",
                 {u: e.get("flags") for u, e in before.items()})
    p = poplib_stls(d)
    try:
        welcome = p.getwelcome()
        checks.check(welcome.startswith(b"+OK"), "poplib: greeting is +OK", welcome)
        checks.check(not re.search(rb"<[^>]*@[^>]*>", welcome),
                     "greeting carries no APOP timestamp (APOP is not offered)", welcome)
        caps = {k.upper(): [a.upper() for a in v] for k, v in p.capa().items()}
        for cap in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION", "STLS", "USER"):
            checks.check(cap in caps, f"CAPA on plaintext loopback lists {cap}", sorted(caps))
        checks.check("PLAIN" in caps.get("SASL", []) and "LOGIN" in caps.get("SASL", []),
                     "CAPA on plaintext loopback: SASL PLAIN LOGIN", caps.get("SASL"))
        checks.check("APOP" not in caps, "CAPA does not list APOP", sorted(caps))
        p.stls(context=ctx)
        checks.check(True, "poplib: STLS + TLS handshake with the certificate verified for localhost")
        caps = {k.upper(): [a.upper() for a in v] for k, v in p.capa().items()}
        checks.check("STLS" not in caps, "CAPA inside TLS no longer lists STLS", sorted(caps))
        checks.check("USER" in caps and "PLAIN" in caps.get("SASL", []), "CAPA inside TLS: USER and SASL PLAIN",
                     caps)
        p.user(ALICE)
        resp = p.pass_(d.passwords[ALICE])
        checks.check(resp.startswith(b"+OK"), "poplib: USER/PASS over STLS: +OK", resp)

        count, total = p.stat()
        resp, lines, _ = p.list()
        listing = parse_list(lines)
        result["list"] = listing
        checks.check(count == len(before) and sorted(listing) == list(range(1, count + 1)),
                     f"STAT/LIST: {len(before)} messages numbered 1..N",
                     f"STAT {count}, LIST {sorted(listing)}, INBOX {len(before)}")
        checks.check(total == sum(listing.values()), "STAT size is the sum of the LIST sizes",
                     f"STAT {total}, sum {sum(listing.values())}")
        bad_single = []
        for n, size in listing.items():
            single = p.list(n)
            if single.split()[1:3] != [str(n).encode(), str(size).encode()]:
                bad_single.append((n, single))
        checks.check(not bad_single, "LIST n agrees with LIST for every message", bad_single[:3])

        resp, lines, _ = p.uidl()
        uidl = parse_uidl(lines)
        result["uidl"] = uidl
        malformed = {n: u for n, u in uidl.items() if not UIDL_RE.match(u)}
        checks.check(sorted(uidl) == sorted(listing) and not malformed,
                     "UIDL: one \"<uidvalidity>.<uid>\" per message", f"{uidl} malformed {malformed}")
        uid_of = {n: int(UIDL_RE.match(u).group(2)) for n, u in uidl.items() if UIDL_RE.match(u)}
        checks.check(sorted(uid_of.values()) == sorted(before) and len({u.split('.')[0] for u in uidl.values()}) == 1,
                     "UIDL: the uid parts are the store's UIDs (mail list), one UIDVALIDITY",
                     f"UIDL {sorted(uid_of.values())} vs store {sorted(before)}")
        checks.check(sorted(uid_of, key=uid_of.get) == sorted(uid_of),
                     "message numbers follow UID order", uid_of)
        bad_single = [(n, p.uidl(n)) for n in uidl if p.uidl(n).split()[1:3] != [str(n).encode(), uidl[n].encode()]]
        checks.check(not bad_single, "UIDL n agrees with UIDL for every message", bad_single[:3])

        key_of_uid = {entry["uid"]: key for key, (entry, _, _) in delivered.items()}
        sizes_wrong, cat_wrong, sent_wrong = [], [], []
        for n in sorted(listing):
            resp, lines, _ = p.retr(n)
            data = joined(lines)
            result["retr"][n] = data
            uid = uid_of.get(n)
            if len(data) != listing[n]:
                sizes_wrong.append((n, listing[n], len(data)))
            stored = d.mail_cat(ALICE, uid) if uid is not None else None
            if stored is None or data != crlf(stored):
                cat_wrong.append((n, uid, len(data), None if stored is None else len(crlf(stored))))
            key = key_of_uid.get(uid)
            if key is not None:
                entry, sent, how = delivered[key]
                if how == "bdat-lf":
                    ok = data.endswith(crlf(sent)) and data.startswith(b"Return-Path: <" + REMOTE.encode() + b">\r\n")
                    why = f"RETR {data[:200]!r}..."
                else:
                    ok, why = stored_matches(data, REMOTE, sent)
                if not ok:
                    sent_wrong.append((key, why))
        checks.check(not sizes_wrong, "LIST sizes equal the exact octets of RETR (CRLF, before dot-stuffing)",
                     sizes_wrong)
        checks.check(not cat_wrong, "RETR bytes equal `ternd mail cat` with line endings as CRLF, every message",
                     cat_wrong)
        checks.check(not sent_wrong and len(key_of_uid) == len(delivered),
                     "RETR gives Return-Path + Received + exactly the bytes sent over SMTP (8-bit, dots, "
                     "1,000 lines, 5 MB, BDAT)", sent_wrong)

        bdat = delivered.get("BDAT bare LF")
        if bdat:
            entry = bdat[0]
            n = next((n for n, u in uid_of.items() if u == entry["uid"]), None)
            stored = d.mail_cat(ALICE, entry["uid"])
            # Issue 10: BDAT's bare LF line ends are made CRLF before the message is stored.
            checks.check(b"\r\nfirst line\r\n" in stored and crlf(stored) == stored,
                         "BDAT bare LF: the stored file has CRLF line endings (normalised on receipt)",
                         stored[-120:])
            checks.check(n is not None and listing.get(n) == len(stored) == entry["size"],
                         "BDAT bare LF: LIST reports the stored size, which is the CRLF size",
                         f"LIST {listing.get(n)}, crlf {len(crlf(stored))}, stored size {entry['size']}")

        thousand = delivered.get("1000 lines")
        if thousand:
            n = next((n for n, u in uid_of.items() if u == thousand[0]["uid"]), None)
            full = result["retr"].get(n, b"")
            head, sep, body = full.partition(b"\r\n\r\n")
            resp, lines, _ = p.top(n, 0)
            top0 = joined(lines)
            checks.check(resp.startswith(b"+OK") and top0 == head + b"\r\n\r\n",
                         "TOP n 0: exactly the header and the blank line", f"{len(top0)} vs {len(head) + 4}")
            resp, lines, _ = p.top(n, 5)
            top5 = joined(lines)
            want = head + b"\r\n\r\n" + b"".join(l + b"\r\n" for l in body.split(b"\r\n")[:5])
            checks.check(top5 == want, "TOP n 5: the header, the blank line and the first 5 body lines",
                         f"got {top5[-200:]!r}\nwant {want[-200:]!r}")
            resp, lines, _ = p.top(n, 100000)
            checks.check(joined(lines) == full, "TOP n with more lines than the body is the whole message")
        dots = delivered.get("dots")
        if dots:
            n = next((n for n, u in uid_of.items() if u == dots[0]["uid"]), None)
            resp, lines, _ = p.top(n, 4)
            checks.check(joined(lines).endswith(b"\r\n\r\n.foo\r\n..bar\r\n.\r\nmiddle\r\n"),
                         "TOP on dot-leading lines: unstuffed correctly by poplib", joined(lines)[-80:])
        resp = p.quit()
        checks.check(resp.startswith(b"+OK"), "poplib: QUIT +OK", resp)
    except (poplib.error_proto, OSError, ssl.SSLError, ValueError) as exc:
        checks.check(False, "poplib STLS session ran without a protocol error", f"{type(exc).__name__}: {exc}")
        try:
            p.close()
        except OSError:
            pass
        return result
    after = {e["uid"]: e for e in d.mail_list(ALICE)}
    unseen = [u for u, e in after.items() if "\\Seen" not in (e.get("flags") or [])]
    checks.check(after and not unseen, "after RETR and QUIT: every retrieved message has \\Seen in mail list",
                 {u: after[u].get("flags") for u in unseen})
    checks.check(sorted(after) == sorted(before), "after RETR and QUIT: nothing was deleted")
    return result


def test_poplib_pop3s(checks, d, first):
    """Session B: POP3S + AUTH PLAIN; UIDL as before; DELE + RSET deletes nothing."""
    ctx = d.client_tls_context()
    before = sorted(e["uid"] for e in d.mail_list(ALICE))
    try:
        with_p = poplib.POP3_SSL("localhost", d.pop3s_port, context=ctx, timeout=30)
    except (OSError, ssl.SSLError, poplib.error_proto) as exc:
        checks.check(False, "poplib POP3_SSL: connected (certificate verified)", exc)
        return
    p = with_p
    try:
        caps = {k.upper(): [a.upper() for a in v] for k, v in p.capa().items()}
        checks.check("STLS" not in caps and "PLAIN" in caps.get("SASL", []),
                     "POP3S CAPA: SASL PLAIN, no STLS", caps)
        token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + d.passwords[ALICE].encode()).decode()
        resp = p._shortcmd(f"AUTH PLAIN {token}")
        checks.check(resp.startswith(b"+OK"), "poplib over POP3S: AUTH PLAIN with initial response: +OK", resp)
        resp, lines, _ = p.uidl()
        checks.check(parse_uidl(lines) == first.get("uidl") and first.get("uidl"),
                     "UIDL in a second session: the same values for the same messages",
                     f"{parse_uidl(lines)} vs {first.get('uidl')}")
        count, total = p.stat()
        resp = p.dele(1)
        checks.check(resp.startswith(b"+OK"), "DELE 1: +OK", resp)
        count2, total2 = p.stat()
        checks.check(count2 == count - 1 and total2 == total - first["list"].get(1, -1),
                     "STAT after DELE leaves the deleted message out", f"{count},{total} -> {count2},{total2}")
        try:
            resp = p.list(1)
        except poplib.error_proto as exc:
            resp = exc.args[0]
        checks.check(resp.startswith(b"-ERR"), "LIST of a message marked deleted: -ERR", resp)
        resp = p.rset()
        checks.check(resp.startswith(b"+OK"), "RSET: +OK", resp)
        checks.check(p.stat() == (count, total), "STAT after RSET: the message is back", p.stat())
        resp, lines, _ = p.retr(1)
        checks.check(joined(lines) == first["retr"].get(1), "RETR 1 after RSET: the same bytes as before")
        resp = p.noop()
        checks.check(resp.startswith(b"+OK"), "NOOP: +OK", resp)
        p.quit()
    except (poplib.error_proto, OSError, ssl.SSLError) as exc:
        checks.check(False, "poplib POP3S session ran without a protocol error", f"{type(exc).__name__}: {exc}")
        try:
            p.close()
        except OSError:
            pass
    checks.check(sorted(e["uid"] for e in d.mail_list(ALICE)) == before, "DELE + RSET + QUIT: nothing deleted")


def login_retry(d, user, port=None, tls=False, timeout=5.0):
    """A RawPOP3 logged in as user, retrying while the maildrop is still locked; (session, status)."""
    deadline = time.monotonic() + timeout
    while True:
        s = RawPOP3(port or (d.pop3s_port if tls else d.pop3_port),
                    tls_context=d.client_tls_context() if tls else None)
        status = s.login(user, d.passwords[user])
        if pop3_ok(status) or "[IN-USE]" not in status or time.monotonic() > deadline:
            return s, status
        s.close()
        time.sleep(0.2)


def test_sasl_and_in_use(checks, d):
    ctx = d.client_tls_context()
    with RawPOP3(d.pop3s_port, tls_context=ctx) as s:
        status = s.auth_login(ALICE, d.passwords[ALICE])
        checks.check(pop3_ok(status), "AUTH LOGIN dialogue (no initial response) over POP3S: +OK", status)
        with RawPOP3(d.pop3_port) as s2:
            s2.stls(ctx)
            status = s2.login(ALICE, d.passwords[ALICE])
            checks.check(status.startswith("-ERR [IN-USE]"),
                         "second concurrent login to the same maildrop: -ERR [IN-USE]", status)
        with RawPOP3(d.pop3_port) as s3:
            status = s3.auth_plain(BOB, d.passwords[BOB], initial=False)
            checks.check(pop3_ok(status),
                         "meanwhile another maildrop opens (AUTH PLAIN without initial response, \"+ \" then "
                         "the response)", status)
            s3.cmd("QUIT")
        checks.check(pop3_ok(s.cmd("QUIT")), "QUIT of the first session: +OK")
    s, status = login_retry(d, ALICE)
    checks.check(pop3_ok(status), "after the first session QUIT, the maildrop can be opened again", status)
    s.cmd("QUIT")
    s.close()


def test_pipelining(checks, d):
    s, status = login_retry(d, ALICE)
    with s:
        if not checks.check(pop3_ok(status), "pipelining: logged in", status):
            return
        s.send(b"STAT\r\nLIST\r\nUIDL\r\nNOOP\r\nLIST 1\r\n")
        stat = s.reply()
        st_list, lst = s.reply(), None
        lst = s.multi() if pop3_ok(st_list) else None
        st_uidl = s.reply()
        uidl = s.multi() if pop3_ok(st_uidl) else None
        noop = s.reply()
        list1 = s.reply()
        ok = (pop3_ok(stat) and lst is not None and uidl is not None and pop3_ok(noop) and pop3_ok(list1)
              and len(lst) == len(uidl) == int(stat.split()[1]) and list1.split()[1:3] == lst[0].decode().split())
        checks.check(ok, "PIPELINING: STAT, LIST, UIDL, NOOP, LIST 1 in one write are answered in order",
                     f"{stat} | {st_list} {lst} | {st_uidl} {uidl} | {noop} | {list1}")
        s.cmd("QUIT")


def test_dele_dropped(checks, d):
    before = sorted(e["uid"] for e in d.mail_list(ALICE))
    s, status = login_retry(d, ALICE)
    if not checks.check(pop3_ok(status), "DELE + drop: logged in", status):
        s.close()
        return
    r1, r2 = s.cmd("DELE 1"), s.cmd("DELE 2")
    checks.check(pop3_ok(r1) and pop3_ok(r2), "DELE + drop: DELE 1 and DELE 2 +OK", f"{r1} | {r2}")
    s.sock.shutdown(socket.SHUT_RDWR)
    s.close()
    time.sleep(1.0)
    checks.check(sorted(e["uid"] for e in d.mail_list(ALICE)) == before,
                 "DELE + connection dropped without QUIT: nothing deleted")
    s, status = login_retry(d, ALICE)
    with s:
        checks.check(pop3_ok(status), "after a dropped connection the maildrop is unlocked again", status)
        stat = s.cmd("STAT")
        checks.check(pop3_ok(stat) and int(stat.split()[1]) == len(before),
                     "after a dropped connection STAT shows every message", stat)
        s.cmd("QUIT")


def test_dele_quit(checks, d, first):
    """Deletes the message with the lowest number whose key is 'plain'; returns the new UIDL map."""
    before = {e["uid"]: e for e in d.mail_list(ALICE)}
    uidl_before = first.get("uidl", {})
    target = 1
    target_uidl = uidl_before.get(target)
    s, status = login_retry(d, ALICE, tls=True)
    with s:
        if not checks.check(pop3_ok(status), "DELE + QUIT: logged in over POP3S", status):
            return None
        checks.check(pop3_ok(s.cmd(f"DELE {target}")), f"DELE {target}: +OK")
        status = s.cmd("QUIT")
        checks.check(pop3_ok(status), "QUIT after DELE: +OK (UPDATE state done)", status)
        checks.check(s.wait_closed(3), "QUIT: the server closes the connection")
    after = {e["uid"]: e for e in d.mail_list(ALICE)}
    gone_uid = int(target_uidl.split(".")[1]) if target_uidl else None
    checks.check(gone_uid is not None and gone_uid not in after and len(after) == len(before) - 1,
                 "DELE + QUIT: the message is gone from `mail list`, the others stay",
                 f"{sorted(before)} -> {sorted(after)}")
    s, status = login_retry(d, ALICE)
    with s:
        st, lines = s.cmd_multi("UIDL")
        now = sorted(l.split()[1].decode() for l in lines or [])
        want = sorted(u for n, u in uidl_before.items() if n != target)
        checks.check(now == want, "after DELE + QUIT: UIDL of the remaining messages unchanged", f"{now} vs {want}")
        s.cmd("QUIT")
    return now


# ---- curl -------------------------------------------------------------------------------------------
def curl(d, url, *extra, user=ALICE, timeout=60):
    argv = ["curl", "--silent", "--show-error", "--max-time", str(timeout), "--user",
            f"{user}:{d.passwords[user]}", *extra, url]
    return run_tool(argv, timeout=timeout + 10)


def current_view(d, user=ALICE):
    """(LIST map, UIDL map, {n: RETR bytes}) from a RawPOP3 session."""
    s, status = login_retry(d, user)
    with s:
        if not pop3_ok(status):
            raise POP3Error(status)
        _, lst = s.cmd_multi("LIST")
        _, uidl = s.cmd_multi("UIDL")
        listing, uids = parse_list(lst), parse_uidl(uidl)
        retr = {}
        for n in listing:
            _, lines = s.cmd_multi(f"RETR {n}")
            retr[n] = joined(lines)
        s.cmd("QUIT")
    return listing, uids, retr


def test_curl(checks, d):
    if not Path("/usr/bin/curl").exists():
        checks.check(False, "curl is installed (scripts/bootstrap installs it)")
        return
    listing, uids, retr = current_view(d)
    time.sleep(0.2)
    proc = curl(d, f"pop3://127.0.0.1:{d.pop3_port}/")
    out = proc.stdout if proc else b""
    got = parse_list(out.splitlines()) if proc and proc.returncode == 0 else None
    checks.check(got == listing, "curl pop3:// (LIST): the same listing as LIST",
                 f"exit {proc and proc.returncode} {proc and proc.stderr[-300:]!r} got {got} want {listing}")
    small = min(listing, key=listing.get) if listing else 1
    big = max(listing, key=listing.get) if listing else 1
    for n, what, url, extra in (
            (small, "curl pop3://.../N (RETR)", f"pop3://127.0.0.1:{d.pop3_port}/{small}", []),
            (big, "curl pop3s://.../N --cacert (RETR of the largest)", f"pop3s://127.0.0.1:{d.pop3s_port}/{big}",
             ["--cacert", str(d.cert_path)]),
            (small, "curl --ssl-reqd pop3://.../N (STLS, RETR)", f"pop3://127.0.0.1:{d.pop3_port}/{small}",
             ["--ssl-reqd", "--cacert", str(d.cert_path)])):
        proc = curl(d, url, *extra)
        ok = proc is not None and proc.returncode == 0 and proc.stdout == retr.get(n)
        checks.check(ok, f"{what}: exit 0 and the same bytes as RETR",
                     None if proc is None else f"exit {proc.returncode} {proc.stderr[-300:]!r}, "
                     f"{len(proc.stdout)} vs {len(retr.get(n, b''))} bytes")
    proc = curl(d, f"pop3://127.0.0.1:{d.pop3_port}/", "-X", "UIDL")
    got = parse_uidl(proc.stdout.splitlines()) if proc and proc.returncode == 0 else None
    checks.check(got == uids, "curl -X UIDL: the same UIDs as UIDL",
                 f"exit {proc and proc.returncode} {proc and proc.stderr[-300:]!r} got {got} want {uids}")
    proc = run_tool(["curl", "--silent", "--max-time", "30", "--user", f"{ALICE}:{d.passwords[ALICE]}",
                     "--ssl-reqd", f"pop3://127.0.0.1:{d.pop3_port}/"])
    checks.check(proc is not None and proc.returncode != 0,
                 "curl --ssl-reqd without trusting the certificate fails (the certificate is really checked)",
                 None if proc is None else proc.returncode)


# ---- fetchmail ----------------------------------------------------------------------------------------
SAVE_MDA = """import os, sys, time
data = sys.stdin.buffer.read()
path = os.path.join(sys.argv[1], "msg-%d-%d.eml" % (time.time_ns(), os.getpid()))
with open(path + ".tmp", "wb") as f:
    f.write(data)
os.rename(path + ".tmp", path)
"""


def strip_fetchmail_received(data):
    """Removes the one Received: field fetchmail adds ("... with POP3 (fetchmail-x.y.z) ...", after the
    Return-Path it keeps first); None unless there is exactly one such field in the header."""
    head, sep, body = data.partition(b"\n\n")
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    ours = [i for i, f in enumerate(fields)
            if f[0].startswith(b"Received: ") and b"(fetchmail-" in b"\n".join(f)]
    if len(ours) != 1:
        return None
    del fields[ours[0]]
    return b"\n".join(b"\n".join(f) for f in fields) + sep + body


def run_fetchmail(checks, d, workdir, label, user, port, ssl_line, keep):
    tag = re.sub(r"[^A-Za-z0-9]+", "-", label)
    out = workdir / f"out-{tag}"
    out.mkdir()
    mda = workdir / "save_mda.py"
    mda.write_text(SAVE_MDA)
    rc = workdir / f"fetchmailrc-{tag}"
    rc.write_text(
        f'poll 127.0.0.1 with proto POP3 service {port} timeout 60\n'
        f'  user "{user}" there with password "{d.passwords[user]}" is "{pwd.getpwuid(os.getuid()).pw_name}" here\n'
        f'  options fetchall {"keep" if keep else "nokeep"} no rewrite {ssl_line}\n'
        f'  sslcertck sslcertfile "{d.cert_path}" sslcommonname localhost\n'
        f'  mda "{sys.executable} {mda} {out}"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(workdir), FETCHMAILUSER=pwd.getpwuid(os.getuid()).pw_name,
               FETCHMAILHOME=str(workdir))
    proc = run_tool(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v", "--pidfile",
                     str(workdir / f"fetchmail-{tag}.pid")], timeout=120, env=env)
    log = b"" if proc is None else proc.stdout + proc.stderr
    checks.check(proc is not None and proc.returncode == 0, f"fetchmail ({label}): exits 0 (mail retrieved)",
                 None if proc is None else f"exit {proc.returncode}\n" + log.decode(errors="replace")[-2500:])
    return sorted(out.glob("msg-*.eml")), log


def check_fetched(checks, label, files, retr, log=b""):
    """Every RETR message arrived once: the message with CRs stripped and fetchmail's Received added."""
    want = {}
    for n, data in retr.items():
        want.setdefault(lf(data), []).append(n)
    got, bad = [], []
    for f in files:
        body = strip_fetchmail_received(f.read_bytes())
        if body is None or body not in want:
            bad.append((f.name, f.read_bytes()[:300]))
            continue
        got.extend(want[body][:1])
    checks.check(len(files) == len(retr), f"fetchmail ({label}): {len(retr)} messages delivered to the MDA",
                 f"{len(files)} files\n" + log.decode(errors="replace")[-1500:])
    checks.check(not bad and sorted(got) == sorted(retr),
                 f"fetchmail ({label}): every message is the exact RETR bytes (LF) plus fetchmail's Received",
                 bad[:2] or f"matched {sorted(got)} of {sorted(retr)}")


def test_fetchmail(checks, d, workdir):
    if not Path("/usr/bin/fetchmail").exists():
        checks.check(False, "fetchmail is installed (scripts/bootstrap installs it)")
        return
    # bob: over POP3S with keep; nothing is deleted.
    for i in range(3):
        mid = unique_id(f"fetchmail-bob-{i}")
        smtp_deliver(checks, d, BOB, f"message {i} for bob",
                     make_message(REMOTE, [BOB], f"for fetchmail {i}", mid,
                                  body_lines=[f"fetchmail test {i}", ".dot line", "", "end"]))
    listing, uids, retr = current_view(d, BOB)
    files, log = run_fetchmail(checks, d, workdir, "pop3s keep", BOB, d.pop3s_port, "ssl sslproto 'TLS1.2+'",
                               keep=True)
    check_fetched(checks, "pop3s keep", files, retr, log)
    checks.check(len(d.mail_list(BOB)) == len(listing), "fetchmail keep: nothing deleted from bob's maildrop")

    # alice: over STLS on the plain port, fetchall nokeep; the maildrop is empty afterwards.
    listing, uids, retr = current_view(d, ALICE)
    time.sleep(0.2)
    files, log = run_fetchmail(checks, d, workdir, "STLS nokeep", ALICE, d.pop3_port, "sslproto 'TLS1.2+'",
                               keep=False)
    checks.check(b"STLS" in log, "fetchmail (STLS nokeep): fetchmail used STLS", log.decode(errors="replace")[-800:])
    check_fetched(checks, "STLS nokeep", files, retr, log)
    left = d.mail_list(ALICE)
    checks.check(len(listing) > 0 and not left, "fetchmail nokeep: alice's maildrop is empty afterwards",
                 f"{len(left)} left of {len(listing)}")


def run(checks):
    checks.note("not covered: mail in the Junk mailbox is left out of the maildrop "
                "(nothing can put mail into Junk yet)")
    with Daemon("pop3-clients") as d, tempfile.TemporaryDirectory(prefix="tern-pop3-clients-") as tmp:
        workdir = Path(tmp)
        if not harness.start_daemon(checks, d):
            return
        delivered = deliver_corpus(checks, d, make_corpus())
        if not checks.check(len(delivered) == 6, "all 6 messages are in alice's INBOX", sorted(delivered)):
            return
        first = checks.guard("poplib STLS session ran", test_poplib_stls, checks, d, delivered) or {}
        checks.guard("poplib POP3S session ran", test_poplib_pop3s, checks, d, first)
        checks.guard("SASL / IN-USE tests ran", test_sasl_and_in_use, checks, d)
        checks.guard("pipelining test ran", test_pipelining, checks, d)
        checks.guard("DELE + drop test ran", test_dele_dropped, checks, d)
        if first.get("uidl"):
            checks.guard("DELE + QUIT test ran", test_dele_quit, checks, d, first)
        checks.guard("curl tests ran", test_curl, checks, d)
        checks.guard("fetchmail tests ran", test_fetchmail, checks, d, workdir)
        checks.check(d.alive(), "ternd still running after every client")
        status = d.stop()
        checks.check(status == 0, "SIGTERM: ternd exits with status 0", f"exit status {status}\n" + d.stderr_tail())


if __name__ == "__main__":
    harness.main_guard(run)
