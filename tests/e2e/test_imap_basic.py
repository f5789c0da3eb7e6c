#!/usr/bin/env python3
"""End-to-end: the core of ternd's IMAP server (issue 5) against a real ternd on loopback.

The daemon is started with Daemon(imap=True) (free ports for imap.listen and imap.listen_tls instead of
the default 2143/2993). What is checked:
- greeting `* OK`; CAPABILITY lists IMAP4rev1, IDLE, UIDPLUS, LITERAL+, SASL-IR, AUTH=PLAIN (on loopback
  with the default auth.allow_plaintext, and over TLS), STARTTLS before TLS only; with
  auth.allow_plaintext=never the plain port says LOGINDISABLED and refuses LOGIN;
- Python's imaplib: IMAP4 + starttls (certificate verified for "localhost") + login; IMAP4_SSL +
  authenticate PLAIN; a wrong password gets NO [AUTHENTICATIONFAILED];
- LIST (INBOX, Sent, Drafts, Junk, Trash with special-use attributes), STATUS, SELECT, EXAMINE (READ-ONLY);
- three messages in over SMTP (plain, 8-bit, BDAT with bare LF); FETCH of UID FLAGS RFC822.SIZE
  INTERNALDATE; BODY.PEEK[] equals `ternd mail cat` (CRLF-normalized) and RFC822.SIZE its length;
  BODY.PEEK does not set \\Seen, BODY[] does; BODY[HEADER], BODY[TEXT], BODY.PEEK[]<0.10>;
- STORE +FLAGS / -FLAGS / .SILENT, EXPUNGE, UID EXPUNGE, UIDs never reused;
- IDLE: EXISTS for a new SMTP delivery, FETCH FLAGS for another session's STORE, EXPUNGE for a POP3
  DELE + QUIT; DONE ends with a tagged OK;
- SEARCH ALL / UNSEEN, UID SEARCH 1:*, an unknown key gets BAD;
- the tern client: `tern fetch --protocol imap` byte-exact, a second fetch 0 new, --delete empties INBOX;
- hostile: a {4294967295} literal, 10,000 small literals, 10 MB without a newline, commands before login,
  STARTTLS injection.
Every feature checked here is required: a missing one is a failure, never a skip.
"""

import base64
import imaplib
import re
import smtplib
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (ALICE, BOB, Daemon, IMAPError, RawIMAP, SMTPError, imap_tagged_ok,  # noqa: E402
                     make_message, unique_id)
import client_helpers as ch  # noqa: E402

REMOTE = "sender@remote.test"
ERRORS = (OSError, IMAPError, SMTPError, ssl.SSLError, ConnectionError)


