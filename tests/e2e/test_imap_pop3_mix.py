#!/usr/bin/env python3
"""End-to-end: IMAP and POP3 sessions on the same INBOX at once (issue 10).

- a POP3 RETR + QUIT sets \\Seen; an IMAP session with CONDSTORE that has INBOX selected is told on
  NOOP with FETCH carrying the message's full flags (\\Seen AND the keyword it already had) and a
  MODSEQ higher than the one it knew: the POP3 change is published as committed, never as
  "\\Seen, no keywords, MODSEQ 0";
- a POP3 DELE + QUIT is reported to the IMAP session as EXPUNGE.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, Daemon, RawIMAP, RawPOP3, pop3_ok  # noqa: E402

SENDER = "sender@remote.test"


def deliver(d, tag):
    mid = harness.unique_id(tag)
    msg = harness.make_message(SENDER, ALICE, f"{tag} subject", mid, body_lines=[f"body of {tag}"])
    code = harness.deliver_raw(d.mx_port, SENDER, ALICE, msg)
    if code != 250:
        raise RuntimeError(f"SMTP answered {code}")


def fetch_lines(untagged):
    return [u.decode(errors="replace") for u in untagged if re.match(rb"\* \d+ FETCH ", u)]


def modseq_of(line):
    m = re.search(r"MODSEQ \((\d+)\)", line)
    return int(m.group(1)) if m else None


def test_pop3_seen_keeps_keywords(checks):
    with Daemon("mix-seen", imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        deliver(d, "mix1")
        deliver(d, "mix2")
        imap = RawIMAP(d.imap_port)
        imap.login(ALICE, d.passwords[ALICE])
        imap.command("ENABLE CONDSTORE")
        tagged, _ = imap.command("SELECT INBOX (CONDSTORE)")
        checks.check(harness.imap_tagged_ok(tagged), "IMAP: SELECT INBOX (CONDSTORE)", tagged)
        tagged, untagged = imap.command("STORE 1 +FLAGS ($Label1)")
        lines = fetch_lines(untagged)
        before = modseq_of(lines[0]) if lines else None
        checks.check(harness.imap_tagged_ok(tagged) and before is not None and "$Label1" in lines[0],
                     f"IMAP: STORE 1 +FLAGS ($Label1) answers FETCH with the keyword and MODSEQ "
                     f"({before})", f"{tagged} {lines}")

        pop = RawPOP3(d.pop3_port)
        checks.check(pop3_ok(pop.login(ALICE, d.passwords[ALICE])), "POP3: login")
        status, _ = pop.cmd_multi("RETR 1")
        checks.check(pop3_ok(status), "POP3: RETR 1", status)
        status = pop.cmd("QUIT")
        checks.check(pop3_ok(status), "POP3: QUIT (commits \\Seen of message 1)", status)
        pop.close()

        tagged, untagged = imap.command("NOOP")
        lines = [ln for ln in fetch_lines(untagged) if ln.startswith("* 1 FETCH ")]
        line = lines[-1] if lines else ""
        after = modseq_of(line)
        checks.check("\\Seen" in line and "$Label1" in line,
                     "IMAP NOOP after the POP3 QUIT: FETCH of message 1 with \\Seen AND the keyword "
                     "$Label1 (the POP3 change does not clear keywords in the IMAP view)",
                     f"{tagged} {fetch_lines(untagged)}")
        checks.check(after is not None and before is not None and after > before,
                     f"... and with a MODSEQ higher than before ({before} -> {after})", line)
        tagged, untagged = imap.command("FETCH 1:2 (FLAGS MODSEQ)")
        checks.check(harness.imap_tagged_ok(tagged) and any(
            ln.startswith("* 1 FETCH ") and "\\Seen" in ln and "$Label1" in ln
            for ln in fetch_lines(untagged)),
            "IMAP FETCH 1 FLAGS agrees (\\Seen $Label1)", str(fetch_lines(untagged)))

        pop = RawPOP3(d.pop3_port)
        checks.check(pop3_ok(pop.login(ALICE, d.passwords[ALICE])), "POP3: login again")
        status = pop.cmd("DELE 2")
        checks.check(pop3_ok(status), "POP3: DELE 2", status)
        status = pop.cmd("QUIT")
        checks.check(pop3_ok(status), "POP3: QUIT (expunges message 2)", status)
        pop.close()
        tagged, untagged = imap.command("NOOP")
        checks.check(b"* 2 EXPUNGE" in untagged, "IMAP NOOP: * 2 EXPUNGE for the POP3 DELE",
                     str(untagged))
        imap.command("LOGOUT")
        imap.close()
        checks.check(d.alive(), "ternd still runs")


def run(checks):
    for test in (test_pop3_seen_keeps_keywords,):
        checks.guard(f"{test.__name__} ran", test, checks)


if __name__ == "__main__":
    harness.main_guard(run)
