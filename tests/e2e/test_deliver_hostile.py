#!/usr/bin/env python3
"""End-to-end: attacks on the delivery path (issue 10, section 4), against a real ternd.

- postmaster: `RCPT TO:<Postmaster>` (any case, no domain) and postmaster@<domain> are accepted on
  the MX port without any postmaster account or alias (RFC 5321 4.5.1) and reach the first account;
- BDAT: a body with bare LF and bare CR (also a CR at the end of one chunk and LF at the start of the
  next) is stored with every line end CRLF; the stored size, `size_crlf` and IMAP RFC822.SIZE agree;
- submission From binding: alice logged in may not send `From: bob@...` (550 5.7.1, nothing stored):
  folded From, display names that look like addresses, groups, several addresses, two From headers,
  a Sender: that is not hers; her own address and her alias pass; the MX port is not checked; with
  smtp.allow_any_from=true the same message passes;
- header bombs: a header section over smtp.max_header_size gets 552 5.3.4; with the cap lifted, two
  20 MB messages made of `To:` lines (in the message's header, in a part's header) sent in parallel are stored with their summaries while ternd's
  VmHWM grows by a small multiple of their size, and the daemon keeps serving;
- orphans: kill -9 under load (messages to two accounts, so hard links) for several rounds, with a
  few crash leftovers planted between rounds (a renamed file without its row, a stray second name of
  a live message, a queue file): after the last restart no file in mail/ or queue/ lacks a row, no
  row lacks its file, and every acknowledged message is still readable.
(A SQLite write lock held by another process during IMAP CREATE/DELETE: test_imap_mbox_writer.py.)
"""

import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ALICE, ALICE_ALIAS, BOB, PASSWORDS, Daemon, RawIMAP, RawSMTP,  # noqa: E402
                     deliver_raw, dot_stuff, make_message, start_daemon, unique_id, main_guard)

REMOTE = "sender@remote.test"


def fmt(reply):
    return f"{reply[0]} {' | '.join(reply[1])}" if reply else "no reply"


def find(daemon, user, mid):
    return daemon.find_message(user, mid, timeout=3.0)


# ---- postmaster --------------------------------------------------------------------------------
def check_postmaster(checks, d):
    for rcpt in ("Postmaster", "POSTMASTER", "postmaster", "postmaster@example.test",
                 "PostMaster@Example.Test"):
        mid = unique_id("pm")
        msg = make_message(REMOTE, [rcpt], "to the postmaster", mid)
        code = deliver_raw(d.mx_port, REMOTE, [rcpt], msg)
        checks.check(code == 250, f"MX: RCPT TO:<{rcpt}> and its message accepted (got {code})")
        entry = find(d, ALICE, mid)
        checks.check(entry is not None, f"<{rcpt}> reached the first account ({ALICE}, no alias needed)")


# ---- BDAT --------------------------------------------------------------------------------------
def imap_fetch_size(d, user, uid):
    """(RFC822.SIZE, len(RFC822)) of uid over IMAP."""
    with RawIMAP(d.imap_port) as c:
        tagged, _ = c.login(user, PASSWORDS[user])
        if " OK" not in tagged:
            return None, None
        c.command("SELECT INBOX")
        tagged, lines = c.command(f"UID FETCH {uid} (RFC822.SIZE RFC822)")
        for line in lines:
            if b"RFC822.SIZE" in line:
                size = int(line.split(b"RFC822.SIZE ", 1)[1].split()[0].rstrip(b")"))
                lit = line.split(b"RFC822 {", 1)[1]
                length = int(lit.split(b"}", 1)[0])
                return size, length
    return None, None


