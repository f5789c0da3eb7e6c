#!/usr/bin/env python3
"""End-to-end: the mailbox counters (schema version 5) and the resync that reads only what changed
(issue 11), against a real ternd on loopback.

- after each change (SMTP delivery, APPEND with \\Seen, STORE +/-\\Seen, EXPUNGE, COPY, MOVE, POP3
  DELE + QUIT, RENAME, RENAME INBOX, DELETE) STATUS (MESSAGES UNSEEN) agrees with what SELECT and
  SEARCH UNSEEN see, and no mailbox row's counters differ from a count of its messages (read from
  the daemon's database with Python's sqlite3);
- STATUS reads the row's counters (a counter changed behind the daemon's back shows in STATUS):
  it no longer counts the messages;
- a session whose notify queue overflowed resyncs from what changed since its SELECT: the right
  EXPUNGEs, EXISTS and flags, and the daemon logs that it read the changed rows and the UIDs that
  left, not the whole mailbox.
"""

import imaplib
import re
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, BOB, Daemon, RawIMAP, RawPOP3, imap_tagged_ok, pop3_ok  # noqa: E402

SENDER = "sender@remote.test"

# Mailboxes whose counters differ from a count of their rows (0 when exact).
DRIFT = ("SELECT name FROM mailboxes b WHERE messages_count != (SELECT count(*) FROM messages m "
         "WHERE m.mailbox_id = b.id AND m.recalled = 0) OR unseen_count != (SELECT count(*) FROM "
         "messages m WHERE m.mailbox_id = b.id AND m.recalled = 0 AND (m.flags & 1) = 0) OR "
         "size_sum != (SELECT coalesce(sum(m.size_crlf), 0) FROM messages m "
         "WHERE m.mailbox_id = b.id AND m.recalled = 0)")


def db(d, readonly=True):
    path = d.data_dir / "tern.db"
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    return sqlite3.connect(str(path), timeout=30)


def drifted(d):
    with db(d) as conn:
        return [r[0] for r in conn.execute(DRIFT)]


def status(r, name):
    tagged, untagged = r.command(f'STATUS "{name}" (MESSAGES UNSEEN)')
    for u in untagged:
        m = re.search(rb"MESSAGES (\d+) UNSEEN (\d+)", u)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None, tagged


def seen_by_select(r, name):
    """(EXISTS, number of SEARCH UNSEEN hits) of an EXAMINE of name."""
    tagged, untagged = r.command(f'EXAMINE "{name}"')
    exists = next((int(m.group(1)) for u in untagged
                   for m in [re.match(rb"\* (\d+) EXISTS", u)] if m), None)
    _, untagged = r.command("SEARCH UNSEEN")
    hits = next((len(u.split()) - 2 for u in untagged if u.startswith(b"* SEARCH")), None)
    r.command("CLOSE")
    return exists, hits


def agree(c, d, r, what, expect):
    """Checks STATUS of each mailbox against SELECT and against expect {name: (messages, unseen)},
    and that no row's counters drifted."""
    for name, want in expect.items():
        got = status(r, name)
        sel = seen_by_select(r, name)
        c.check(got == want and sel == want,
                f"{what}: STATUS {name} (MESSAGES UNSEEN) = {want}, as EXAMINE + SEARCH UNSEEN see",
                f"STATUS {got}, SELECT {sel}")
    bad = drifted(d)
    c.check(not bad, f"{what}: every mailbox row's counters equal a count of its messages", bad)


def deliver(d, tag):
    msg = harness.make_message(SENDER, ALICE, f"{tag} subject", harness.unique_id(tag),
                               body_lines=[f"body of {tag}"])
    code = harness.deliver_raw(d.mx_port, SENDER, ALICE, msg)
    if code != 250:
        raise RuntimeError(f"SMTP answered {code}")


def raw_login(d, user=ALICE):
    r = RawIMAP(d.imap_port)
    tagged, _ = r.login(user, d.passwords[user])
    assert imap_tagged_ok(tagged), tagged
    return r