def crlf(data):
    """Every LF not preceded by CR as CRLF: what IMAP sends for a stored message."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def status_of(tagged):
    """'OK', 'NO', 'BAD' (or '') of a tagged line."""
    parts = (tagged or "").split(" ", 2)
    return parts[1].upper() if len(parts) > 1 else ""


def capabilities(s):
    tagged, untagged = s.command("CAPABILITY")
    caps = set()
    for line in untagged:
        if line.upper().startswith(b"* CAPABILITY "):
            caps.update(line.decode(errors="replace").split()[2:])
    return tagged, {c.upper() for c in caps}


def session(d, tls=False, starttls=False, login=True, user=ALICE, timeout=10):
    ctx = d.client_tls_context()
    s = RawIMAP(d.imaps_port if tls else d.imap_port, tls_context=ctx if tls else None, timeout=timeout)
    if starttls:
        s.starttls(ctx)
    if login:
        tagged, _ = s.login(user, d.passwords[user])
        if not imap_tagged_ok(tagged):
            s.close()
            raise IMAPError(f"LOGIN failed: {tagged}")
    return s


def untagged_number(untagged, word):
    """n of the first '* n WORD' line, or None."""
    for line in untagged:
        m = re.match(rb"\* (\d+) " + word.encode() + rb"\b", line, re.I)
        if m:
            return int(m.group(1))
    return None


def has_code(lines, code):
    return any(("[" + code.upper()) in (l.decode(errors="replace") if isinstance(l, bytes) else l).upper()
               for l in lines)


def fetch_lines(untagged):
    return [l for l in untagged if re.match(rb"\* \d+ FETCH ", l, re.I)]


def fetch_item(line, name):
    """The value of a simple FETCH item (UID, RFC822.SIZE, ...) as str, or None."""
    m = re.search(rb"[ (]" + re.escape(name.encode()) + rb" (\d+|\"[^\"]*\"|NIL)", line, re.I)
    return m.group(1).decode().strip('"') if m else None


def fetch_flags(line):
    m = re.search(rb"FLAGS \(([^)]*)\)", line, re.I)
    return None if m is None else m.group(1).decode().split()


def with_item(lines, item):
    """The first FETCH line holding item (so an unsolicited FETCH FLAGS does not confuse a check)."""
    for l in lines:
        if re.search(rb"[ (]" + re.escape(item.encode()) + rb"[ {\"]", l, re.I):
            return l
    return lines[0] if lines else None


def fetch_section(line, item):
    """The bytes of a BODY[...] item (literal or quoted string) in a FETCH line; None if absent."""
    key = item.encode().upper()
    i = line.upper().find(key + b" ")
    if i < 0:
        return None
    rest = line[i + len(key) + 1:]
    m = re.match(rb"~?\{(\d+)\}\r\n", rest)
    if m:
        n = int(m.group(1))
        return rest[m.end():m.end() + n]
    if rest.startswith(b'"'):
        j = 1
        out = b""
        while j < len(rest) and rest[j:j + 1] != b'"':
            if rest[j:j + 1] == b"\\":
                j += 1
            out += rest[j:j + 1]
            j += 1
        return out
    if rest.upper().startswith(b"NIL"):
        return b""
    return None


def smtp_deliver(d, rcpt, msg, mail_options=()):
    with smtplib.SMTP("127.0.0.1", d.mx_port, timeout=30) as client:
        client.ehlo()
        return client.sendmail(REMOTE, [rcpt], msg, mail_options=list(mail_options)) == {}


def bdat_deliver(d, rcpt, msg):
    with harness.RawSMTP(d.mx_port, timeout=30) as s:
        s.ehlo()
        if s.cmd(f"MAIL FROM:<{REMOTE}>")[0] != 250 or s.cmd(f"RCPT TO:<{rcpt}>")[0] != 250:
            return None
        s.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        code, _ = s.reply()
        try:
            s.cmd("QUIT")
        except ERRORS:
            pass
        return code


def quick_message(tag, rcpt=ALICE):
    mid = unique_id(tag)
    return mid, make_message(REMOTE, [rcpt], f"imap {tag}", mid, body_lines=[f"body of {tag}", "bye"])


def uid_of(d, mid, user=ALICE):
    e = d.find_message(user, mid)
    return None if e is None else int(e["uid"])


# ---- capability and login ---------------------------------------------------------------------------
def test_capability(checks, d):
    with session(d, login=False) as s:
        checks.check(s.greeting.startswith("* OK"), "greeting on the plain port is * OK", s.greeting)
        tagged, caps = capabilities(s)
        checks.check(imap_tagged_ok(tagged), "CAPABILITY: tagged OK", tagged)
        for cap in ("IMAP4REV1", "IDLE", "UIDPLUS", "LITERAL+", "SASL-IR", "AUTH=PLAIN", "STARTTLS"):
            checks.check(cap in caps, f"CAPABILITY before TLS (loopback, allow_plaintext default) lists {cap}",
                         sorted(caps))
        checks.check("LOGINDISABLED" not in caps, "CAPABILITY on loopback: no LOGINDISABLED", sorted(caps))
        s.starttls(d.client_tls_context())
        tagged, caps = capabilities(s)
        checks.check("STARTTLS" not in caps, "CAPABILITY after STARTTLS: no STARTTLS", sorted(caps))
        checks.check("AUTH=PLAIN" in caps and "IMAP4REV1" in caps,
                     "CAPABILITY after STARTTLS: IMAP4rev1 and AUTH=PLAIN", sorted(caps))
        tagged, _ = s.command("STARTTLS")
        checks.check(status_of(tagged) in ("BAD", "NO"), "STARTTLS inside TLS: BAD or NO", tagged)
    with session(d, tls=True, login=False) as s:
        checks.check(s.greeting.startswith("* OK"), "greeting on the IMAPS port is * OK", s.greeting)
        tagged, caps = capabilities(s)
        checks.check("STARTTLS" not in caps and "AUTH=PLAIN" in caps and "IDLE" in caps,
                     "CAPABILITY on IMAPS: AUTH=PLAIN and IDLE, no STARTTLS", sorted(caps))
        tagged, _ = s.command("LOGOUT")
        checks.check(imap_tagged_ok(tagged), "LOGOUT: tagged OK", tagged)


def test_plaintext_never(checks, d):
    with session(d, login=False) as s:
        tagged, caps = capabilities(s)
        checks.check("LOGINDISABLED" in caps, "allow_plaintext=never: CAPABILITY on the plain port has "
                     "LOGINDISABLED", sorted(caps))
        checks.check("AUTH=PLAIN" not in caps, "allow_plaintext=never: no AUTH=PLAIN before TLS", sorted(caps))
        tagged, _ = s.login(ALICE, d.passwords[ALICE])
        checks.check(status_of(tagged) in ("NO", "BAD"), "allow_plaintext=never: LOGIN before TLS refused", tagged)
        tagged, _ = s.authenticate_plain(ALICE, d.passwords[ALICE])
        checks.check(status_of(tagged) in ("NO", "BAD"),
                     "allow_plaintext=never: AUTHENTICATE PLAIN before TLS refused", tagged)
        s.starttls(d.client_tls_context())
        tagged, caps = capabilities(s)
        checks.check("LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps,
                     "allow_plaintext=never: after STARTTLS, AUTH=PLAIN and no LOGINDISABLED", sorted(caps))
        tagged, _ = s.login(ALICE, d.passwords[ALICE])
        checks.check(imap_tagged_ok(tagged), "allow_plaintext=never: LOGIN after STARTTLS OK", tagged)


def test_imaplib_login(checks, d):
    ctx = d.client_tls_context()
    m = imaplib.IMAP4("localhost", d.imap_port, timeout=10)
    try:
        m.starttls(ssl_context=ctx)
        checks.check(True, "imaplib: IMAP4 + starttls (certificate verified for localhost)")
        typ, data = m.login(ALICE, d.passwords[ALICE])
        checks.check(typ == "OK", "imaplib: login after STARTTLS", data)
        typ, data = m.select("INBOX")
        checks.check(typ == "OK", "imaplib: select INBOX", data)
        m.logout()
    finally:
        try:
            m.shutdown()
        except OSError:
            pass
    # imaplib's IMAP4_SSL uses server_hostname=host: connect by name.
    m = imaplib.IMAP4_SSL("localhost", d.imaps_port, ssl_context=ctx, timeout=10)
    try:
        creds = f"\0{ALICE}\0{d.passwords[ALICE]}".encode()
        typ, data = m.authenticate("PLAIN", lambda _challenge: creds)
        checks.check(typ == "OK", "imaplib: IMAP4_SSL + authenticate PLAIN", data)
        m.logout()
    finally:
        try:
            m.shutdown()
        except OSError:
            pass
    m = imaplib.IMAP4_SSL("localhost", d.imaps_port, ssl_context=ctx, timeout=10)
    try:
        try:
            m.login(ALICE, "wrong-password")
            checks.check(False, "imaplib: wrong password raises IMAP4.error")
        except imaplib.IMAP4.error as exc:
            checks.check("AUTHENTICATIONFAILED" in str(exc).upper(),
                         "imaplib: wrong password -> NO [AUTHENTICATIONFAILED]", exc)
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


# ---- mailboxes ------------------------------------------------------------------------------------
def test_mailboxes(checks, d, count):
    with session(d) as s:
        tagged, untagged = s.command('LIST "" "*"')
        checks.check(imap_tagged_ok(tagged), "LIST \"\" \"*\": OK", tagged)
        boxes = {}
        for line in untagged:
            m = re.match(rb'\* LIST \(([^)]*)\) (?:"[^"]*"|NIL) "?([^"\r\n]+)"?$', line, re.I)
            if m:
                boxes[m.group(2).decode()] = m.group(1).decode().lower().split()
        checks.check("INBOX" in boxes, "LIST shows INBOX", untagged)
        for name, attr in (("Sent", "\\sent"), ("Drafts", "\\drafts"), ("Junk", "\\junk"), ("Trash", "\\trash")):
            checks.check(name in boxes and attr in boxes[name], f"LIST shows {name} with {attr}", boxes)
        tagged, untagged = s.command("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
        line = b" ".join(l for l in untagged if l.upper().startswith(b"* STATUS"))
        vals = dict((k.upper(), int(v)) for k, v in re.findall(rb"([A-Za-z]+) (\d+)", line))
        ok = imap_tagged_ok(tagged) and all(k in vals for k in (b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN"))
        checks.check(ok, "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN): all four", (tagged, untagged))
        checks.check(vals.get(b"MESSAGES") == count, f"STATUS: MESSAGES {count}", vals)
        uids = [int(e["uid"]) for e in d.mail_list(ALICE)]
        checks.check(vals.get(b"UIDNEXT", 0) > max(uids or [0]), "STATUS: UIDNEXT above every UID", (vals, uids))
        tagged, untagged = s.command("SELECT INBOX")
        checks.check(imap_tagged_ok(tagged) and "[READ-WRITE]" in tagged.upper(), "SELECT INBOX: OK [READ-WRITE]",
                     tagged)
        checks.check(untagged_number(untagged, "EXISTS") == count, f"SELECT: * {count} EXISTS", untagged)
        for code in ("UIDVALIDITY", "UIDNEXT", "PERMANENTFLAGS"):
            checks.check(has_code(untagged, code), f"SELECT: [{code}]", untagged)
        checks.check(any(re.match(rb"\* FLAGS \(", l, re.I) for l in untagged), "SELECT: * FLAGS (...)", untagged)
        uv = re.search(rb"UIDVALIDITY (\d+)", b" ".join(untagged))
        checks.check(uv and vals.get(b"UIDVALIDITY") == int(uv.group(1)), "SELECT and STATUS agree on UIDVALIDITY",
                     (vals, untagged))
        tagged, untagged = s.command("EXAMINE INBOX")
        checks.check(imap_tagged_ok(tagged) and "[READ-ONLY]" in tagged.upper(), "EXAMINE INBOX: OK [READ-ONLY]",
                     tagged)
        tagged, _ = s.command("SELECT Nonexistent")
        checks.check(status_of(tagged) == "NO", "SELECT of a missing mailbox: NO", tagged)


# ---- fetch ----------------------------------------------------------------------------------------
def deliver_three(checks, d):
    """Plain, 8-bit and BDAT bare-LF messages for alice; returns [(mid, uid)]."""
    out = []
    mid, msg = quick_message("plain")
    checks.check(smtp_deliver(d, ALICE, msg), "SMTP in: plain message accepted")
    out.append(mid)
    mid = unique_id("8bit")
    body = "Grüße, ça va? Ωμέγα 日本語\r\n".encode() + bytes(range(0x80, 0x100)) + b"\r\n"
    msg = make_message(REMOTE, [ALICE], "8bit", mid, body=body).replace(
        b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n")
    checks.check(smtp_deliver(d, ALICE, msg, ["BODY=8BITMIME"]), "SMTP in: 8-bit message accepted")
    out.append(mid)
    mid = unique_id("bdat-lf")
    msg = (f"From: <{REMOTE}>\nTo: <{ALICE}>\nSubject: bare LF via BDAT\nMessage-ID: <{mid}>\n"
           f"Date: Mon, 24 Nov 2025 12:00:00 +0000\n\nfirst line\n.leading dot\nlast line\n").encode()
    checks.check(bdat_deliver(d, ALICE, msg) == 250, "SMTP in: BDAT LAST with bare LF accepted")
    out.append(mid)
    return [(m, uid_of(d, m)) for m in out]


def test_fetch(checks, d, msgs):
    with session(d) as s:
        s.command("SELECT INBOX")
        tagged, untagged = s.command("FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)")
        lines = fetch_lines(untagged)
        checks.check(imap_tagged_ok(tagged) and len(lines) == len(msgs), f"FETCH 1:*: {len(msgs)} FETCH responses",
                     (tagged, untagged))
        complete = all(fetch_item(l, "UID") and fetch_flags(l) is not None and fetch_item(l, "RFC822.SIZE")
                       and fetch_item(l, "INTERNALDATE") for l in lines)
        checks.check(complete, "FETCH 1:*: each has UID, FLAGS, RFC822.SIZE, INTERNALDATE", lines)
        sizes = {int(fetch_item(l, "UID")): int(fetch_item(l, "RFC822.SIZE")) for l in lines
                 if fetch_item(l, "UID") and fetch_item(l, "RFC822.SIZE")}
        checks.check(sorted(sizes) == sorted(u for _, u in msgs), "FETCH 1:*: the UIDs are the store's UIDs",
                     (sizes, msgs))
        names = ["plain", "8-bit", "BDAT bare LF"]
        for (mid, uid), name in zip(msgs, names):
            tagged, untagged = s.command(f"UID FETCH {uid} (BODY.PEEK[] RFC822.SIZE)")
            lines = fetch_lines(untagged)
            body = fetch_section(with_item(lines, "BODY[]"), "BODY[]") if lines else None
            want = crlf(d.mail_cat(ALICE, uid))
            checks.check(body == want, f"UID FETCH {uid} BODY.PEEK[] ({name}): the stored bytes, CRLF",
                         f"got {len(body or b'')} bytes {(body or b'')[:120]!r}\nwant {len(want)} {want[:120]!r}")
            size = fetch_item(with_item(lines, "RFC822.SIZE"), "RFC822.SIZE") if lines else None
            checks.check(size is not None and int(size) == len(want), f"RFC822.SIZE ({name}) == len(body)",
                         (size, len(want)))
            checks.check(size is not None and sizes.get(uid) == int(size),
                         f"RFC822.SIZE ({name}) same in FETCH 1:* and UID FETCH", (sizes.get(uid), size))
        uid = msgs[0][1]
        tagged, untagged = s.command(f"UID FETCH {uid} FLAGS")
        fl = fetch_flags(fetch_lines(untagged)[0]) if fetch_lines(untagged) else None
        checks.check(fl is not None and "\\Seen" not in fl, "BODY.PEEK[] did not set \\Seen", untagged)
        entry = d.find_message(ALICE, msgs[0][0])
        checks.check(entry and "\\Seen" not in (entry.get("flags") or []),
                     "BODY.PEEK[]: not \\Seen in mail list either", entry)
        tagged, untagged = s.command(f"UID FETCH {uid} BODY[HEADER]")
        lines = fetch_lines(untagged)
        hdr = fetch_section(with_item(lines, "BODY[HEADER]"), "BODY[HEADER]") if lines else None
        full = crlf(d.mail_cat(ALICE, uid))
        split = full.find(b"\r\n\r\n")
        checks.check(hdr == full[:split + 4], "BODY[HEADER]: the header section with its blank line",
                     (hdr or b"")[-80:])
        tagged, untagged = s.command(f"UID FETCH {uid} BODY[TEXT]")
        lines = fetch_lines(untagged)
        text = fetch_section(with_item(lines, "BODY[TEXT]"), "BODY[TEXT]") if lines else None
        checks.check(text == full[split + 4:], "BODY[TEXT]: the body after the blank line", text)
        seen_now = any("\\Seen" in (fetch_flags(l) or []) for l in lines)
        if not seen_now:
            _, u2 = s.command(f"UID FETCH {uid} FLAGS")
            seen_now = any("\\Seen" in (fetch_flags(l) or []) for l in fetch_lines(u2))
        checks.check(seen_now, "BODY[TEXT] (not PEEK) set \\Seen (same response or a later FETCH)", untagged)
        uid2 = msgs[1][1]
        tagged, untagged = s.command(f"UID FETCH {uid2} BODY[]")
        lines = fetch_lines(untagged)
        seen_now = any("\\Seen" in (fetch_flags(l) or []) for l in lines)
        if not seen_now:
            _, u2 = s.command(f"UID FETCH {uid2} FLAGS")
            seen_now = any("\\Seen" in (fetch_flags(l) or []) for l in fetch_lines(u2))
        checks.check(seen_now, "BODY[] set \\Seen (same response or a later FETCH)", untagged)
        entry = d.find_message(ALICE, msgs[1][0])
        checks.check(entry and "\\Seen" in (entry.get("flags") or []), "BODY[]: \\Seen in mail list", entry)
        uid3 = msgs[2][1]
        tagged, untagged = s.command(f"UID FETCH {uid3} BODY.PEEK[]<0.10>")
        lines = fetch_lines(untagged)
        part = fetch_section(with_item(lines, "BODY[]<0>"), "BODY[]<0>") if lines else None
        checks.check(part == crlf(d.mail_cat(ALICE, uid3))[:10], "BODY.PEEK[]<0.10>: the first 10 octets as BODY[]<0>",
                     untagged)


# ---- store / expunge ----------------------------------------------------------------------------------
def test_store_expunge(checks, d, msgs):
    with session(d) as s:
        s.command("SELECT INBOX")
        uid = msgs[2][1]
        tagged, untagged = s.command(f"UID STORE {uid} +FLAGS (\\Flagged)")
        fl = [fetch_flags(l) for l in fetch_lines(untagged)]
        checks.check(imap_tagged_ok(tagged) and fl and "\\Flagged" in fl[0],
                     "UID STORE +FLAGS (\\Flagged): OK with the new FLAGS", (tagged, untagged))
        _, untagged = s.command(f"UID FETCH {uid} FLAGS")
        fl = [fetch_flags(l) for l in fetch_lines(untagged)]
        checks.check(fl and "\\Flagged" in fl[0], "FETCH FLAGS after STORE shows \\Flagged", untagged)
        tagged, untagged = s.command(f"UID STORE {uid} -FLAGS (\\Flagged)")
        _, untagged = s.command(f"UID FETCH {uid} FLAGS")
        fl = [fetch_flags(l) for l in fetch_lines(untagged)]
        checks.check(imap_tagged_ok(tagged) and fl and "\\Flagged" not in fl[0], "STORE -FLAGS removes \\Flagged",
                     (tagged, untagged))
        tagged, untagged = s.command(f"UID STORE {uid} +FLAGS.SILENT (\\Answered)")
        checks.check(imap_tagged_ok(tagged) and not fetch_lines(untagged),
                     "STORE +FLAGS.SILENT: OK without an untagged FETCH", (tagged, untagged))
        _, untagged = s.command(f"UID FETCH {uid} FLAGS")
        fl = [fetch_flags(l) for l in fetch_lines(untagged)]
        checks.check(fl and "\\Answered" in fl[0], ".SILENT still stored \\Answered", untagged)

        # Two extra messages: one EXPUNGEd, one for UID EXPUNGE.
        extra = []
        for tag in ("expunge-a", "expunge-b", "expunge-c"):
            mid, msg = quick_message(tag)
            smtp_deliver(d, ALICE, msg)
            extra.append((mid, uid_of(d, mid)))
        _, untagged = s.command("NOOP")
        n = untagged_number(untagged, "EXISTS")
        checks.check(n == len(msgs) + 3, f"NOOP after 3 deliveries: * {len(msgs) + 3} EXISTS", untagged)
        ua, ub, uc = (u for _, u in extra)
        s.command(f"UID STORE {ua} +FLAGS.SILENT (\\Deleted)")
        tagged, untagged = s.command("EXPUNGE")
        checks.check(imap_tagged_ok(tagged) and untagged_number(untagged, "EXPUNGE") == len(msgs) + 1,
                     f"EXPUNGE after \\Deleted: * {len(msgs) + 1} EXPUNGE", (tagged, untagged))
        uids = [int(e["uid"]) for e in d.mail_list(ALICE)]
        checks.check(ua not in uids and ub in uids, "EXPUNGE: gone from ternd mail list (the others stay)", uids)
        s.command(f"UID STORE {ub},{uc} +FLAGS.SILENT (\\Deleted)")
        tagged, untagged = s.command(f"UID EXPUNGE {ub}")
        uids = [int(e["uid"]) for e in d.mail_list(ALICE)]
        checks.check(imap_tagged_ok(tagged) and ub not in uids and uc in uids,
                     "UID EXPUNGE removes only the named UID (another \\Deleted one stays)",
                     (tagged, untagged, uids))
        s.command(f"UID STORE {uc} -FLAGS.SILENT (\\Deleted)")
        mid, msg = quick_message("after-expunge")
        smtp_deliver(d, ALICE, msg)
        new_uid = uid_of(d, mid)
        checks.check(new_uid is not None and new_uid > max(ua, ub, uc), "UIDs never reused: a new message's UID is "
                     "above the expunged ones", (new_uid, ua, ub, uc))
        s.command("NOOP")


# ---- IDLE -----------------------------------------------------------------------------------------
def idle_wait(s, pattern, timeout):
    """Reads untagged lines until one matches pattern (bytes regex) or timeout; returns (line or None, seen)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            line = s.response()
        except (socket.timeout, ssl.SSLError):
            break
        seen.append(line)
        if re.match(pattern, line, re.I):
            return line, seen
    return None, seen


