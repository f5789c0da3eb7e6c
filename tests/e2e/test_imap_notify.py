#!/usr/bin/env python3
"""End-to-end: IMAP NOTIFY (RFC 5465) with changes made by every path into the store (issue 10).

One session sets NOTIFY and never sends another command while the others change the account:
- an SMTP delivery to INBOX (not selected) arrives as `* STATUS INBOX (... MESSAGES 1 ...)`, a POP3
  RETR + QUIT (\\Seen) as a STATUS with UNSEEN 0, a POP3 DELE + QUIT as MESSAGES 0; a delivery to
  another account as nothing;
- another IMAP session's APPEND to the selected mailbox arrives as EXISTS with MessageNew's
  fetch-att, its STORE as FETCH FLAGS, its EXPUNGE as EXPUNGE (SELECTED: at once);
- another session's CREATE, RENAME, DELETE, SUBSCRIBE arrive as LIST;
- a session that falls behind (a RENAME of a tree of 300 mailboxes at once) gets
  `* OK [NOTIFICATIONOVERFLOW]` and is then as after NOTIFY NONE (RFC 5465 5.8): nothing more,
  and the daemon keeps serving.
"""

import re
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, BOB, Daemon, RawIMAP, RawPOP3, pop3_ok  # noqa: E402

SENDER = "sender@remote.test"
WAIT = 10.0  # generous: the machine is shared; a missing notification waits forever


def deliver(d, rcpt, tag):
    mid = harness.unique_id(tag)
    msg = harness.make_message(SENDER, rcpt, f"{tag} subject", mid, body_lines=[f"body of {tag}"])
    code = harness.deliver_raw(d.mx_port, SENDER, rcpt, msg)
    if code != 250:
        raise RuntimeError(f"SMTP answered {code}")


def wait_for(imap, pattern, timeout=WAIT):
    """Reads unsolicited responses until one matches pattern (a regex); returns (match line or
    None, every line read)."""
    seen = []
    deadline = time.monotonic() + timeout
    imap.settimeout(0.5)
    try:
        while time.monotonic() < deadline:
            try:
                line = imap.response().decode(errors="replace")
            except socket.timeout:
                continue
            seen.append(line)
            if re.search(pattern, line):
                return line, seen
        return None, seen
    finally:
        imap.settimeout(harness.SOCKET_TIMEOUT)


def quiet(imap, wait=1.0):
    """The lines that arrive within wait seconds (none expected)."""
    _, seen = wait_for(imap, r"(?!)", timeout=wait)
    return seen


def login(d, user=ALICE):
    imap = RawIMAP(d.imap_port)
    tagged, _ = imap.login(user, d.passwords[user])
    if not harness.imap_tagged_ok(tagged):
        raise RuntimeError(f"LOGIN failed: {tagged}")
    return imap


