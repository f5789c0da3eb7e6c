#!/usr/bin/env python3
"""End-to-end: SORT and THREAD (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267) through Python's
imaplib (a real third-party client: its sort() and thread() methods) against a real ternd on loopback, and
SORT over a big mailbox reading its files on the worker threads.

- The six messages of tests/e2e/imap_scripts/sort.inc (the scripts' messages, whose expected orders were
  validated against Dovecot 2.3) go in over SMTP; imaplib's sort() and thread(), UID SORT / UID THREAD
  through uid(), SORT RETURN through xatom, must give the same answers as the scripts.
- A second daemon (log.level=debug) gets BULK messages ("bulk i" subjects) over SMTP. SORT (SUBJECT)
  over all of them orders them as Python orders their subjects (i;unicode-casemap on ASCII: upper-cased
  bytes), THREAD ORDEREDSUBJECT names each once; and while a SORT (REVERSE SUBJECT) runs in one session
  (the server has dispatched it: its debug line is in the log), another session's NOOP gets its OK before
  the SORT's tagged reply: the message files are read on the workers, not on the event loop (ordering, not
  a timing threshold; both times printed).
"""

import imaplib
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import test_imap_search as ts  # noqa: E402  (bulk delivery, sessions, the log follower)
from harness import ALICE, Daemon, imap_tagged_ok  # noqa: E402

SORT_INC = Path(__file__).resolve().parent / "imap_scripts" / "sort.inc"
BULK = 2000


def sort_messages():
    """The !define blocks of sort.inc, in file order, as CRLF bytes."""
    msgs, cur = [], None
    for line in SORT_INC.read_text().split("\n"):
        if line.startswith("!define "):
            cur = []
            msgs.append(cur)
        elif cur is not None and (line.startswith("| ") or line == "|"):
            cur.append(line[2:])
        else:
            cur = None
    return [("\r\n".join(m) + "\r\n").encode() for m in msgs]


def numbers(data):
    return [int(x) for chunk in data or [] if chunk for x in chunk.split()]


# (imaplib call, arguments, expected answer): the same as sort.imap / thread.imap / esort.imap.
SMALL = [
    ("sort", ("(SUBJECT)", "UTF-8", "ALL"), [3, 4, 6, 1, 2, 5]),
    ("sort", ("(DATE)", "UTF-8", "ALL"), [3, 1, 2, 6, 4, 5]),
    ("sort", ("(FROM)", "UTF-8", "ALL"), [6, 2, 3, 4, 5, 1]),
    ("sort", ("(TO)", "UTF-8", "ALL"), [6, 3, 1, 2, 4, 5]),
    ("sort", ("(CC)", "UTF-8", "ALL"), [2, 4, 5, 6, 3, 1]),
    ("sort", ("(REVERSE SIZE)", "UTF-8", "ALL"), [3, 2, 5, 4, 1, 6]),
    ("sort", ("(DISPLAYFROM)", "UTF-8", "ALL"), [6, 2, 3, 4, 5, 1]),
    ("sort", ("(DISPLAYTO)", "UTF-8", "ALL"), [6, 3, 1, 2, 4, 5]),
    ("sort", ("(SUBJECT REVERSE DATE)", "UTF-8", "ALL"), [4, 6, 3, 5, 1, 2]),
    ("sort", ("(SUBJECT)", "US-ASCII", "NOT", "FROM", "dave"), [3, 4, 6, 1, 2]),
    ("thread", ("ORDEREDSUBJECT", "UTF-8", "ALL"), "(3 (6)(4))(1 (2)(5))"),
    ("thread", ("REFERENCES", "UTF-8", "ALL"), "(3 (6)(4))(1 2 5)"),
    ("thread", ("REFERENCES", "UTF-8", "2:*"), "(3 (6)(4))(2 5)"),
]


def test_small(checks, d):
    m = ts.imaplib_session(d)
    try:
        typ, caps = m.capability()
        caps = caps[0].decode().split()
        checks.check(all(c in caps for c in ("SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT",
                                                 "THREAD=REFERENCES", "ESORT")),
                     "CAPABILITY has SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES ESORT", caps)
        checks.check("CONTEXT=SORT" in caps and "CONTEXT=SEARCH" in caps,
                     "CONTEXT=SEARCH and CONTEXT=SORT advertised (RFC 5267 4, imap_context.c)", caps)
        for call, args, want in SMALL:
            typ, data = getattr(m, call)(*args)
            got = numbers(data) if call == "sort" else (data[0] or b"").decode()
            checks.check(typ == "OK" and got == want, f"imaplib {call}{args} -> {want}", (typ, data))
        # UIDs are 1..6 here: UID SORT gives the same numbers; make it differ by expunging message 1.
        typ, _ = m.store("1", "+FLAGS.SILENT", "(\\Deleted)")
        typ2, _ = m.expunge()
        typ3, data = m.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
        checks.check(typ == typ2 == typ3 == "OK" and numbers(data) == [3, 4, 6, 2, 5],
                     "after expunging message 1: UID SORT (SUBJECT) answers UIDs 3 4 6 2 5", data)
        typ, data = m.sort("(SUBJECT)", "UTF-8", "ALL")
        checks.check(typ == "OK" and numbers(data) == [2, 3, 5, 1, 4],
                     "... and SORT the shifted sequence numbers 2 3 5 1 4", data)
        typ, data = m.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
        checks.check(typ == "OK" and data[0] == b"(3 (6)(4))(2 5)",
                     "UID THREAD REFERENCES -> (3 (6)(4))(2 5)", data)
        typ, data = m._simple_command("SORT", "RETURN", "(MIN MAX COUNT)", "(SUBJECT)", "UTF-8", "ALL")
        line = m.untagged_responses.pop("ESEARCH", [b""])[0]
        checks.check(typ == "OK" and line.endswith(b"MIN 2 MAX 4 COUNT 5"),
                     "SORT RETURN (MIN MAX COUNT) -> ESEARCH MIN 2 MAX 4 COUNT 5 (first/last in sort order)",
                     (typ, line))
        try:
            typ, data = m.sort("(SUBJECT)", "KOI8-R", "ALL")
        except imaplib.IMAP4.error as e:
            typ, data = "NO", [str(e).encode()]
        checks.check(typ == "NO" and b"BADCHARSET" in data[0],
                     "SORT with charset KOI8-R -> NO [BADCHARSET (UTF-8 US-ASCII)]", data)
    finally:
        m.logout()


