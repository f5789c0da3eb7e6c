#!/usr/bin/env python3
"""End-to-end: ternd's IMAP mailbox management, APPEND, COPY/MOVE, keywords, \\Recent, CONDSTORE basics
and the notify-queue resync, against a real ternd on loopback (issue 5).

What is checked, each with a real client (Python's imaplib or a raw socket):
- CREATE (with parents, trailing delimiter, existing name, INBOX), LIST with \\HasChildren /
  \\HasNoChildren / \\Noselect parents, modified UTF-7 names both ways, RENAME with children,
  DELETE (INBOX refused, children kept as a \\Noselect parent), SUBSCRIBE/UNSUBSCRIBE/LSUB with the
  '%' parent rule, RENAME INBOX (messages move, INBOX stays), UIDVALIDITY never reused;
- APPEND: flags, keywords and internal date kept, APPENDUID, [TRYCREATE], a 6 MB literal streamed,
  LITERAL+, an APPEND to the selected mailbox shows EXISTS, a too-large literal gets [TOOBIG];
- COPY/UID COPY with COPYUID, UID MOVE with the untagged COPYUID and EXPUNGE, [TRYCREATE];
- keywords: STORE +FLAGS/-FLAGS/FLAGS of keywords, FLAGS/PERMANENTFLAGS with \\* and the keywords,
  another session sees them as FETCH FLAGS;
- \\Recent: a new message is \\Recent in exactly one of two SELECTed sessions; EXAMINE claims nothing;
- CONDSTORE: ENABLE, SELECT (CONDSTORE) HIGHESTMODSEQ, STORE (UNCHANGEDSINCE) with [MODIFIED],
  MODSEQ in FETCH responses after STORE, STATUS HIGHESTMODSEQ;
- an IDLE session that does not read while another changes 3,000 messages' flags five times:
  ternd keeps serving and the session, once it reads, resyncs (flags right, no BYE);
- 40 IMAPS IDLE clients reset during a delivery burst; brute force from one address is throttled.
"""

import imaplib
import re
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ALICE, BOB, Checks, Daemon, RawIMAP, imap_tagged_ok  # noqa: E402

PW = {}


def login(d, user=ALICE):
    m = imaplib.IMAP4("127.0.0.1", d.imap_port)
    m.login(user, d.passwords[user])
    return m


def raw_login(d, user=ALICE):
    r = RawIMAP(d.imap_port)
    tagged, _ = r.login(user, d.passwords[user])
    assert imap_tagged_ok(tagged), tagged
    return r


def list_names(m, pattern="*"):
    typ, data = m.list('""', pattern)
    out = {}
    for line in data or []:
        if line is None:
            continue
        mm = re.match(rb'\((.*?)\) "(.)" (.*)', line)
        if mm:
            name = mm.group(3).strip(b'"').decode()
            out[name] = mm.group(1).decode()
    return out


MSG = (b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: appended\r\n"
       b"Message-ID: <app-1@remote.test>\r\n\r\nHello from APPEND.\r\n")