def idle_start(s):
    tag = s.next_tag()
    s.settimeout(10)
    s.send(f"{tag} IDLE\r\n")
    line = s.response()
    return tag, line


def idle_done(checks, s, tag, what):
    s.settimeout(5)
    s.send(b"DONE\r\n")
    try:
        tagged, _ = s.read_until_tagged(tag)
    except ERRORS as exc:
        tagged = str(exc)
    checks.check(imap_tagged_ok(tagged, tag), f"IDLE ({what}): DONE -> tagged OK", tagged)


def test_idle(checks, d, caps):
    if not checks.check("IDLE" in caps, "IDLE is in CAPABILITY", caps):
        return
    with session(d) as a:
        _, untagged = a.command("SELECT INBOX")
        exists = untagged_number(untagged, "EXISTS")
        tag, line = idle_start(a)
        checks.check(line.startswith(b"+"), "IDLE: continuation '+ '", line)
        mid, msg = quick_message("idle-new")
        t0 = time.monotonic()
        smtp_deliver(d, ALICE, msg)
        got, seen = idle_wait(a, rb"\* \d+ EXISTS", 2.0)
        checks.check(got is not None and int(got.split()[1]) == exists + 1,
                     f"IDLE: * {exists + 1} EXISTS within 2 s of the SMTP delivery",
                     f"after {time.monotonic() - t0:.2f}s: {seen}")
        idle_done(checks, a, tag, "new mail")
        exists += 1
        new_uid = uid_of(d, mid)

        # Session B sets \Seen on the new message; A is idling.
        tag, line = idle_start(a)
        with session(d) as b:
            b.command("SELECT INBOX")
            tagged, _ = b.command(f"UID STORE {new_uid} +FLAGS (\\Seen)")
            got, seen = idle_wait(a, rb"\* " + str(exists).encode() + rb" FETCH \(.*FLAGS \([^)]*\\Seen", 2.0)
            checks.check(got is not None, f"IDLE: another session's STORE \\Seen -> * {exists} FETCH (FLAGS (\\Seen))",
                         (tagged, seen))
            b.command("LOGOUT")
        idle_done(checks, a, tag, "flags")

        # POP3 deletes the newest message; A is idling.
        tag, line = idle_start(a)
        with harness.RawPOP3(d.pop3_port) as p:
            p.login(ALICE, d.passwords[ALICE])
            stat = p.cmd("STAT")
            n = int(stat.split()[1]) if harness.pop3_ok(stat) else 0
            dele = p.cmd(f"DELE {n}")
            quit_ = p.cmd("QUIT")
        got, seen = idle_wait(a, rb"\* " + str(exists).encode() + rb" EXPUNGE", 2.0)
        checks.check(got is not None, f"IDLE: POP3 DELE + QUIT -> * {exists} EXPUNGE",
                     (stat, dele, quit_, seen))
        idle_done(checks, a, tag, "pop3 expunge")