def check_bdat(checks, d):
    mid = unique_id("bdat")
    part1 = (f"From: <{REMOTE}>\nTo: <{BOB}>\nSubject: bare line ends\nMessage-ID: <{mid}>\n\n"
             "line one\nline two\rline three\r\nline four\r").encode()
    part2 = b"\nlast line\n"
    with RawSMTP(d.mx_port) as s:
        s.ehlo()
        checks.check(s.cmd(f"MAIL FROM:<{REMOTE}>")[0] == 250, "BDAT: MAIL FROM")
        checks.check(s.cmd(f"RCPT TO:<{BOB}>")[0] == 250, "BDAT: RCPT TO")
        s.send(f"BDAT {len(part1)}\r\n".encode() + part1)
        r1 = s.reply()
        s.send(f"BDAT {len(part2)} LAST\r\n".encode() + part2)
        r2 = s.reply()
    checks.check(r1[0] == 250 and r2[0] == 250, "BDAT chunks with bare LF and CR accepted",
                 f"{fmt(r1)} / {fmt(r2)}")
    entry = find(d, BOB, mid)
    if not checks.check(entry is not None, "the BDAT message is stored"):
        return
    stored = d.mail_cat(BOB, entry["uid"])
    body = stored.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in stored else b""
    checks.check(body == b"line one\r\nline two\r\nline three\r\nline four\r\nlast line\r\n",
                 "stored body has CRLF everywhere (bare LF, bare CR and a CR|LF split over chunks)",
                 repr(body))
    bare = any(stored[i:i + 1] == b"\n" and (i == 0 or stored[i - 1:i] != b"\r") for i in range(len(stored))) \
        or any(stored[i:i + 1] == b"\r" and stored[i + 1:i + 2] != b"\n" for i in range(len(stored)))
    checks.check(not bare, "no bare CR or LF anywhere in the stored file")
    checks.check(entry["size"] == len(stored) == entry["size_crlf"],
                 f"stored size {entry['size']} = file bytes {len(stored)} = size_crlf {entry['size_crlf']}")
    size, length = imap_fetch_size(d, BOB, entry["uid"])
    checks.check(size == len(stored) and length == len(stored),
                 f"IMAP RFC822.SIZE {size} and RFC822 literal {length} equal the stored {len(stored)} bytes")


# ---- submission From binding -------------------------------------------------------------------
def submit(d, user, headers, rcpt=BOB, port=None):
    """Sends headers + a body as user over submission; returns the final reply and the Message-ID."""
    mid = unique_id("from")
    msg = (headers + f"To: <{rcpt}>\r\nSubject: from check\r\nMessage-ID: <{mid}>\r\n\r\nbody\r\n").encode()
    with RawSMTP(port or d.submission_port) as s:
        s.ehlo()
        if user is not None:
            code, lines = s.auth_plain(user, PASSWORDS[user])
            if code != 235:
                return (code, lines), mid
        r = s.cmd(f"MAIL FROM:<{user or REMOTE}>")
        if r[0] != 250:
            return r, mid
        r = s.cmd(f"RCPT TO:<{rcpt}>")
        if r[0] != 250:
            return r, mid
        r = s.cmd("DATA")
        if r[0] != 354:
            return r, mid
        s.send(dot_stuff(msg) + b".\r\n")
        return s.reply(), mid


FORGED = [
    ("From: bob@example.test\r\n", "plain From of another account"),
    ("From: Bob <bob@example.test>\r\n", "display name form"),
    ("From: \"alice@example.test\" <bob@example.test>\r\n", "display name that looks like her address"),
    ("From: Alice\r\n <alice@example.test>,\r\n\tBob <bob@example.test>\r\n", "folded, two addresses, one not hers"),
    ("From: team: alice@example.test, bob@example.test;\r\n", "a group with another account in it"),
    ("From: <alice@example.test>\r\nFrom: <bob@example.test>\r\n", "two From headers"),
    ("From: <alice@example.test>\r\nSender: <bob@example.test>\r\n", "Sender: of another account"),
    ("From: someone@remote.test\r\n", "a remote address"),
    ("FROM:bob@example.test\r\n", "upper-case field name without space"),
    ("From: undisclosed:;\r\n", "no address at all"),
]
OWN = [
    ("From: <alice@example.test>\r\n", "her own address"),
    ("From: \"Alice A.\" <Alice@Example.Test>\r\n", "her address in another case, with a display name"),
    (f"From: Ally <{ALICE_ALIAS}>\r\n", "her alias"),
    (f"From: Alice\r\n <alice@example.test>, {ALICE_ALIAS}\r\nSender: alice@example.test\r\n",
     "folded, her address and alias, Sender herself"),
    ("", "no From header at all"),
]