def test_names(c, d):
    m = login(d)
    c.check(m.create("Work/Projects/2026")[0] == "OK", "CREATE Work/Projects/2026 (parents made too)")
    names = list_names(m)
    c.check("Work" in names and "\\HasChildren" in names["Work"], "LIST: Work has \\HasChildren",
            names)
    c.check("\\HasNoChildren" in names.get("Work/Projects/2026", ""),
            "LIST: Work/Projects/2026 has \\HasNoChildren", names)
    typ, data = m.create("Work")
    c.check(typ == "NO" and b"ALREADYEXISTS" in data[0], "CREATE of an existing name: NO [ALREADYEXISTS]",
            data)
    typ, data = m.create("inbox")
    c.check(typ == "NO", "CREATE INBOX (any case): NO", data)
    c.check(m.create("Trailing/")[0] == "OK" and "Trailing" in list_names(m),
            "CREATE with a trailing delimiter creates the name without it")
    # modified UTF-7: U+00E9 is &AOk-; the store keeps UTF-8, the wire sees UTF-7 both ways.
    c.check(m.create("&AOk-t&AOk-")[0] == "OK", "CREATE &AOk-t&AOk- (modified UTF-7 for 'été')")
    c.check("&AOk-t&AOk-" in list_names(m), "LIST returns the name in modified UTF-7")
    typ, data = m.create("bad&Jjo")
    c.check(typ == "NO", "CREATE with invalid modified UTF-7: NO", data)
    typ, data = m.status("&AOk-t&AOk-", "(MESSAGES UIDVALIDITY)")
    c.check(typ == "OK" and data[0].startswith(b'"&AOk-t&AOk-"'), "STATUS answers with the UTF-7 name",
            data)
    # RENAME with children
    c.check(m.rename("Work", "Job")[0] == "OK", "RENAME Work Job")
    names = list_names(m)
    c.check("Job/Projects/2026" in names and "Work" not in names and "Work/Projects" not in names,
            "RENAME took the children along", names)
    typ, data = m.rename("Nope", "Other")
    c.check(typ == "NO" and b"NONEXISTENT" in data[0], "RENAME of a missing mailbox: NO [NONEXISTENT]",
            data)
    typ, data = m.rename("Job", "Sent")
    c.check(typ == "NO" and b"ALREADYEXISTS" in data[0], "RENAME onto an existing name: NO [ALREADYEXISTS]",
            data)
    # DELETE
    typ, data = m.delete("INBOX")
    c.check(typ == "NO", "DELETE INBOX: NO", data)
    c.check(m.delete("Job/Projects")[0] == "OK", "DELETE Job/Projects (it has a child)")
    names = list_names(m)
    c.check("\\Noselect" in names.get("Job/Projects", "") and "Job/Projects/2026" in names,
            "the deleted parent stays as \\Noselect with its child", names)
    typ, data = m.delete("Nope")
    c.check(typ == "NO" and b"NONEXISTENT" in data[0], "DELETE of a missing mailbox: NO [NONEXISTENT]",
            data)
    # UIDVALIDITY never reused for a name deleted and created again at once
    m.create("Again")
    v1 = m.status("Again", "(UIDVALIDITY)")[1][0]
    m.delete("Again")
    m.create("Again")
    v2 = m.status("Again", "(UIDVALIDITY)")[1][0]
    c.check(v1 != v2, "DELETE + CREATE in the same second: a new UIDVALIDITY", (v1, v2))
    # SUBSCRIBE / LSUB
    c.check(m.subscribe("Job/Projects/2026")[0] == "OK", "SUBSCRIBE Job/Projects/2026")
    typ, data = m.lsub('""', "*")
    lsub = [x for x in data if x]
    c.check(any(b'"Job/Projects/2026"' in x for x in lsub), "LSUB * lists the subscription", lsub)
    c.check(not any(x.endswith(b'"Job"') for x in lsub), "LSUB * does not list its unsubscribed parent",
            lsub)
    typ, data = m.lsub('""', "%")
    c.check(any(x.endswith(b'"Job"') and b"\\Noselect" in x for x in data if x),
            "LSUB % lists the parent of a subscription as \\Noselect", data)
    c.check(m.unsubscribe("Job/Projects/2026")[0] == "OK", "UNSUBSCRIBE")
    typ, data = m.lsub('""', "Job*")
    c.check(not [x for x in data if x], "LSUB after UNSUBSCRIBE: gone", data)
    m.logout()