# ---- search ----------------------------------------------------------------------------------------
def test_search(checks, d):
    with session(d) as s:
        _, untagged = s.command("SELECT INBOX")
        exists = untagged_number(untagged, "EXISTS") or 0

        def numbers(untagged):
            out = []
            for l in untagged:
                if l.upper().startswith(b"* SEARCH"):
                    out += [int(x) for x in l.split()[2:]]
            return out
        tagged, untagged = s.command("SEARCH ALL")
        checks.check(imap_tagged_ok(tagged) and numbers(untagged) == list(range(1, exists + 1)),
                     f"SEARCH ALL: 1..{exists}", (tagged, untagged))
        _, fu = s.command("FETCH 1:* (FLAGS)")
        unseen = sorted(int(l.split()[1]) for l in fetch_lines(fu) if "\\Seen" not in (fetch_flags(l) or []))
        tagged, untagged = s.command("SEARCH UNSEEN")
        checks.check(imap_tagged_ok(tagged) and sorted(numbers(untagged)) == unseen,
                     "SEARCH UNSEEN: the messages without \\Seen", (unseen, tagged, untagged))
        uids = sorted(int(e["uid"]) for e in d.mail_list(ALICE))
        tagged, untagged = s.command("UID SEARCH 1:*")
        checks.check(imap_tagged_ok(tagged) and sorted(numbers(untagged)) == uids, "UID SEARCH 1:*: every UID",
                     (uids, tagged, untagged))
        tagged, _ = s.command("SEARCH FROBNICATE 1")
        checks.check(status_of(tagged) == "BAD", "SEARCH with an unknown key: BAD (RFC 3501 6.4.4)", tagged)
        tagged, _ = s.command("NOOP")
        checks.check(imap_tagged_ok(tagged), "the session goes on after the bad SEARCH", tagged)


