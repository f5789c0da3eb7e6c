#!/usr/bin/env python3
"""End-to-end: IMAP SEARCH narrowed by the store's full-text index (SQLite FTS5, trigram) gives exactly
the results of the scan, and reads only the candidates' files.

A ternd (log.level=debug: its "event=search ... files=N" line counts the message files a SEARCH read)
gets a varied mailbox over SMTP and MULTIAPPEND: RFC 2047 Q and B headers (UTF-8, ISO-8859-1), base64 and
quoted-printable bodies, HTML, multipart with a PDF attachment (not searched), an embedded message/rfc822,
Cc with a comment, Bcc, a Subject full of FTS5 query syntax ("NEAR(", '*', '"', "subject:", '^'),
non-ASCII and Unicode case folding (STRASSE finds Straße). What is checked:
- for a table of search programs (SUBJECT/FROM/TO/CC/BCC/BODY/TEXT with long and short strings, AND with
  flags, NOT and OR around indexed keys, hostile strings), UID SEARCH answers the same UIDs as the same
  program in a form the index never narrows ("OR k k", evaluated by the full scan), and the expected UIDs
  where the table gives them (so the comparison is never between two empty answers);
- every delivery is indexed in its transaction (no row left to do); an expunged message leaves the index
  and is never found; a COPY is found in its new mailbox without a backfill;
- messages stored before the index existed (their index rows removed, put back on the to-do list while the
  daemon is stopped, as migration 6 leaves an older store) are found after the restart and the idle
  committer's backfill indexes them;
- SUBJECT on a mailbox of BULK messages reads only the files of the candidates (files=N in the debug line),
  while the scan form reads every one: the index is what spares the reads.
"""

import base64
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, Daemon, RawIMAP, imap_tagged_ok  # noqa: E402

BULK = 2000
GROUP = 200  # messages per MULTIAPPEND (STORE_GROUP_MAX is 256)


def msg(headers, body, ctype=None):
    lines = [f"{k}: {v}" for k, v in headers]
    if ctype:
        lines += ["MIME-Version: 1.0"] + ctype
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode() if isinstance(body, str) else \
        ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def b64(text, charset="utf-8"):
    return base64.encodebytes(text.encode(charset)).decode().replace("\n", "\r\n")