def watched(checks, name, test):
    """Runs test(checks, d, watcher, other) on a fresh daemon with two sessions of alice."""
    with Daemon(name, imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        test(checks, d, login(d), login(d))
        checks.check(d.alive(), "ternd still runs")


def test_every_path(checks):
    watched(checks, "notify-paths", every_path)


def every_path(checks, d, watcher, other):
    tagged, _ = watcher.command("CREATE Archive")
    checks.check(harness.imap_tagged_ok(tagged), "CREATE Archive", tagged)
    tagged, _ = watcher.command("SELECT Archive")
    checks.check(harness.imap_tagged_ok(tagged), "SELECT Archive", tagged)
    tagged, untagged = watcher.command(
        "NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange)) "
        "(inboxes (MessageNew MessageExpunge FlagChange)) (personal (MailboxName SubscriptionChange))")
    checks.check(harness.imap_tagged_ok(tagged), "NOTIFY SET with selected, inboxes, personal",
                 f"{tagged} {untagged}")

    deliver(d, ALICE, "n1")
    line, seen = wait_for(watcher, r"^\* STATUS \"?INBOX\"? ")
    checks.check(line is not None and "MESSAGES 1" in line and "UIDNEXT 2" in line,
                 "SMTP delivery to INBOX (not selected): unsolicited * STATUS INBOX "
                 "(MESSAGES 1 UIDNEXT 2 ...) with no command in progress", str(seen))

    deliver(d, BOB, "n-bob")
    seen = quiet(watcher)
    checks.check(seen == [], "a delivery to another account: nothing", str(seen))

    pop = RawPOP3(d.pop3_port)
    checks.check(pop3_ok(pop.login(ALICE, d.passwords[ALICE])), "POP3: login")
    status, _ = pop.cmd_multi("RETR 1")
    checks.check(pop3_ok(status), "POP3: RETR 1", status)
    checks.check(pop3_ok(pop.cmd("QUIT")), "POP3: QUIT (commits \\Seen)")
    pop.close()
    line, seen = wait_for(watcher, r"^\* STATUS \"?INBOX\"? ")
    checks.check(line is not None and "UNSEEN 0" in line and "MESSAGES 1" in line,
                 "POP3 \\Seen (FlagChange): * STATUS INBOX (... MESSAGES 1 UNSEEN 0)", str(seen))

    pop = RawPOP3(d.pop3_port)
    checks.check(pop3_ok(pop.login(ALICE, d.passwords[ALICE])), "POP3: login again")
    checks.check(pop3_ok(pop.cmd("DELE 1")), "POP3: DELE 1")
    checks.check(pop3_ok(pop.cmd("QUIT")), "POP3: QUIT (expunges it)")
    pop.close()
    line, seen = wait_for(watcher, r"^\* STATUS \"?INBOX\"? ")
    checks.check(line is not None and "MESSAGES 0" in line,
                 "POP3 DELE (MessageExpunge): * STATUS INBOX (MESSAGES 0 ...)", str(seen))

    msg = "From: a@b.test\r\nSubject: x\r\n\r\nhello\r\n"
    tagged, _ = other.command(f"APPEND Archive {{{len(msg)}+}}\r\n{msg}")
    checks.check(harness.imap_tagged_ok(tagged), "another session: APPEND Archive", tagged)
    line, seen = wait_for(watcher, r"^\* 1 FETCH ")
    checks.check("* 1 EXISTS" in seen and line is not None and re.match(
        r"^\* 1 FETCH \(UID 1 FLAGS \(\\Recent\)\)$", line) is not None,
        "APPEND to the selected mailbox: * 1 EXISTS, * 1 FETCH (UID 1 FLAGS (\\Recent)) at once "
        "(MessageNew's fetch-att)", str(seen))

    tagged, _ = other.command("SELECT Archive")
    tagged, _ = other.command("STORE 1 +FLAGS (\\Flagged)")
    checks.check(harness.imap_tagged_ok(tagged), "another session: STORE 1 +FLAGS (\\Flagged)", tagged)
    line, seen = wait_for(watcher, r"^\* 1 FETCH ")
    checks.check(line is not None and "\\Flagged" in line and "UID 1" in line,
                 "FlagChange in the selected mailbox: * 1 FETCH (UID 1 FLAGS (... \\Flagged ...)) at once",
                 str(seen))
    other.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
    tagged, _ = other.command("EXPUNGE")
    checks.check(harness.imap_tagged_ok(tagged), "another session: EXPUNGE", tagged)
    line, seen = wait_for(watcher, r"^\* 1 EXPUNGE$")
    checks.check(line is not None, "MessageExpunge (SELECTED): * 1 EXPUNGE at once", str(seen))

    for command, pattern, what in (
            ("CREATE Projects", r'^\* LIST \([^)]*\) "/" "?Projects"?$', "CREATE"),
            ("RENAME Projects Done", r'^\* LIST \([^)]*\) "/" "?Done"? \("OLDNAME" \("?Projects"?\)\)$',
             "RENAME (with OLDNAME)"),
            ("SUBSCRIBE Done", r'^\* LIST \([^)]*\\Subscribed[^)]*\) "/" "?Done"?$', "SUBSCRIBE"),
            ("DELETE Done", r'^\* LIST \([^)]*\\NonExistent[^)]*\) "/" "?Done"?$', "DELETE")):
        tagged, _ = other.command(command)
        line, seen = wait_for(watcher, r"^\* LIST ")
        checks.check(harness.imap_tagged_ok(tagged) and line is not None and re.match(pattern, line),
                     f"another session's {what}: {line}", f"{tagged} {seen}")

    tagged, untagged = watcher.command("NOOP")
    checks.check(harness.imap_tagged_ok(tagged) and untagged == [],
                 "the watcher's NOOP: nothing left to tell (everything came as it happened)",
                 f"{tagged} {untagged}")
    watcher.command("LOGOUT")
    other.command("LOGOUT")


def test_overflow(checks):
    watched(checks, "notify-overflow", overflow)


def overflow(checks, d, watcher, other):
    tagged, _ = watcher.command("NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))")
    checks.check(harness.imap_tagged_ok(tagged), "NOTIFY SET (personal (... MailboxName))", tagged)
    n = 300
    other.send("".join(f"c{i} CREATE Tree/{i}\r\n" for i in range(n)).encode())
    oks = 0
    for i in range(n):
        tagged, _ = other.read_until_tagged(f"c{i}")
        oks += harness.imap_tagged_ok(tagged)
    checks.check(oks == n, f"another session creates {n} mailboxes (pipelined)", f"{oks} OK")
    lists = 0
    while lists < n + 1:
        line, _ = wait_for(watcher, r"^\* LIST ")
        if line is None:
            break
        lists += 1
    checks.check(lists >= n, f"the watcher hears of them as they come ({lists} LIST lines)")
    tagged, _ = other.command("RENAME Tree Forest")
    checks.check(harness.imap_tagged_ok(tagged), f"RENAME Tree Forest: {n + 1} mailboxes renamed at once",
                 tagged)
    line, seen = wait_for(watcher, r"NOTIFICATIONOVERFLOW")
    checks.check(line is not None and line.startswith("* OK [NOTIFICATIONOVERFLOW]"),
                 "more renames at once than the session's bounded queue holds: "
                 "* OK [NOTIFICATIONOVERFLOW]", f"{line} after {len(seen)} lines")
    checks.check(not any(l.startswith("* LIST") for l in seen),
                 "... and no LIST of the half-told batch before it", str(seen[:3]))
    tagged, _ = other.command("CREATE After")
    msg = "Subject: x\r\n\r\nhello\r\n"
    other.command(f"APPEND INBOX {{{len(msg)}+}}\r\n{msg}")
    seen = quiet(watcher)
    checks.check(seen == [], "after the overflow NOTIFY NONE is in effect (RFC 5465 5.8): "
                 "a CREATE and an APPEND tell nothing", str(seen))
    tagged, untagged = watcher.command("NOTIFY SET (personal (MailboxName))")
    checks.check(harness.imap_tagged_ok(tagged), "a new NOTIFY SET is accepted", tagged)
    other.command("CREATE Again")
    line, seen = wait_for(watcher, r"^\* LIST ")
    checks.check(line is not None and "Again" in line, "... and works again", str(seen))


def test_after_a_command(checks):
    watched(checks, "notify-after-command", after_a_command)


def after_a_command(checks, d, watcher, other):
    """A change that comes while a command of the watcher runs (a FETCH streaming 10 MB to a
    client that does not read yet) is told when that command ends, not at the next command."""
    big = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 10000
    tagged, _ = other.command(f"APPEND INBOX {{{len(big)}+}}\r\n{big}")
    checks.check(harness.imap_tagged_ok(tagged), "another session APPENDs a 10 MB message", tagged)
    watcher.command("SELECT INBOX")
    tagged, _ = watcher.command("NOTIFY SET (selected (MessageNew MessageExpunge))")
    checks.check(harness.imap_tagged_ok(tagged), "NOTIFY SET (selected (MessageNew MessageExpunge))", tagged)
    watcher.send(b"f1 UID FETCH 1 BODY.PEEK[]\r\n")
    time.sleep(1.0)  # the FETCH fills the socket buffers and waits for the client
    msg = "Subject: small\r\n\r\nhello\r\n"
    tagged, _ = other.command(f"APPEND INBOX {{{len(msg)}+}}\r\n{msg}")
    checks.check(harness.imap_tagged_ok(tagged), "meanwhile another session APPENDs to INBOX", tagged)
    tagged, untagged = watcher.read_until_tagged("f1")
    checks.check(harness.imap_tagged_ok(tagged) and not any(u.startswith(b"* 2 EXISTS") for u in untagged),
                 "the FETCH completes, with no EXISTS inside it", tagged)
    line, seen = wait_for(watcher, r"^\* 2 EXISTS$")
    checks.check(line is not None, "then * 2 EXISTS comes by itself, with no command from the watcher",
                 str(seen))


def run(checks):
    for test in (test_every_path, test_overflow, test_after_a_command):
        checks.guard(f"{test.__name__} ran", test, checks)


if __name__ == "__main__":
    harness.main_guard(run)