def test_counters(c, d):
    r = raw_login(d)
    for i in range(4):
        deliver(d, f"cnt{i}")
    agree(c, d, r, "4 SMTP deliveries", {"INBOX": (4, 4)})
    m = imaplib.IMAP4("127.0.0.1", d.imap_port)
    m.login(ALICE, d.passwords[ALICE])
    m.append("INBOX", "(\\Seen)", None, b"Subject: appended\r\n\r\nseen already\r\n")
    m.append("INBOX", None, None, b"Subject: bare LF\n\nline\n")
    agree(c, d, r, "APPEND (\\Seen) and APPEND of a bare-LF message", {"INBOX": (6, 5)})
    m.select("INBOX")
    m.store("1,2", "+FLAGS", "(\\Seen)")
    m.store("5", "-FLAGS", "(\\Seen)")
    m.store("3", "+FLAGS", "(\\Flagged $Work)")
    agree(c, d, r, "STORE +\\Seen 1,2, -\\Seen 5, +\\Flagged 3", {"INBOX": (6, 4)})
    m.store("2,3", "+FLAGS", "(\\Deleted)")
    m.expunge()
    agree(c, d, r, "EXPUNGE of 2 (seen) and 3 (unseen)", {"INBOX": (4, 3)})
    m.copy("1:2", "Trash")
    agree(c, d, r, "COPY 1:2 Trash", {"INBOX": (4, 3), "Trash": (2, 1)})
    typ, data = m._simple_command("MOVE", "3", "Junk")
    c.check(typ == "OK", "MOVE 3 Junk", data)
    agree(c, d, r, "MOVE 3 Junk", {"INBOX": (3, 2), "Junk": (1, 1)})
    m.logout()

    pop = RawPOP3(d.pop3_port)
    c.check(pop3_ok(pop.login(ALICE, d.passwords[ALICE])), "POP3 login")
    c.check(pop3_ok(pop.cmd("DELE 1")), "POP3 DELE 1")
    status_line, _ = pop.cmd_multi("RETR 2")
    c.check(pop3_ok(status_line), "POP3 RETR 2 (sets \\Seen at QUIT)")
    c.check(pop3_ok(pop.cmd("QUIT")), "POP3 QUIT")
    pop.close()
    # INBOX was: 1 seen, 2 unseen, 3 unseen; DELE 1 and RETR 2 leave one unseen.
    agree(c, d, r, "POP3 DELE 1 + RETR 2 + QUIT", {"INBOX": (2, 1)})

    tagged, _ = r.command('RENAME Junk Spam')
    c.check(imap_tagged_ok(tagged), "RENAME Junk Spam", tagged)
    tagged, _ = r.command('RENAME INBOX Old')
    c.check(imap_tagged_ok(tagged), "RENAME INBOX Old (its messages move)", tagged)
    agree(c, d, r, "RENAME Junk Spam, RENAME INBOX Old",
          {"Spam": (1, 1), "Old": (2, 1), "INBOX": (0, 0), "Trash": (2, 1)})
    tagged, _ = r.command('DELETE Old')
    c.check(imap_tagged_ok(tagged), "DELETE Old", tagged)
    deliver(d, "after")
    agree(c, d, r, "DELETE Old, then a delivery", {"INBOX": (1, 1), "Spam": (1, 1)})

    # STATUS reads the row: change the counter behind the daemon's back (nothing else writes now).
    trash = ("UPDATE mailboxes SET messages_count = ? WHERE name = 'Trash' AND account_id = "
             "(SELECT id FROM accounts WHERE address = ?)")
    with db(d, readonly=False) as conn:
        conn.execute(trash, (777, ALICE))
    got = status(r, "Trash")
    c.check(got == (777, 1), "STATUS Trash reads the row's counter (set to 777 behind the daemon's "
            "back), not a count of the messages", got)
    with db(d, readonly=False) as conn:
        conn.execute(trash, (2, ALICE))
    c.check(not drifted(d), "counters restored", drifted(d))
    r.close()


def resync_lines(d):
    return re.findall(r"event=resync [^\n]*", d.stderr_text())