def subject_order(subjects, reverse=False):
    """Sequence numbers ordered by subject as the server compares them (ASCII: upper-cased bytes),
    equal ones in sequence order."""
    items = sorted(subjects.items(), key=lambda kv: (f"BULK {kv[1]}", kv[0]))
    if reverse:
        # REVERSE reverses the key, not the implicit sequence order of equal keys (all distinct here).
        items = sorted(subjects.items(), key=lambda kv: f"BULK {kv[1]}", reverse=True)
    return [seq for seq, _ in items]


def test_bulk(checks, d, log):
    a, b = ts.raw_session(d), ts.raw_session(d)
    try:
        subjects = ts.bulk_subjects(a)
        if not checks.check(len(subjects) == BULK, f"FETCH: the {BULK} subjects", len(subjects)):
            return
        t0 = time.monotonic()
        tagged, untagged = a.command("SORT (SUBJECT) UTF-8 ALL")
        alone = time.monotonic() - t0
        line = ts.search_line(untagged, "SORT") or ""
        got = [int(x) for x in line.split()[2:]]
        checks.check(imap_tagged_ok(tagged) and got == subject_order(subjects),
                     f"SORT (SUBJECT) over {BULK} messages: ordered by subject", (tagged, got[:10]))
        checks.note(f"SORT (SUBJECT) over {BULK} messages alone: {alone:.3f} s")
        tagged, untagged = a.command("THREAD ORDEREDSUBJECT UTF-8 ALL")
        line = next((u for u in untagged if u.startswith(b"* THREAD ")), b"")
        ids = sorted(int(x) for x in re.findall(rb"\d+", line))
        checks.check(imap_tagged_ok(tagged) and ids == list(range(1, BULK + 1)) and
                     line.count(b"(") == BULK,
                     f"THREAD ORDEREDSUBJECT over {BULK} messages: {BULK} threads of one message", tagged)

        # Another session's NOOP while the SORT runs.
        since = log.mark()
        sent = time.monotonic()
        a.send("s1 SORT (REVERSE SUBJECT) UTF-8 ALL\r\n")
        dispatched = log.wait_for(b"event=command name=SORT", since)
        checks.check(dispatched, "the server dispatched the SORT (its debug line is in the log)")
        tagged, _ = b.command("NOOP")
        noop_at = time.monotonic() - sent
        sort_pending = not ts.readable(a)
        tagged_a, untagged = a.read_until_tagged("s1")
        sort_at = time.monotonic() - sent
        checks.note(f"while the SORT ran: the other session's NOOP answered after {noop_at:.3f} s, "
                    f"the SORT after {sort_at:.3f} s")
        checks.check(imap_tagged_ok(tagged) and sort_pending,
                     "another session's NOOP gets its OK before the running SORT's tagged reply", tagged)
        line = ts.search_line(untagged, "SORT") or ""
        got = [int(x) for x in line.split()[2:]]
        checks.check(imap_tagged_ok(tagged_a) and got == subject_order(subjects, reverse=True),
                     "... and that SORT (REVERSE SUBJECT) answers the reversed order", tagged_a)
    finally:
        a.close()
        b.close()


def run(checks):
    with Daemon("imap-sort", imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        msgs = sort_messages()
        checks.check(len(msgs) == 6, "sort.inc holds six messages", len(msgs))
        for i, msg in enumerate(msgs, 1):
            checks.check(ts.smtp_deliver(d, msg), f"SMTP in: message s{i} accepted")
        for _ in range(50):
            if d.mail_count(ALICE) >= len(msgs):
                break
            time.sleep(0.1)
        if checks.check(d.mail_count(ALICE) == len(msgs), "six messages in alice's INBOX"):
            checks.guard("small SORT/THREAD tests ran", test_small, checks, d)
        checks.check(d.stop() == 0, "SIGTERM: ternd exits with status 0")
    with Daemon("imap-sort-bulk", imap=True, options=["log.level=debug"]) as d:
        if not harness.start_daemon(checks, d):
            return
        log = ts.LogFollower(d)
        t0 = time.monotonic()
        n = ts.bulk_deliver(d, BULK)
        checks.check(n == BULK, f"SMTP in: {BULK} messages accepted ({time.monotonic() - t0:.1f} s)", n)
        checks.guard("bulk SORT tests ran", test_bulk, checks, d, log)
        status = d.stop()
        text = d.stderr_text()
        checks.check(status == 0, "ternd exits with status 0", f"exit status {status}\n" + d.stderr_tail())
        checks.check("Sanitizer" not in text and "runtime error" not in text,
                     "no sanitizer report in ternd's output")


if __name__ == "__main__":
    harness.main_guard(run)