# ---- the tern client ---------------------------------------------------------------------------------
def test_tern_client(checks, d, tmp):
    if not ch.tern_built(checks):
        return
    for i in range(3):
        mid, msg = quick_message(f"tern-client-{i}", BOB)
        smtp_deliver(d, BOB, msg)
    t = ch.Tern(tmp, "imapclient")
    r = t.account_add("bob", BOB, d.passwords[BOB], imap=f"localhost:{d.imap_port}", ca_file=str(d.cert_path),
                      extra=["--imap-security", "starttls", "--default"])
    if not checks.check(r.rc == 0, "tern account add bob --imap (STARTTLS, --ca-file)", r.detail()):
        return
    server = d.mail_list(BOB)
    r = t.run(["fetch", "--account", "bob", "--protocol", "imap", "--json"], timeout=120)
    new, _ = ch.fetch_counts(r)
    checks.check(r.rc == 0 and new == len(server), f"tern fetch --protocol imap: exit 0, {len(server)} new",
                 r.detail())
    local = {}
    for e in t.list_json("--account", "bob"):
        raw = t.raw(e["id"])
        m = re.search(rb"(?im)^Message-ID:[ \t]*<([^>\r\n]+)>", raw)
        local[m.group(1).decode() if m else None] = raw
    differ = []
    for s in server:
        got = local.get(str(s.get("message_id") or "").strip("<>"))
        want = crlf(d.mail_cat(BOB, s["uid"]))
        if got is None or crlf(got) != want:
            differ.append((s["uid"], None if got is None else got[:120], want[:120]))
    checks.check(server and not differ, "tern fetch over IMAP: every message byte-exact", differ[:3])
    r = t.run(["fetch", "--account", "bob", "--protocol", "imap", "--json"], timeout=120)
    new, _ = ch.fetch_counts(r)
    checks.check(r.rc == 0 and new == 0, "second tern fetch over IMAP: 0 new", r.detail())
    mid, msg = quick_message("tern-client-last", BOB)
    smtp_deliver(d, BOB, msg)
    r = t.run(["fetch", "--account", "bob", "--protocol", "imap", "--delete", "--json"], timeout=120)
    new, _ = ch.fetch_counts(r)
    left = d.mail_list(BOB)
    checks.check(r.rc == 0 and new == 1, "tern fetch --delete over IMAP: exit 0, 1 new", r.detail())
    checks.check(not left, "tern fetch --delete over IMAP: bob's INBOX on ternd is empty", left)