def test_resync_reads_changes(c, d):
    """A quiet session's queue overflows (IMAP_EVENTS_MAX 4096) on 900 x 5 flag changes of a
    1,024-message mailbox; 10 messages are expunged and 3 delivered. Its NOOP resyncs from what
    changed since its SELECT."""
    m = imaplib.IMAP4("127.0.0.1", d.imap_port)
    m.login(BOB, d.passwords[BOB])
    for i in range(8):
        m.append("INBOX", None, None, b"Subject: seed %d\r\n\r\nbody\r\n" % i)
    m.select("INBOX")
    for _ in range(7):  # 8 -> 1,024 by copying the mailbox into itself
        typ, data = m.copy("1:*", "INBOX")
        if typ != "OK":
            raise RuntimeError(f"COPY: {data}")
    typ, data = m.select("INBOX")
    c.check(typ == "OK" and int(data[0]) == 1024, "bob's INBOX has 1,024 messages", data)
    quiet = raw_login(d, BOB)
    tagged, _ = quiet.command("SELECT INBOX")
    c.check(imap_tagged_ok(tagged), "the quiet session SELECTs INBOX", tagged)
    before = len(resync_lines(d))
    for flags in ("+FLAGS.SILENT (\\Seen)", "-FLAGS.SILENT (\\Seen)", "+FLAGS.SILENT (\\Answered)",
                  "-FLAGS.SILENT (\\Answered)", "+FLAGS.SILENT (\\Flagged)"):
        typ, data = m.store("1:900", *flags.split(" ", 1))
        if typ != "OK":
            raise RuntimeError(f"STORE: {data}")
    m.store("901:910", "+FLAGS.SILENT", "(\\Deleted)")
    m.expunge()
    for i in range(3):
        harness.deliver_raw(d.mx_port, SENDER, BOB,
                            harness.make_message(SENDER, BOB, f"new {i}", harness.unique_id("rs")))
    time.sleep(0.5)
    tagged, untagged = quiet.command("NOOP")
    expunges = [u for u in untagged if re.match(rb"\* \d+ EXPUNGE", u)]
    exists = [u for u in untagged if re.match(rb"\* \d+ EXISTS", u)]
    fetches = [u for u in untagged if re.match(rb"\* \d+ FETCH", u)]
    c.check(imap_tagged_ok(tagged) and len(expunges) == 10 and exists[-1:] == [b"* 1017 EXISTS"],
            "NOOP after the overflow: 10 EXPUNGE and * 1017 EXISTS",
            (tagged, expunges[:3], exists))
    c.check(len(fetches) == 900 and all(b"\\Flagged" in f for f in fetches),
            "... and a FETCH with \\Flagged for each of the 900 changed messages", len(fetches))
    lines = resync_lines(d)[before:]
    c.check(len(lines) == 1 and "changed=903" in lines[0] and "gone=10" in lines[0],
            "the resync read the 903 rows that changed since the SELECT (900 flagged, 3 new) and "
            "the 10 UIDs that left, not the 1,027 rows of the mailbox", lines)
    tagged, untagged = quiet.command("FETCH 1:* (FLAGS)")
    flagged = sum(1 for u in untagged if b"\\Flagged" in u)
    total = sum(1 for u in untagged if re.match(rb"\* \d+ FETCH", u))
    c.check(total == 1017 and flagged == 900, "FETCH 1:* FLAGS: 1,017 messages, 900 \\Flagged",
            (total, flagged))
    # A second overflow resyncs from the first resync's point: only what changed since.
    before = len(resync_lines(d))
    for flags in ("+FLAGS.SILENT (\\Seen)", "-FLAGS.SILENT (\\Seen)", "+FLAGS.SILENT (\\Seen)",
                  "-FLAGS.SILENT (\\Seen)", "+FLAGS.SILENT (\\Seen)"):
        m.store("1:850", *flags.split(" ", 1))
    tagged, untagged = quiet.command("NOOP")
    fetches = [u for u in untagged if re.match(rb"\* \d+ FETCH", u)]
    lines = resync_lines(d)[before:]
    c.check(len(fetches) == 850 and len(lines) == 1 and "changed=850 gone=0" in lines[0],
            "a second overflow: the resync reads the 850 rows changed since the first one",
            (len(fetches), lines))
    quiet.close()
    m.logout()


def run(c):
    with Daemon("counters", imap=True) as d:
        if not harness.start_daemon(c, d):
            return
        for test in (test_counters, test_resync_reads_changes):
            c.guard(f"{test.__name__} ran", test, c, d)
        c.check(d.alive(), "ternd still runs")


if __name__ == "__main__":
    harness.main_guard(run)