def check_from(checks, d):
    for headers, what in FORGED:
        reply, mid = submit(d, ALICE, headers)
        checks.check(reply[0] == 550 and any("5.7.1" in l for l in reply[1]),
                     f"submission as alice, {what}: 550 5.7.1", fmt(reply))
        checks.check(find(d, BOB, mid) is None, f"... and nothing stored ({what})")
    for headers, what in OWN:
        reply, mid = submit(d, ALICE, headers)
        checks.check(reply[0] == 250, f"submission as alice, {what}: 250", fmt(reply))
        checks.check(find(d, BOB, mid) is not None, f"... and stored ({what})")
    reply, _ = submit(d, ALICE, FORGED[0][0])
    checks.check(any("bob@example.test" in l and "alice@example.test" in l for l in reply[1]),
                 "the refusal names the address and the account", fmt(reply))
    reply, mid = submit(d, None, "From: bob@example.test\r\n", port=d.mx_port)
    checks.check(reply[0] == 250, "MX (not logged in): From is not checked", fmt(reply))


def check_allow_any_from(checks):
    with Daemon("deliver-anyfrom", options=["smtp.allow_any_from=true"]) as d:
        if not start_daemon(checks, d):
            return
        reply, mid = submit(d, ALICE, "From: Bob <bob@example.test>\r\n")
        checks.check(reply[0] == 250 and find(d, BOB, mid) is not None,
                     "smtp.allow_any_from=true: alice may send From: bob", fmt(reply))


# ---- header bombs ------------------------------------------------------------------------------
def bomb(size, mid, nested=False):
    """size bytes of To: lines in the message's header, or (nested) in its first part's header."""
    head = (f"From: <{REMOTE}>\r\nSubject: header bomb\r\nMessage-ID: <{mid}>\r\n").encode()
    line_count = size // 30
    lines = b"".join(b"To: user%07d@example.test\r\n" % i for i in range(line_count))
    if not nested:
        return head + lines + b"\r\nbody\r\n"
    return (head + b"To: user0000000@example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n" + lines + b"\r\nbody\r\n--b--\r\n")


def send_bomb(d, msg, out, key):
    try:
        out[key] = deliver_raw(d.mx_port, REMOTE, [BOB], msg, timeout=120)
    except Exception as exc:  # noqa: BLE001
        out[key] = f"{type(exc).__name__}: {exc}"


def check_header_cap(checks, d):
    mid = unique_id("bomb")
    code = deliver_raw(d.mx_port, REMOTE, [BOB], bomb(3 * 1024 * 1024, mid), timeout=120)
    checks.check(code == 552, f"a 3 MB header section over smtp.max_header_size (1 MiB) gets 552 (got {code})")
    checks.check(find(d, BOB, mid) is None, "... and nothing is stored")
    mid = unique_id("after")
    code = deliver_raw(d.mx_port, REMOTE, [BOB], make_message(REMOTE, [BOB], "after", mid))
    checks.check(code == 250, f"the same session's server still delivers normal mail (got {code})")