# ---- hostile ----------------------------------------------------------------------------------------
def still_serving(d):
    try:
        with session(d) as s:
            tagged, _ = s.command("NOOP")
            return imap_tagged_ok(tagged)
    except ERRORS:
        return False


def answer_or_bye(s, tag, timeout=10):
    """The tagged answer for tag, or 'BYE ...' / 'CLOSED' if the server ended the session instead."""
    s.settimeout(timeout)
    try:
        while True:
            line = s.response()
            if line.startswith(tag.encode() + b" "):
                return line.decode(errors="replace")
            if line.upper().startswith(b"* BYE"):
                return "BYE " + line.decode(errors="replace")
            if line.startswith(b"+"):
                return "CONTINUATION " + line[:200].decode(errors="replace")
    except socket.timeout:
        return "NO ANSWER within the timeout"
    except (ConnectionError, OSError, IMAPError) as exc:
        return f"CLOSED ({type(exc).__name__})"


def bad_or_bye(s, timeout=10):
    """After garbage: 'BAD ...' if a BAD (tagged or untagged) arrives, 'BYE ...', 'CLOSED', or 'NOTHING'."""
    s.settimeout(timeout)
    try:
        while True:
            line = s.response()
            words = line.split(b" ", 2)
            if len(words) > 1 and words[1].upper() == b"BAD":
                return "BAD " + line[:200].decode(errors="replace")
            if line.upper().startswith(b"* BYE"):
                return "BYE " + line.decode(errors="replace")
    except socket.timeout:
        return "NOTHING within the timeout"
    except (ConnectionError, OSError, IMAPError) as exc:
        return f"CLOSED ({type(exc).__name__})"