def test_append(c, d):
    m = login(d)
    typ, data = m.append("INBOX", "(\\Flagged $Work)", '"17-Jul-1996 02:44:25 -0700"', MSG)
    c.check(typ == "OK" and re.search(rb"\[APPENDUID \d+ \d+\]", data[0]), "APPEND: OK [APPENDUID v uid]",
            data)
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1)) if typ == "OK" else 0
    m.select("INBOX")
    typ, data = m.uid("FETCH", str(uid), "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    blob = b"".join(x if isinstance(x, bytes) else x[0] + x[1] for x in data if x)
    c.check(b"\\Flagged" in blob and b"$Work" in blob, "APPEND flags and keyword kept", blob[:200])
    c.check(b'INTERNALDATE "17-Jul-1996 09:44:25 +0000"' in blob or b"17-Jul-1996" in blob,
            "APPEND date-time kept as the internal date", blob[:200])
    c.check(MSG in blob, "APPEND: the stored message is byte-identical", blob[-200:])
    typ, data = m.append("NoSuchBox", None, None, MSG)
    c.check(typ == "NO" and b"TRYCREATE" in data[0], "APPEND to a missing mailbox: NO [TRYCREATE]", data)
    # A large message streams (6 MB).
    big = MSG.replace(b"Hello from APPEND.\r\n", b"".join(b"%07d line of a big message\r\n" % i
                                                           for i in range(200000)))
    t0 = time.time()
    typ, data = m.append("Drafts", None, None, big)
    c.check(typ == "OK", f"APPEND of a {len(big) // 1000000} MB message ({time.time() - t0:.1f} s)", data)
    m.select("Drafts")
    typ, data = m.fetch("1", "(RFC822.SIZE)")
    c.check(typ == "OK" and f"RFC822.SIZE {len(big)}".encode() in data[0], "the big message has the right size",
            data)
    m.logout()
    # LITERAL+ and EXISTS on the selected mailbox, on a raw socket.
    r = raw_login(d)
    r.command("SELECT INBOX")
    msg = b"Subject: literal plus\r\n\r\nx\r\n"
    tag = r.next_tag()
    r.send(tag.encode() + b" APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    tagged, untagged = r.read_until_tagged(tag)
    c.check(imap_tagged_ok(tagged) and any(re.match(rb"\* \d+ EXISTS", u) for u in untagged),
            "APPEND {n+} to the selected mailbox: EXISTS before the OK", (tagged, untagged))
    tag = r.next_tag()
    r.send(tag.encode() + b" APPEND INBOX {999999999999}\r\n")
    tagged, _ = r.read_until_tagged(tag)
    c.check("TOOBIG" in tagged, "APPEND of a literal over the size limit: [TOOBIG] before any data", tagged)
    tagged, _ = r.command("NOOP")
    c.check(imap_tagged_ok(tagged), "the session goes on after the refused literal", tagged)
    # MULTIAPPEND (RFC 3502): two {n+} message literals are two messages; a refused synchronizing
    # second literal drops the first one too, and nothing of it leaks into the next APPEND.
    one, two = b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n"
    tag = r.next_tag()
    r.send(tag.encode() + b" APPEND Drafts {%d+}\r\n" % len(one) + one +
           b" {%d+}\r\n" % len(two) + two + b"\r\n")
    tagged, _ = r.read_until_tagged(tag)
    c.check(imap_tagged_ok(tagged) and re.search(r"APPENDUID \d+ \d+:\d+", tagged) is not None,
            "two {n+} message literals: two messages (MULTIAPPEND)", tagged)
    tag = r.next_tag()
    r.send(tag.encode() + b" APPEND Drafts {%d+}\r\n" % len(one) + one + b" {99999999999}\r\n")
    tagged, _ = r.read_until_tagged(tag)
    c.check(" NO " in tagged, "a second synchronizing literal too large is refused before its data", tagged)
    three = b"Subject: three\r\n\r\n3\r\n"
    tag = r.next_tag()
    r.send(tag.encode() + b" APPEND Drafts {%d+}\r\n" % len(three) + three + b"\r\n")
    tagged, _ = r.read_until_tagged(tag)
    uid = re.search(r"APPENDUID \d+ (\d+)", tagged)
    c.check(uid is not None, "the next APPEND works", tagged)
    if uid:
        r.command("SELECT Drafts")
        _, untagged = r.command(f"UID FETCH {uid.group(1)} BODY.PEEK[]")
        body = b"".join(untagged)
        c.check(three in body and b"Subject: one" not in body and b"Subject: two" not in body,
                "and stores only its own message", body[-120:])
    r.close()


def test_copy_move(c, d):
    m = login(d)
    m.create("Archive")
    m.select("INBOX")
    typ, data = m.search(None, "ALL")
    n = len(data[0].split())
    typ, data = m.copy("1:*", "Archive")
    c.check(typ == "OK" and re.search(rb"\[COPYUID \d+ [\d:,]+ [\d:,]+\]", data[0]),
            "COPY 1:* Archive: OK [COPYUID ...]", data)
    st = m.status("Archive", "(MESSAGES)")[1][0]
    c.check(f"MESSAGES {n}".encode() in st, f"Archive holds the {n} copies", st)
    typ, data = m.copy("1", "Nope")
    c.check(typ == "NO" and b"TRYCREATE" in data[0], "COPY to a missing mailbox: NO [TRYCREATE]", data)
    # UID MOVE on a raw socket: untagged OK [COPYUID], EXPUNGE, tagged OK.
    r = raw_login(d)
    r.command("SELECT Archive")
    tagged, untagged = r.command("UID MOVE 1:* Trash")
    c.check(imap_tagged_ok(tagged), "UID MOVE 1:* Trash: OK", tagged)
    c.check(any(u.startswith(b"* OK [COPYUID ") for u in untagged), "MOVE: untagged OK [COPYUID ...]",
            untagged)
    exp = [u for u in untagged if re.match(rb"\* \d+ EXPUNGE", u)]
    c.check(len(exp) == n, f"MOVE: {n} EXPUNGE responses", untagged)
    tagged, untagged = r.command("STATUS Archive (MESSAGES)")
    c.check(any(b"MESSAGES 0" in u for u in untagged), "the source is empty after MOVE", untagged)
    r.close()
    m.logout()


def test_keywords_recent(c, d):
    a = raw_login(d)
    b = raw_login(d)
    a.command("SELECT INBOX")
    b.command("SELECT INBOX")
    tagged, untagged = a.command("STORE 1 +FLAGS ($Label1 Important)")
    c.check(imap_tagged_ok(tagged) and any(b"$Label1" in u and b"Important" in u for u in untagged),
            "STORE +FLAGS of keywords: FETCH FLAGS lists them", untagged)
    c.check(any(u.startswith(b"* FLAGS (") and b"Important" in u for u in untagged),
            "a new keyword is announced in an untagged FLAGS", untagged)
    tagged, untagged = b.command("NOOP")
    c.check(any(b"FETCH" in u and b"$Label1" in u for u in untagged),
            "the other session sees the keywords as FETCH FLAGS", untagged)
    tagged, untagged = a.command("STORE 1 -FLAGS (important)")
    c.check(any(b"FETCH" in u and b"Important" not in u and b"$Label1" in u for u in untagged),
            "STORE -FLAGS removes a keyword case-insensitively", untagged)
    tagged, _ = a.command("STORE 1 +FLAGS (bad]kw)")
    c.check(tagged.split()[1] in ("BAD", "NO"), "a keyword with atom-specials is refused", tagged)
    # \Recent: deliver one message; exactly one of the two sessions gets it as \Recent.
    r = RawIMAP(d.imap_port)
    r.login(ALICE, d.passwords[ALICE])
    msg = b"Subject: recent test\r\n\r\nnew\r\n"
    r.send(b"x1 APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
    r.read_until_tagged("x1")
    r.close()
    flags = []
    for s in (a, b):
        _, untagged = s.command("NOOP")
        _, untagged = s.command("FETCH * (FLAGS)")
        flags.append(b"\\Recent" in b"".join(untagged))
    c.check(flags.count(True) == 1, "a new message is \\Recent in exactly one session", flags)
    e = raw_login(d)
    _, untagged = e.command("EXAMINE INBOX")
    c.check(any(re.match(rb"\* \d+ RECENT", u) for u in untagged), "EXAMINE reports RECENT", untagged)
    for s in (a, b, e):
        s.close()


def test_condstore(c, d):
    r = raw_login(d)
    tagged, untagged = r.command("ENABLE CONDSTORE")
    c.check(any(u == b"* ENABLED CONDSTORE" for u in untagged), "ENABLE CONDSTORE: * ENABLED CONDSTORE",
            untagged)
    tagged, untagged = r.command("SELECT INBOX (CONDSTORE)")
    hm = [u for u in untagged if b"HIGHESTMODSEQ" in u]
    c.check(imap_tagged_ok(tagged) and hm, "SELECT (CONDSTORE): OK [HIGHESTMODSEQ n]", untagged)
    tagged, untagged = r.command("STORE 1 +FLAGS (\\Answered)")
    ms = [re.search(rb"MODSEQ \((\d+)\)", u) for u in untagged]
    ms = [int(x.group(1)) for x in ms if x]
    c.check(ms, "STORE with CONDSTORE: FETCH carries MODSEQ", untagged)
    tagged, untagged = r.command("STORE 1,2 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)")
    c.check("MODIFIED" in tagged, "STORE (UNCHANGEDSINCE 1) on changed messages: OK [MODIFIED ...]",
            (tagged, untagged))
    _, untagged = r.command("STATUS Trash (HIGHESTMODSEQ)")
    c.check(any(b"HIGHESTMODSEQ" in u for u in untagged), "STATUS HIGHESTMODSEQ", untagged)
    r.close()


def test_resync(c, d):
    """6,000 flag changes while an IDLE client does not read: the session resyncs."""
    m = login(d, BOB)
    m.select("INBOX")
    for i in range(0, 3000, 500):
        body = b"".join(b"Subject: bulk %d\r\n\r\nx\r\n" % j for j in range(1))
        for j in range(500):
            m.append("INBOX", None, None, b"Subject: bulk %d\r\n\r\nx\r\n" % (i + j))
    m.select("INBOX")
    idle = RawIMAP(d.imap_port)
    idle.login(BOB, d.passwords[BOB])
    idle.command("SELECT INBOX")
    idle.send(b"i1 IDLE\r\n")
    idle.response()  # "+ idling"
    idle.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    rss0 = d.proc_status("VmRSS")
    for _ in range(2):
        m.store("1:*", "+FLAGS.SILENT", "(\\Seen)")
        m.store("1:*", "-FLAGS.SILENT", "(\\Seen)")
    m.store("1:*", "+FLAGS.SILENT", "(\\Flagged)")
    rss1 = d.proc_status("VmRSS")
    c.check(d.alive(), "ternd alive after 15,000 flag changes to an IDLE client that does not read")
    # The bound itself is structural (IMAP_EVENTS_MAX queued events, then a resync; no output is
    # queued past netconn's high-water mark); at this scale RSS only shows it is not runaway.
    c.note(f"RSS {rss0} -> {rss1} KiB during the 15,000 changes")
    idle.send(b"DONE\r\n")
    lines = []
    while True:
        line = idle.response()
        lines.append(line)
        if line.startswith(b"i1 "):
            break
    c.check(lines[-1].startswith(b"i1 OK"), "IDLE ends with OK (no BYE)", lines[-3:])
    tagged, untagged = idle.command("FETCH 1:* (FLAGS)")
    flagged = sum(1 for u in untagged if b"\\Flagged" in u)
    c.check(flagged == 3000, "after the resync every message shows \\Flagged", flagged)
    idle.close()
    m.logout()


def test_tls_reset_while_idle(c, d):
    """IMAPS clients in IDLE reset their connections while deliveries are pushed to them. A stress
    check, not a deterministic one: the race it aims at (an SSL_write failing inside a reply and
    the event callback freeing the session under it) needs the reset to land between the loop's
    read and write of one session; listener.c's BEV_OPT_DEFER_CALLBACKS is what rules it out."""
    import ssl
    import struct
    from harness import deliver_raw
    ctx = d.client_tls_context()
    clients = []
    for _ in range(40):
        r = RawIMAP(d.imaps_port, tls_context=ctx)
        tagged, _ = r.login(ALICE, d.passwords[ALICE])
        r.command("SELECT INBOX")
        r.send(b"i IDLE\r\n")
        r.response()
        clients.append(r)
    msg = b"From: x@remote.test\r\nSubject: burst\r\n\r\n" + b"y" * 2000 + b"\r\n"
    for i, r in enumerate(clients):
        # Abortive close (RST) with events already queued for it.
        deliver_raw(d.mx_port, "x@remote.test", ALICE, msg)
        r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        r.sock.close()
    for _ in range(20):
        deliver_raw(d.mx_port, "x@remote.test", ALICE, msg)
    time.sleep(0.5)
    c.check(d.alive(), "ternd alive after 40 IMAPS IDLE clients reset during a delivery burst")
    r = raw_login(d)
    tagged, _ = r.command("NOOP")
    c.check(imap_tagged_ok(tagged), "and still answering", tagged)
    r.close()


def test_brute_force(c, d):
    """From 127.0.0.2 as carol: auth.max_failures (5) wrong passwords, then the right one is refused
    too, each answer after auth.failure_delay; IMAP shares the throttle with SMTP and POP3."""
    r = RawIMAP(d.imap_port, source_address=("127.0.0.2", 0))
    t0 = time.time()
    answers = [r.command('LOGIN "carol@example.test" "wrong-%d"' % i)[0] for i in range(5)]
    elapsed = time.time() - t0
    c.check(all("NO [AUTHENTICATIONFAILED]" in a for a in answers),
            "brute force: 5 wrong passwords get NO [AUTHENTICATIONFAILED]", answers)
    c.check(elapsed >= 4.5, f"brute force: each failure answered after auth.failure_delay ({elapsed:.1f} s "
            "for 5)")
    tagged, _ = r.command('LOGIN "carol@example.test" "%s"' % d.passwords["carol@example.test"])
    c.check(" NO " in tagged and "UNAVAILABLE" in tagged,
            "brute force: then the right password is refused too (throttled)", tagged)
    c.check("imap session=" in d.stderr_text() and "event=auth result=locked" in d.stderr_text(),
            "brute force: 'event=auth result=locked' logged")
    r.close()
    ok = raw_login(d)  # alice from 127.0.0.1 is not affected
    c.check(imap_tagged_ok(ok.command("NOOP")[0]), "another user from another address still logs in")
    ok.close()


def main():
    c = Checks("test_imap_mailboxes")
    with Daemon(name="imapmbox", imap=True, users={"carol@example.test": "carol-Secret-3"}) as d:
        d.start()
        for t in (test_names, test_append, test_copy_move, test_keywords_recent, test_condstore,
                  test_resync, test_tls_reset_while_idle, test_brute_force):
            c.guard(t.__name__, t, c, d)
        c.check(d.alive(), "ternd still running")
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