MESSAGES = [
    # 1: Q-encoded UTF-8 subject and From name
    msg([("From", "=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.net>"), ("To", ALICE),
         ("Subject", "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="), ("Message-ID", "<idx1@example.net>")],
        "Hallo Alice, wie geht es?\r\n"),
    # 2: B-encoded ISO-8859-1 subject, base64 UTF-8 body
    msg([("From", "Eve <eve@example.com>"), ("To", ALICE), ("Cc", "Bob (the builder) <bob@example.com>"),
         ("Subject", "=?ISO-8859-1?B?" + base64.b64encode("Café crème".encode("latin-1")).decode() + "?=")],
        b64("Die Straße ist lang und das Wetter schön.\r\n"),
        ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"]),
    # 3: quoted-printable ISO-8859-1 body, Bcc
    msg([("From", "Zoe <zoe@example.org>"), ("To", "Team <team@example.org>"), ("Bcc", "hidden@example.org"),
         ("Subject", "quarterly report")],
        "Le r=E9sultat est tr=E8s bon.\r\nSee you at the meeting.\r\n",
        ["Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: quoted-printable"]),
    # 4: HTML only
    msg([("From", "news@example.com"), ("To", ALICE), ("Subject", "Weekly newsletter")],
        "<html><body><p>Hello <b>World</b> of widgets</p></body></html>\r\n",
        ["Content-Type: text/html; charset=utf-8"]),
    # 5: multipart/alternative + a PDF attachment whose bytes hold a word that must not be found
    msg([("From", "Carol <carol@example.net>"), ("To", ALICE), ("Subject", "invoice attached")],
        "--b1\r\nContent-Type: text/plain\r\n\r\nPlease find the invoice.\r\n"
        "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64("%PDF secretpayload") + "--b1--\r\n",
        ["Content-Type: multipart/mixed; boundary=b1"]),
    # 6: an embedded message
    msg([("From", "fwd@example.com"), ("To", ALICE), ("Subject", "Fwd: something")],
        "--b2\r\nContent-Type: text/plain\r\n\r\nForwarding this.\r\n"
        "--b2\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.com\r\nSubject: inner topic here\r\n"
        "\r\ninner body words\r\n--b2--\r\n",
        ["Content-Type: multipart/mixed; boundary=b2"]),
    # 7: FTS5 query syntax in the subject and body
    msg([("From", "mallory@example.com"), ("To", ALICE),
         ("Subject", 'say "hi" NEAR(x y) subject:z* ^AND {body}')],
        'body with "quotes" and * stars OR NOT\r\n'),
    # 8: to be expunged
    msg([("From", "gone@example.com"), ("To", ALICE), ("Subject", "expungeme soon")], "expungeme body\r\n"),
    # 9: windows-1252 body, STRASSE in upper case
    msg([("From", "up@example.com"), ("To", ALICE), ("Subject", "STRASSE GROSS")],
        "\u20acuro prices\r\n",
        ["Content-Type: text/plain; charset=utf-8"]),
]

# (program, expected UIDs or None to compare with the scan only). UIDs follow MESSAGES (1-based) and the
# SMTP one (10).
TABLE = [
    ('SUBJECT "gr\u00fc\u00dfe"', {1}),
    ('SUBJECT "GRUESSE"', set()),
    ('SUBJECT "k\u00f6ln"', {1}),
    ('SUBJECT "caf\u00e9 cr"', {2}),
    ('SUBJECT "strasse"', {9}),
    ('SUBJECT "report"', {3}),
    ('SUBJECT "inner topic"', set()),
    ('SUBJECT "\\"hi\\" NEAR(x y)"', {7}),
    ('SUBJECT "subject:z*"', {7}),
    ('SUBJECT "^AND {body}"', {7}),
    ('SUBJECT "NEAR(x z)"', set()),
    ('SUBJECT "ab"', None),
    ('SUBJECT "e"', None),
    ('FROM "j\u00fcrgen m\u00fcller"', {1}),
    ('FROM "<eve@example.com>"', {2}),
    ('FROM "example"', None),
    ('TO "team@example"', {3}),
    ('TO "Team <team"', {3}),
    ('CC "bob@example.com"', {2}),
    ('CC "builder"', set()),
    ('BCC "hidden@"', {3}),
    ('BODY "STRASSE"', {2}),
    ('BODY "r\u00e9sultat est tr\u00e8s"', {3}),
    ('BODY "widgets"', {4}),
    ('BODY "world</b> of"', {4}),
    ('BODY "invoice"', {5}),
    ('BODY "secretpayload"', set()),
    ('BODY "inner body"', {6}),
    ('BODY "inner topic"', {6}),
    ('BODY "\\"quotes\\" and *"', {7}),
    ('BODY "\u20acuro"', {9}),
    ('BODY "smtp delivered"', {10}),
    ('TEXT "idx1@example.net"', {1}),
    ('TEXT "wie geht"', {1}),
    ('TEXT "quarterly"', {3}),
    ('TEXT "subject"', None),
    ('TEXT "ex"', None),
    ('BODY "' + "lorem " * 60 + '"', set()),  # past the 256 bytes the index is asked for
    ('SEEN SUBJECT "report"', set()),
    ('UNSEEN SUBJECT "report"', {3}),
    ('SUBJECT "report" NOT BODY "meeting"', set()),
    ('NOT SUBJECT "report"', None),
    ('OR SUBJECT "report" BODY "widgets"', {3, 4}),
    ('(SUBJECT "fwd" BODY "forwarding") UID 1:*', {6}),
    ('SUBJECT "fwd" OR BODY "nothing" BODY "forwarding"', {6}),
    ('NOT NOT SUBJECT "invoice"', {5}),
    ('HEADER Subject "invoice"', {5}),
    ('HEADER From "carol"', {5}),
    ('SUBJECT "expungeme"', set()),
    ('BODY "expungeme"', set()),
]


def uid_search(s, program, charset=True):
    data = program.encode()
    cmd = b"UID SEARCH " + (b"CHARSET UTF-8 " if charset and any(b > 127 for b in data) else b"")
    # Strings with non-ASCII bytes go as quoted strings: ternd takes 8-bit in quoted strings only as
    # literals, so send every quoted string holding non-ASCII as a LITERAL+ literal.
    out = b""
    i = 0
    while i < len(data):
        if data[i:i + 1] == b'"':
            j = i + 1
            while data[j:j + 1] != b'"':
                j += 2 if data[j:j + 1] == b"\\" else 1
            raw = data[i + 1:j]
            if any(b > 127 for b in raw):
                text = raw.replace(b'\\"', b'"').replace(b"\\\\", b"\\")
                out += b"{%d+}\r\n" % len(text) + text
            else:
                out += data[i:j + 1]
            i = j + 1
        else:
            out += data[i:i + 1]
            i += 1
    tagged, untagged = s.command(cmd + out)
    if not imap_tagged_ok(tagged):
        raise RuntimeError(f"UID SEARCH {program}: {tagged}")
    uids = set()
    for line in untagged:
        if line.startswith(b"* SEARCH"):
            uids |= {int(x) for x in line.split()[2:]}
    return uids


def scan_form(program):
    """The same program in a form the index never narrows: OR (k) (k) is k, evaluated on every message."""
    return f"OR ({program}) ({program})"


def multiappend(s, mailbox, messages):
    tag = s.next_tag()
    parts = [tag.encode() + b" APPEND " + mailbox.encode()]
    for m in messages:
        parts.append(b" {%d+}\r\n" % len(m) + m)
    s.send(b"".join(parts) + b"\r\n")
    tagged, _ = s.read_until_tagged(tag)
    if not imap_tagged_ok(tagged):
        raise RuntimeError(f"APPEND: {tagged}")


def db_int(d, sql):
    db = sqlite3.connect(f"file:{d.data_dir / 'tern.db'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


def search_lines(d):
    return [ln for ln in d.stderr_text().splitlines() if "event=search messages=" in ln]


def last_files(d, before):
    lines = search_lines(d)[before:]
    if not lines:
        return None
    for field in lines[-1].split():
        if field.startswith("files="):
            return int(field[6:])
    return None


def login(d):
    s = RawIMAP(d.imap_port, timeout=60)
    tagged, _ = s.login(ALICE, d.passwords[ALICE])
    if not imap_tagged_ok(tagged):
        raise RuntimeError(f"LOGIN: {tagged}")
    tagged, _ = s.command("SELECT INBOX")
    if not imap_tagged_ok(tagged):
        raise RuntimeError(f"SELECT: {tagged}")
    return s


def compare_table(checks, d, s, what):
    for program, expected in TABLE:
        got = uid_search(s, program)
        scan = uid_search(s, scan_form(program))
        checks.check(got == scan, f"{what}: UID SEARCH {program} equals the scan's answer",
                     f"index {sorted(got)} scan {sorted(scan)}")
        if expected is not None:
            checks.check(got == expected, f"{what}: UID SEARCH {program} answers {sorted(expected)}",
                         f"got {sorted(got)}")


def run_varied(checks, d):
    s = login(d)
    try:
        multiappend(s, "INBOX", MESSAGES)
        code = harness.deliver_raw(d.mx_port, "sender@remote.test", [ALICE],
                                   b"From: sender@remote.test\r\nTo: " + ALICE.encode() +
                                   b"\r\nSubject: over smtp\r\n\r\nsmtp delivered text\r\n")
        checks.check(code == 250, "a message delivered over SMTP", f"code {code}")
        tagged, _ = s.command("NOOP")
        checks.check(db_int(d, "SELECT count(*) FROM message_text_pending") == 0,
                     "every delivery is indexed in its transaction: no row left to do")
        checks.check(db_int(d, "SELECT count(*) FROM message_text") == len(MESSAGES) + 1,
                     "one index row per message")
        s.command("UID STORE 8 +FLAGS.SILENT (\\Deleted)")
        tagged, _ = s.command("EXPUNGE")
        checks.check(imap_tagged_ok(tagged), "EXPUNGE of UID 8", tagged)
        checks.check(db_int(d, "SELECT count(*) FROM message_text") == len(MESSAGES),
                     "the expunged message's index row went with it")
        before = len(search_lines(d))
        compare_table(checks, d, s, "indexed")
        index_lines = [ln for ln in d.stderr_text().splitlines() if "event=search-index " in ln]
        checks.check(len(index_lines) > 0 and len(search_lines(d)) > before,
                     "the index answered (event=search-index lines in the debug log)",
                     f"{len(index_lines)} lines")
        tagged, _ = s.command("UID COPY 3,4 Archive")
        if not imap_tagged_ok(tagged):
            tagged, _ = s.command("CREATE Archive")
            tagged, _ = s.command("UID COPY 3,4 Archive")
        checks.check(imap_tagged_ok(tagged), "UID COPY 3,4 to Archive", tagged)
        checks.check(db_int(d, "SELECT count(*) FROM message_text_pending") == 0,
                     "the copies got their source's index rows (nothing left to do)")
        tagged, _ = s.command("SELECT Archive")
        checks.check(uid_search(s, 'BODY "widgets"') == {2} and uid_search(s, 'SUBJECT "report"') == {1},
                     "the copies are found in Archive by BODY and SUBJECT")
        s.command("LOGOUT")
    finally:
        s.close()


def bodystructures(d, uids):
    """UID FETCH uids (BODYSTRUCTURE ENVELOPE): the untagged lines, in order."""
    s = login(d)
    try:
        tagged, lines = s.command(f"UID FETCH {','.join(map(str, uids))} (BODYSTRUCTURE ENVELOPE)")
        return [ln for ln in lines if b" FETCH " in ln] if imap_tagged_ok(tagged) else None
    finally:
        s.close()


def run_backfill(checks, d):
    older = (1, 2, 3, 7)
    before = bodystructures(d, older)
    status = d.stop()
    checks.check(status == 0, "ternd stopped", f"status {status}")
    db = sqlite3.connect(d.data_dir / "tern.db", timeout=10)
    with db:
        db.execute("DELETE FROM message_text WHERE rowid IN (SELECT m.id FROM messages m "
                   "JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.name = 'INBOX' AND m.uid IN (1, 2, 3, 7))")
        db.execute("INSERT INTO message_text_pending (id) SELECT m.id FROM messages m JOIN mailboxes b "
                   "ON b.id = m.mailbox_id WHERE b.name = 'INBOX' AND m.uid IN (1, 2, 3, 7)")
        # Rows from before schema version 3 had no MIME structure either.
        db.execute("UPDATE messages SET mime = NULL WHERE id IN (SELECT m.id FROM messages m "
                   "JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.name = 'INBOX' AND m.uid IN (1, 2, 3, 7))")
    pending = db.execute("SELECT count(*) FROM message_text_pending").fetchone()[0]
    db.close()
    checks.check(pending == 4, "four messages made older than the index (no index rows, on the to-do list)")
    if not harness.start_daemon(checks, d, "ternd restarted on the older store"):
        return
    s = login(d)
    try:
        compare_table(checks, d, s, "after restart")
        for _ in range(200):
            if db_int(d, "SELECT count(*) FROM message_text_pending") == 0:
                break
            time.sleep(0.1)
        checks.check(db_int(d, "SELECT count(*) FROM message_text_pending") == 0,
                     "the committer's backfill indexed the older messages")
        checks.check(db_int(d, "SELECT count(*) FROM messages WHERE mime IS NULL") == 0,
                     "the backfill also stored the MIME structure the older rows lacked")
        after = bodystructures(d, older)
        checks.check(before is not None and len(before) == 4 and after == before,
                     "BODYSTRUCTURE and ENVELOPE of the older messages unchanged by the backfill",
                     f"{before} / {after}")
        compare_table(checks, d, s, "after backfill")
        s.command("LOGOUT")
    finally:
        s.close()


def run_bulk(checks):
    with Daemon("search-index-bulk", imap=True, options=["log.level=debug"]) as d:
        if not harness.start_daemon(checks, d, f"ternd for {BULK} messages"):
            return
        s = login(d)
        try:
            for start in range(0, BULK, GROUP):
                batch = []
                for i in range(start, min(BULK, start + GROUP)):
                    tag = "needle-xq" if i % 500 == 7 else "filler"
                    batch.append(msg([("From", f"user{i}@example.com"), ("To", ALICE),
                                      ("Subject", f"message {i} {tag}")],
                                     f"body of message {i}\r\n" + "lorem ipsum dolor sit amet\r\n" * 20))
                multiappend(s, "INBOX", batch)
            s.command("NOOP")
            expected = {i + 1 for i in range(BULK) if i % 500 == 7}
            before = len(search_lines(d))
            got = uid_search(s, 'SUBJECT "needle-xq"')
            files = last_files(d, before)
            checks.check(got == expected, f"SUBJECT on {BULK} messages answers {sorted(expected)}",
                         f"got {sorted(got)}")
            checks.check(files is not None and files <= len(expected),
                         f"SUBJECT read only the candidates' files ({len(expected)})", f"files={files}")
            before = len(search_lines(d))
            got = uid_search(s, 'BODY "message 1234"')
            files = last_files(d, before)
            checks.check(got == {1235}, "BODY on the bulk mailbox answers UID 1235", f"got {sorted(got)}")
            checks.check(files is not None and files <= 1, "BODY read only the candidate's file",
                         f"files={files}")
            before = len(search_lines(d))
            got = uid_search(s, scan_form('SUBJECT "needle-xq"'))
            files = last_files(d, before)
            checks.check(got == expected and files == BULK,
                         f"the scan form reads every file ({BULK}): the index is what spares them",
                         f"files={files}")
            s.command("LOGOUT")
        finally:
            s.close()
        status = d.stop()
        checks.check(status == 0, "ternd exits 0", f"status {status}\n" + d.stderr_tail())


def run(checks):
    with Daemon("search-index", imap=True, options=["log.level=debug"]) as d:
        if not harness.start_daemon(checks, d, "ternd with IMAP"):
            return
        checks.guard("varied mailbox searched", run_varied, checks, d)
        checks.guard("older messages searched and backfilled", run_backfill, checks, d)
        checks.check(d.alive(), "ternd still running")
        status = d.stop()
        checks.check(status == 0, "SIGTERM: ternd exits 0", f"status {status}\n" + d.stderr_tail())
    run_bulk(checks)


if __name__ == "__main__":
    harness.main_guard(run)