def test_hostile(checks, d):
    # A {4294967295} literal announcement.
    with session(d) as s:
        s.send(b"h1 APPEND INBOX {4294967295}\r\n")
        r = answer_or_bye(s, "h1")
        checks.check(status_of(r) in ("NO", "BAD") or r.startswith(("BYE", "CLOSED")),
                     "{4294967295} literal: NO/BAD (or BYE), no '+' continuation", r)
        if status_of(r) in ("NO", "BAD"):
            s.send(b"h2 NOOP\r\n")
            tagged = answer_or_bye(s, "h2")
            checks.check(imap_tagged_ok(tagged) or tagged.startswith(("BYE", "CLOSED")),
                         "after the huge literal: the session goes on (NOOP OK) or ends with BYE", tagged)
    checks.check(still_serving(d), "after the huge literal: the daemon serves another client")

    # 10,000 tiny non-synchronizing literals in one command.
    with session(d) as s:
        s.send(b"h3 SEARCH" + b" TEXT {1+}\r\nx" * 10000 + b"\r\n")
        r = answer_or_bye(s, "h3", timeout=15)
        checks.check(status_of(r) in ("NO", "BAD") or r.startswith(("BYE", "CLOSED")),
                     "10,000 small literals in one command: refused (NO/BAD/BYE)", r)
    checks.check(still_serving(d), "after 10,000 literals: the daemon serves another client")

    # 10 MB without a newline.
    for state in ("before login", "after login"):
        s = session(d, login=(state == "after login"), timeout=15)
        try:
            sent = 0
            closed = False
            try:
                while sent < 10 * 1024 * 1024:
                    s.sock.sendall(b"A" * 65536)
                    sent += 65536
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                closed = True
            if not closed:
                try:
                    s.sock.sendall(b"\r\n")
                except OSError:
                    closed = True
            r = "CLOSED" if closed else bad_or_bye(s)
            ok = closed or r.startswith(("BYE", "CLOSED", "BAD"))
            checks.check(ok, f"10 MB without a newline ({state}): BAD or BYE/close", f"sent {sent}: {r[:200]}")
        finally:
            s.close()
    checks.check(d.alive() and still_serving(d), "10 MB without a newline: the daemon is alive and serves others")

    # Commands before login.
    with session(d, login=False) as s:
        for cmd in ("SELECT INBOX", "FETCH 1 BODY[]", "LIST \"\" \"*\"", "IDLE", "EXPUNGE"):
            tagged, _ = s.command(cmd)
            checks.check(status_of(tagged) in ("BAD", "NO"), f"before login: {cmd.split()[0]} -> BAD/NO", tagged)
        tagged, _ = s.command("FROBNICATE")
        checks.check(status_of(tagged) == "BAD", "unknown command: BAD", tagged)

    # STARTTLS injection.
    ctx = d.client_tls_context()
    with RawIMAP(d.imap_port) as s:
        s.send(b"a STARTTLS\r\nb NOOP\r\n")
        tagged = s.read_until_tagged("a")[0]
        if checks.check(imap_tagged_ok(tagged, "a"), "STARTTLS injection: STARTTLS answered OK", tagged):
            checks.check(not s.buf, "STARTTLS injection: nothing in plaintext after the OK", s.buf)
            try:
                s.sock = ctx.wrap_socket(s.sock, server_hostname="localhost")
                s.buf = b""
                extra = s.pending_data(0.5)
                checks.check(extra == b"" or (extra is not None and not extra.startswith(b"b ")),
                             "STARTTLS injection: no 'b' reply inside TLS", extra)
                tagged, _ = s.command("NOOP", tag="c")
                checks.check(imap_tagged_ok(tagged, "c"), "STARTTLS injection: the first tagged answer inside TLS is "
                             "ours", tagged)
            except (ssl.SSLError, OSError) as exc:
                checks.check(True, f"STARTTLS injection: the server refused to go on ({exc})")
    checks.check(d.alive(), "after the hostile inputs: ternd still running")