def check_bombs_parallel(checks):
    size = 20 * 1024 * 1024
    with Daemon("deliver-bomb", options=["smtp.max_header_size=2147483647"]) as d:
        if not start_daemon(checks, d):
            return
        time.sleep(0.5)
        base = d.proc_status("VmHWM")
        mids = [unique_id("bomb"), unique_id("bomb")]
        msgs = [bomb(size, mids[0]), bomb(size, mids[1], nested=True)]
        total = sum(len(m) for m in msgs)
        out = {}
        threads = [threading.Thread(target=send_bomb, args=(d, msgs[i], out, i)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        checks.check(out.get(0) == 250 and out.get(1) == 250,
                     f"two 20 MB To: bombs (message header, part header) in parallel stored with "
                     f"the cap lifted ({out})")
        peak = d.proc_status("VmHWM")
        grown = (peak - base) * 1024 if peak and base else None
        checks.note(f"VmHWM {base} KiB -> {peak} KiB for {total} bytes of messages")
        checks.check(grown is not None and grown < 5 * total,
                     f"ternd's peak RSS grew {grown} bytes: under 5x the {total} bytes received "
                     "(about 30x before the summary cap)")
        for m in mids:
            entry = find(d, BOB, m)
            checks.check(entry is not None and entry.get("subject") == "header bomb"
                         and str(entry.get("to", "")).startswith("user0000000@example.test"),
                         "the bomb's summary is right (subject, first To)", entry and
                         {k: entry.get(k) for k in ("subject", "from")})
        mid = unique_id("after")
        code = deliver_raw(d.mx_port, REMOTE, [BOB], make_message(REMOTE, [BOB], "after", mid))
        checks.check(code == 250 and find(d, BOB, mid) is not None,
                     f"after the bombs the daemon still serves (got {code})")
        rss = d.proc_status("VmRSS")
        checks.note(f"VmRSS after: {rss} KiB")


# ---- orphan sweep -----------------------------------------------------------------------------
def load(d, stop, acked, lock):
    """Delivers to alice and bob until stop is set; records the Message-IDs that got 250."""
    while not stop.is_set():
        mid = unique_id("load")
        try:
            code = deliver_raw(d.mx_port, REMOTE, [ALICE, BOB], make_message(REMOTE, [ALICE, BOB], "load", mid),
                               timeout=5)
        except Exception:  # noqa: BLE001 - the kill cuts connections
            code = None
        if code == 250:
            with lock:
                acked.append(mid)


def disk_and_rows(d):
    """(files under mail/ and queue/ as relative paths, paths named by rows)."""
    files = set()
    for sub in ("mail", "queue"):
        for root, _, names in os.walk(d.data_dir / sub):
            for n in names:
                files.add(str((Path(root) / n).relative_to(d.data_dir)))
    db = sqlite3.connect(f"file:{d.data_dir / 'tern.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = {r[0] for r in db.execute("SELECT path FROM messages UNION SELECT path FROM queue")}
    finally:
        db.close()
    return files, rows


def plant(d, rnd):
    """Leftovers of the kind a crash leaves: they must not survive the next start."""
    alice_dir = next((d.data_dir / "mail").iterdir())
    (alice_dir / f"planted-{rnd}.eml").write_bytes(b"Subject: renamed, never committed\r\n\r\nx\r\n")
    (d.data_dir / "queue" / f"planted-{rnd}.eml").write_bytes(b"Subject: queue orphan\r\n\r\nx\r\n")
    live = sorted(p for p in alice_dir.iterdir() if not p.name.startswith("planted"))
    if live:
        os.link(live[0], alice_dir / f"planted-link-{rnd}.eml")


def check_orphans(checks, rounds=4):
    with Daemon("deliver-orphans") as d:
        if not start_daemon(checks, d):
            return
        acked, lock = [], threading.Lock()
        for rnd in range(rounds):
            stop = threading.Event()
            threads = [threading.Thread(target=load, args=(d, stop, acked, lock)) for _ in range(6)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            d.kill9()
            stop.set()
            for t in threads:
                t.join(30)
            plant(d, rnd)
            if not start_daemon(checks, d, f"round {rnd + 1}: ternd restarted after kill -9 under load"):
                return
        d.stop()
        files, rows = disk_and_rows(d)
        checks.note(f"{len(acked)} messages acknowledged over {rounds} kill -9 rounds; "
                    f"{len(files)} files, {len(rows)} row paths")
        checks.check(len(acked) > 0, "the load got messages acknowledged")
        checks.check(files - rows == set(), "no file in mail/ or queue/ without a row (orphans swept)",
                     sorted(files - rows)[:10])
        checks.check(rows - files == set(), "no row without its file", sorted(rows - files)[:10])
        checks.check("event=orphan-sweep removed=" in d.stderr_text(), "the sweep logged what it removed")
        d.start()
        alice = {str(e.get("message_id")).strip("<>") for e in d.mail_list(ALICE)}
        bob = {str(e.get("message_id")).strip("<>") for e in d.mail_list(BOB)}
        missing = [m for m in acked if m not in alice or m not in bob]
        checks.check(not missing, f"every one of the {len(acked)} acknowledged messages is in both mailboxes",
                     missing[:5])
        unreadable = []
        for rel in sorted(rows):
            body = (d.data_dir / rel).read_bytes()
            if not body.endswith(b"Hello from the tern e2e tests.\r\n"):
                unreadable.append(rel)
        checks.check(not unreadable, f"every one of the {len(rows)} stored files is whole", unreadable[:5])
        sample = d.mail_list(ALICE)[::max(1, len(acked) // 20)]
        bad = [e["uid"] for e in sample if not d.mail_cat(ALICE, e["uid"]).endswith(b"e2e tests.\r\n")]
        checks.check(not bad, f"`ternd mail cat` reads back a sample of {len(sample)} messages", bad)


def run(checks):
    with Daemon("deliver-hostile", imap=True) as d:
        if not start_daemon(checks, d):
            return
        check_postmaster(checks, d)
        check_bdat(checks, d)
        check_from(checks, d)
        check_header_cap(checks, d)
    check_allow_any_from(checks)
    check_orphans(checks)
    check_bombs_parallel(checks)


if __name__ == "__main__":
    main_guard(run)
