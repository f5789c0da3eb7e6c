#!/usr/bin/env python3
"""End-to-end: IMAP MULTIAPPEND (RFC 3502) is all or nothing, against a real ternd on loopback.

What is checked (raw sockets; Python's imaplib for a normal client):
- imaplib's APPEND still works and three messages sent in one APPEND arrive whole, in order, with
  an APPENDUID uid-set;
- a message that fails in the middle of a MULTIAPPEND leaves none of them visible: a synchronizing
  literal over the size limit ([TOOBIG] before its data), a LITERAL+ literal over the limit (its
  data read and dropped), a NUL in a plain literal (a parse error mid-command), an invalid flag, an
  empty message; each time the session goes on and nothing of the command was stored;
- kill -9 while the third message of a MULTIAPPEND is still arriving (the first two complete): after
  the restart none of the three is visible, not even as a file in the account's directory;
- a MULTIAPPEND of 40 messages of 200 KiB each (8 MiB streamed, never buffered whole) is stored
  byte for byte.
"""

import imaplib
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ALICE, Daemon, RawIMAP, imap_tagged_ok, main_guard, start_daemon  # noqa: E402

MAX = 20000  # smtp.max_message_size for the daemon (bytes)


def msg(n, size=0):
    body = b"".join(b"line %06d of message %d ....................................\r\n" % (i, n)
                    for i in range(max(1, size // 60)))
    return (b"From: a@example.test\r\nSubject: multi %d\r\nMessage-ID: <multi.%d@e2e.test>\r\n\r\n" % (n, n)
            + body)


def raw_login(d):
    r = RawIMAP(d.imap_port, timeout=30)
    tagged, _ = r.login(ALICE, d.passwords[ALICE])
    assert imap_tagged_ok(tagged), tagged
    return r


def messages(r, mailbox="Drafts"):
    tagged, untagged = r.command(f"STATUS {mailbox} (MESSAGES UIDNEXT)")
    m = re.search(rb"MESSAGES (\d+) UIDNEXT (\d+)", b"".join(untagged))
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def sync_append(r, tag, parts):
    """Sends an APPEND made of text and ('sync', bytes) literals, waiting for each '+'. Returns the
    tagged line (or the refusal that came instead of a '+')."""
    r.send(tag.encode() + b" APPEND Drafts")
    for p in parts:
        if isinstance(p, bytes):
            r.send(p)
            continue
        r.send(b" {%d}\r\n" % len(p[1]))
        line = r.response()
        if not line.startswith(b"+"):
            return line.decode(errors="replace")
        r.send(p[1])
    r.send(b"\r\n")
    tagged, _ = r.read_until_tagged(tag)
    return tagged


def test_ok(c, d):
    m = imaplib.IMAP4("127.0.0.1", d.imap_port)
    m.login(ALICE, d.passwords[ALICE])
    typ, data = m.capability()
    c.check(b"MULTIAPPEND" in data[0], "CAPABILITY lists MULTIAPPEND", data)
    typ, data = m.append("Drafts", None, None, msg(100))
    c.check(typ == "OK", "imaplib APPEND of one message works", data)
    m.logout()
    r = raw_login(d)
    count, nxt = messages(r)
    tag = r.next_tag()
    tagged = sync_append(r, tag, [("sync", msg(1)), b" (\\Seen)", ("sync", msg(2)), ("sync", msg(3))])
    c.check(f"APPENDUID" in tagged and f" {nxt}:{nxt + 2}]" in tagged,
            "three messages in one APPEND: OK [APPENDUID v first:last]", tagged)
    r.command("EXAMINE Drafts")
    _, untagged = r.command(f"UID FETCH {nxt}:{nxt + 2} (UID BODY.PEEK[])")
    got = b"\r\n".join(untagged)
    c.check(all(msg(i) in got for i in (1, 2, 3)) and got.find(msg(1)) < got.find(msg(2)) < got.find(msg(3)),
            "the three are stored whole and in order", got[:200])
    r.close()


def test_failing_middle(c, d):
    r = raw_login(d)
    cases = []
    before, _ = messages(r)
    # A synchronizing literal over the limit in the middle: [TOOBIG] before its data.
    tag = r.next_tag()
    tagged = sync_append(r, tag, [("sync", msg(1)), b" {%d}\r\n" % (MAX * 2)])
    cases.append(("a synchronizing literal over the size limit in the middle: NO [TOOBIG]",
                  tag in tagged and "NO [TOOBIG]" in tagged, tagged))
    # LITERAL+ over the limit in the middle: the data is read and dropped, then an error.
    tag = r.next_tag()
    big = msg(5, MAX * 2)
    r.send(tag.encode() + b" APPEND Drafts {%d+}\r\n" % len(msg(1)) + msg(1) +
           b" {%d+}\r\n" % len(big) + big + b" {%d+}\r\n" % len(msg(3)) + msg(3) + b"\r\n")
    tagged, _ = r.read_until_tagged(tag)
    cases.append(("a LITERAL+ literal over the size limit in the middle: refused with [TOOBIG]",
                  "TOOBIG" in tagged and " OK " not in tagged, tagged))
    # A NUL in a plain literal (not literal8) in the middle: a parse error.
    tag = r.next_tag()
    nul = msg(6).replace(b"\r\n\r\n", b"\r\n\r\nbinary\0byte\r\n")
    r.send(tag.encode() + b" APPEND Drafts {%d+}\r\n" % len(msg(1)) + msg(1) +
           b" {%d+}\r\n" % len(nul) + nul + b" {%d+}\r\n" % len(msg(3)) + msg(3) + b"\r\n")
    tagged, _ = r.read_until_tagged(tag)
    cases.append(("a NUL in the second literal: BAD", " BAD " in tagged, tagged))
    # An invalid flag for the second message, an empty third one.
    tag = r.next_tag()
    tagged = sync_append(r, tag, [("sync", msg(1)), b" (\\Nonsense)", ("sync", msg(2))])
    cases.append(("an invalid flag on the second message: BAD", " BAD " in tagged, tagged))
    tag = r.next_tag()
    tagged = sync_append(r, tag, [("sync", msg(1)), ("sync", b""), ("sync", msg(3))])
    cases.append(("an empty second message: NO", " NO " in tagged, tagged))
    for what, ok, detail in cases:
        c.check(ok, what, detail)
    after, _ = messages(r)
    c.check(after == before, f"none of the messages of the failed commands is visible ({before} before, {after} after)")
    tagged, _ = r.command("NOOP")
    c.check(imap_tagged_ok(tagged), "the session goes on", tagged)
    r.close()


def account_files(d):
    base = d.data_dir / "mail"
    return sorted(str(p.relative_to(base)) for p in base.rglob("*.eml"))


def test_kill9(c, d):
    r = raw_login(d)
    before, _ = messages(r)
    files = account_files(d)
    tag = r.next_tag()
    one, two, three = msg(1, 4000), msg(2, 4000), msg(3, 8000)
    r.send(tag.encode() + b" APPEND Drafts {%d+}\r\n" % len(one) + one + b" {%d+}\r\n" % len(two) + two +
           b" {%d+}\r\n" % len(three) + three[:3000])
    time.sleep(1.0)  # let the daemon stream the first two messages into their files
    tmp = list((d.data_dir / "tmp").glob("*"))
    c.check(len(tmp) >= 2, f"mid-MULTIAPPEND: the messages are being written ({len(tmp)} files in tmp/)")
    d.kill9()
    r.close()
    if not start_daemon(c, d, "kill -9 mid-MULTIAPPEND: ternd restarts on the same data dir"):
        return
    r = raw_login(d)
    after, _ = messages(r)
    c.check(after == before, f"after the restart none of the three messages is visible ({before} before, {after} after)")
    c.check(account_files(d) == files, "and no message file of it is in the account's directory",
            set(account_files(d)) - set(files))
    r.close()


def test_big(c, d):
    r = raw_login(d)
    count, nxt = messages(r)
    tag = r.next_tag()
    parts = [msg(1000 + i, 200 * 1024 - 2000) for i in range(40)]
    data = tag.encode() + b" APPEND Drafts"
    for p in parts:
        data += b" {%d+}\r\n" % len(p) + p
    r.send(data + b"\r\n")
    tagged, _ = r.read_until_tagged(tag)
    c.check(f"[APPENDUID" in tagged and f" {nxt}:{nxt + 39}]" in tagged,
            "40 messages of 200 KiB in one APPEND (8 MiB): OK with 40 UIDs", tagged)
    r.command("EXAMINE Drafts")
    bad = []
    for i in (0, 17, 39):
        _, untagged = r.command(f"UID FETCH {nxt + i} BODY.PEEK[]")
        if parts[i] not in b"".join(untagged):
            bad.append(i)
    c.check(not bad, "they are stored byte for byte (messages 1, 18, 40 compared)", bad)
    r.close()


def run(c):
    with Daemon("multiappend", imap=True, options=[f"smtp.max_message_size={MAX}"]) as d:
        if not start_daemon(c, d):
            return
        test_ok(c, d)
        test_failing_middle(c, d)
        test_kill9(c, d)
    with Daemon("multiappend-big", imap=True) as d:
        if not start_daemon(c, d):
            return
        test_big(c, d)
        c.check(d.stop() == 0, "ternd exits 0 on SIGTERM")


if __name__ == "__main__":
    main_guard(run)