def run(checks):
    with Daemon("imap-basic", imap=True) as d, tempfile.TemporaryDirectory(prefix="tern-imap-basic-") as tmp:
        if not harness.start_daemon(checks, d):
            return
        caps = set()
        try:
            with session(d, login=False) as s:
                caps = capabilities(s)[1]
        except ERRORS:
            pass
        checks.guard("capability tests ran", test_capability, checks, d)
        checks.guard("imaplib login tests ran", test_imaplib_login, checks, d)
        msgs = checks.guard("deliveries ran", deliver_three, checks, d) or []
        if checks.check(len(msgs) == 3 and all(u for _, u in msgs), "3 messages in alice's INBOX", msgs):
            checks.guard("mailbox tests ran", test_mailboxes, checks, d, 3)
            checks.guard("fetch tests ran", test_fetch, checks, d, msgs)
            checks.guard("store/expunge tests ran", test_store_expunge, checks, d, msgs)
        checks.guard("IDLE tests ran", test_idle, checks, d, caps)
        checks.guard("search tests ran", test_search, checks, d)
        checks.guard("tern client tests ran", test_tern_client, checks, d, Path(tmp))
        checks.guard("hostile tests ran", test_hostile, checks, d)
        checks.check(d.alive(), "ternd still running after every client")
        status = d.stop()
        checks.check(status == 0, "SIGTERM: ternd exits with status 0", f"exit status {status}\n" + d.stderr_tail())
    with Daemon("imap-never", imap=True, options=["auth.allow_plaintext=never"]) as d:
        if harness.start_daemon(checks, d):
            checks.guard("allow_plaintext=never tests ran", test_plaintext_never, checks, d)
            d.stop()


if __name__ == "__main__":
    harness.main_guard(run)
