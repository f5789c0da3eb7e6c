#!/usr/bin/env python3
"""End-to-end: `ternd mail import` (issue 11) of mbox files and Maildirs, read back over real IMAP and POP3.

A real ternd runs (Daemon(imap=True)) while the imports run, as a migration from Dovecot would. What is
checked:
- an mboxrd file with LF line ends (a ">From " line in a body unescaped, ">>From " losing one '>', a
  "From " line inside a message only after a blank line starts a new one, Status:/X-Status: flags, the
  "From " line's date as internal date) and one with CRLF line ends; a Maildir with cur/ files carrying
  :2, flags (S, RS, F, T, D, none) and keyword letters from dovecot-keywords (an invalid keyword left out,
  the message kept) and a new/ file, in CRLF and LF; `--mailbox` creating a mailbox;
- over imaplib: the message count, FLAGS, ENVELOPE's subject and Message-ID, BODY.PEEK[] byte-exact
  (the original with bare LF sent as CRLF, mbox escaping undone), RFC822.SIZE its length, INTERNALDATE,
  UID SEARCH SUBJECT finding the imported message; over poplib: STAT and RETR of every INBOX message;
- `--json` summary (counts per source), `--help`, and clear errors with exit status 1: a missing file, a
  file that is not an mbox, a directory that is not a Maildir, an unknown user; exit 2 without PATH;
- kill -9 of an import of 3,000 messages mid-way: every message a client sees is whole (byte-exact over
  IMAP and POP3 sizes exact), the count is a whole number of groups, and after a daemon restart the
  leftovers are swept (as many .eml files as rows, tmp/ empty); a second import after it completes.
"""

import imaplib
import json
import os
import poplib
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, BOB, TERND, Daemon, run_ternd, start_daemon  # noqa: E402

GROUP = 256  # STORE_GROUP_MAX: an import commits whole groups


def crlf(data):
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def msg(n, subject, body, eol=b"\n", extra=b""):
    head = (b"From: Sender %d <sender%d@remote.test>" % (n, n) + eol +
            b"To: <alice@example.test>" + eol +
            b"Subject: " + subject + eol +
            b"Message-ID: <import.%d@remote.test>" % n + eol +
            b"Date: Mon, 2 Feb 2004 10:00:00 +0000" + eol + extra)
    return head + eol + body


def build_sources(tmp):
    """Writes the mbox files and the Maildir; returns [(source, expected messages in order)] where
    each expected is (stored bytes, flags set, internal date or None)."""
    # mbox, LF: message 1 has flags from Status/X-Status and escaped From lines in its body.
    m1_body = b"first line\n>From the escaped line\n>>From doubly escaped\nFrom inside, no blank before\n"
    m1 = msg(1, b"mbox one", m1_body, extra=b"Status: RO\nX-Status: AF\n")
    m1_stored = m1.replace(b">From the", b"From the").replace(b">>From doubly", b">From doubly")
    m2 = msg(2, b"mbox two", b"second body\n\nwith a blank line inside\n")
    m3 = msg(3, b"mbox three", b"last\n")
    mbox_lf = (b"From sender1@remote.test Sat Jan  3 01:05:34 1996\n" + m1 + b"\n" +
               b"From sender2@remote.test Mon Feb  2 10:00:00 2004\n" + m2 + b"\n" +
               b"From sender3@remote.test Tue Mar  2 11:00:00 2010\n" + m3 + b"\n")
    (tmp / "lf.mbox").write_bytes(mbox_lf)
    mbox_lf_expected = [(m1_stored, {"\\Seen", "\\Answered", "\\Flagged"}, "03-Jan-1996 01:05:34"),
                        (m2, set(), "02-Feb-2004 10:00:00"), (m3, set(), "02-Mar-2010 11:00:00")]
    # mbox, CRLF.
    c1 = msg(4, b"crlf mbox one", b"crlf body\r\n>From escaped crlf\r\n", eol=b"\r\n")
    c2 = msg(5, b"crlf mbox two", b"crlf two\r\n", eol=b"\r\n")
    mbox_crlf = (b"From a@b Wed Jan  1 00:00:00 2020\r\n" + c1 + b"\r\n" +
                 b"From a@b Thu Jan  2 00:00:00 2020\r\n" + c2 + b"\r\n")
    (tmp / "crlf.mbox").write_bytes(mbox_crlf)
    mbox_crlf_expected = [(c1.replace(b">From escaped", b"From escaped"), set(), "01-Jan-2020 00:00:00"),
                          (c2, set(), "02-Jan-2020 00:00:00")]
    # Maildir: cur/ with flags (CRLF and LF files), new/ without; file name order is the order.
    md = tmp / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    # Dovecot's keyword letters: a and b valid, c refused by the store (not an atom), so left out.
    (md / "dovecot-keywords").write_bytes(b"0 $Forwarded\n1 Work\n2 bad(kw\n")
    entries = [("cur", "1000000001.M1P1.host:2,Sab", b"\r\n", {"\\Seen", "$Forwarded", "Work"}),
               ("cur", "1000000002.M2P1.host:2,RS", b"\n", {"\\Seen", "\\Answered"}),
               ("cur", "1000000003.M3P1.host:2,Fc", b"\r\n", {"\\Flagged"}),
               ("cur", "1000000004.M4P1.host:2,T", b"\n", {"\\Deleted"}),
               ("cur", "1000000005.M5P1.host:2,DS", b"\r\n", {"\\Draft", "\\Seen"}),
               ("new", "1000000006.M6P1.host", b"\n", set())]
    md_expected = []
    for k, (sub, name, eol, flags) in enumerate(entries):
        n = 10 + k
        body = eol.join([b"maildir body %d" % n, b">From stays as is in a Maildir", b""])
        data = msg(n, b"maildir %d" % n, body, eol=eol)
        path = md / sub / name
        path.write_bytes(data)
        os.utime(path, (1_600_000_000 + k * 86400,) * 2)
        md_expected.append((data, flags, time.strftime("%d-%b-%Y %H:%M:%S",
                                                         time.gmtime(1_600_000_000 + k * 86400))))
    return [(tmp / "lf.mbox", mbox_lf_expected), (tmp / "crlf.mbox", mbox_crlf_expected),
            (md, md_expected)]


def imap_session(d, user=ALICE):
    m = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=20)
    m.login(user, d.passwords[user])
    return m


def fetch_all(m, mailbox):
    typ, data = m.select(f'"{mailbox}"', readonly=True)
    if typ != "OK":
        return None
    count = int(data[0])
    if count == 0:
        return []
    typ, data = m.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[])")
    out = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        meta = item[0].decode(errors="replace")
        flags = set(re.search(r"FLAGS \(([^)]*)\)", meta).group(1).split())
        flags.discard("\\Recent")
        out.append({"uid": int(re.search(r"UID (\d+)", meta).group(1)),
                    "flags": flags,
                    "size": int(re.search(r"RFC822.SIZE (\d+)", meta).group(1)),
                    "internaldate": re.search(r'INTERNALDATE "([^"]+)"', meta).group(1),
                    "envelope": meta, "body": item[1]})
    return out


def check_messages(checks, label, got, expected):
    checks.check(got is not None and len(got) == len(expected),
                 f"{label}: IMAP shows {len(expected)} messages", f"got {None if got is None else len(got)}")
    if got is None or len(got) != len(expected):
        return
    bodies = all(g["body"] == crlf(e[0]) for g, e in zip(got, expected))
    checks.check(bodies, f"{label}: BODY.PEEK[] of every message byte-exact (bare LF sent as CRLF, "
                 "mbox escaping undone)",
                 [(g["body"][:200], crlf(e[0])[:200]) for g, e in zip(got, expected) if g["body"] != crlf(e[0])][:1])
    checks.check(all(g["size"] == len(g["body"]) for g in got), f"{label}: RFC822.SIZE is the length sent")
    checks.check(all(g["flags"] == e[1] for g, e in zip(got, expected)),
                 f"{label}: flags as in the source", [(g["flags"], e[1]) for g, e in zip(got, expected)])
    checks.check(all(e[2] is None or g["internaldate"].startswith(e[2].lstrip("0"))
                     or g["internaldate"].startswith(e[2]) for g, e in zip(got, expected)),
                 f"{label}: INTERNALDATE from the source (From line date / file time)",
                 [(g["internaldate"], e[2]) for g, e in zip(got, expected)])
    env_ok = all(("import.%s@remote.test" % re.search(rb"import\.(\d+)@", e[0]).group(1).decode())
                 in g["envelope"] and re.search(rb"Subject: ([^\r\n]*)", e[0]).group(1).decode() in g["envelope"]
                 for g, e in zip(got, expected))
    checks.check(env_ok, f"{label}: ENVELOPE has each message's subject and Message-ID",
                 got[0]["envelope"][:300])


def test_errors(checks, d, tmp):
    p = run_ternd(["mail", "import", "--help"], check=False)
    checks.check(p.returncode == 0 and b"mbox" in p.stdout and b"Maildir" in p.stdout,
                 "mail import --help: usage on stdout, exit 0")
    p = run_ternd(["mail", "import", ALICE, "--data-dir", d.data_dir], check=False)
    checks.check(p.returncode == 2 and b"missing PATH" in p.stderr, "mail import without PATH: exit 2", p.stderr)
    p = run_ternd(["mail", "import", ALICE, str(tmp / "nope.mbox"), "--data-dir", d.data_dir], check=False)
    checks.check(p.returncode == 1 and b"No such file" in p.stderr,
                 "a missing file: exit 1, 'No such file'", p.stderr)
    (tmp / "notmbox").write_bytes(b"Subject: hi\n\nnot an mbox\n")
    p = run_ternd(["mail", "import", ALICE, str(tmp / "notmbox"), "--data-dir", d.data_dir], check=False)
    checks.check(p.returncode == 1 and b"not an mbox" in p.stderr, "a file that is not an mbox: exit 1", p.stderr)
    (tmp / "plain-dir").mkdir()
    p = run_ternd(["mail", "import", ALICE, str(tmp / "plain-dir"), "--data-dir", d.data_dir], check=False)
    checks.check(p.returncode == 1 and b"not a Maildir" in p.stderr, "a directory that is not a Maildir: exit 1",
                 p.stderr)
    p = run_ternd(["mail", "import", "nobody@example.test", str(tmp / "lf.mbox"), "--data-dir", d.data_dir],
                  check=False)
    checks.check(p.returncode == 1 and b"no such user" in p.stderr, "an unknown user: exit 1, 'no such user'",
                 p.stderr)
    checks.check(d.mail_count(ALICE) == 0, "nothing was imported by the failed commands")


def test_import(checks, d, sources):
    p = run_ternd(["mail", "import", ALICE, sources[0][0], sources[1][0], "--json", "--data-dir", d.data_dir],
                  check=False)
    summary = json.loads(p.stdout or b"{}") if p.returncode == 0 else {}
    checks.check(p.returncode == 0 and summary.get("imported") == 5 and
                 [s["messages"] for s in summary.get("sources", [])] == [3, 2] and
                 summary.get("first_uid") == 1 and summary.get("last_uid") == 5,
                 "two mbox files (LF, CRLF) imported into INBOX while ternd serves: --json says 5 (3 + 2), "
                 "UIDs 1-5", p.stdout + p.stderr)
    p = run_ternd(["mail", "import", ALICE, "--mailbox", "Archive/2020", sources[2][0], "--data-dir",
                   d.data_dir], check=False)
    checks.check(p.returncode == 0 and b"imported 6 messages" in p.stdout,
                 "a Maildir imported into a new mailbox Archive/2020", p.stdout + p.stderr)

    m = imap_session(d)
    try:
        check_messages(checks, "mbox (LF + CRLF) in INBOX", fetch_all(m, "INBOX"),
                       sources[0][1] + sources[1][1])
        check_messages(checks, "Maildir in Archive/2020", fetch_all(m, "Archive/2020"), sources[2][1])
        m.select("INBOX", readonly=True)
        typ, data = m.uid("SEARCH", "SUBJECT", '"crlf mbox two"')
        checks.check(typ == "OK" and data[0].split() == [b"5"], "UID SEARCH SUBJECT finds an imported message",
                     data)
        typ, data = m.search(None, "BODY", '"doubly escaped"')
        checks.check(typ == "OK" and data[0].split() == [b"1"], "SEARCH BODY finds text of an imported body",
                     data)
    finally:
        m.logout()

    pop = poplib.POP3("127.0.0.1", d.pop3_port, timeout=20)
    try:
        pop.user(ALICE)
        pop.pass_(d.passwords[ALICE])
        count, _ = pop.stat()
        expected = [e[0] for e in sources[0][1] + sources[1][1]]
        retr = [b"\r\n".join(pop.retr(i + 1)[1]) + b"\r\n" for i in range(count)]
        checks.check(count == 5 and retr == [crlf(e) for e in expected],
                     "POP3: STAT 5 and RETR of each imported message byte-exact",
                     (count, [r[:80] for r in retr]))
    finally:
        pop.quit()


def big_mbox(path, n):
    with open(path, "wb") as f:
        for i in range(n):
            f.write(b"From bulk@remote.test Sat Jan  3 01:05:34 2015\n")
            f.write(msg(100000 + i, b"bulk %d" % i, (b"bulk line %d of message\n" % i) * (20 + i % 50)))
            f.write(b"\n")


def test_kill(checks, d, tmp):
    n = 3000
    big_mbox(tmp / "big.mbox", n)
    proc = subprocess.Popen([str(TERND), "mail", "import", BOB, str(tmp / "big.mbox"), "--progress", "256",
                             "--data-dir", str(d.data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        seen = len(d.mail_list(BOB))
        if seen >= GROUP:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    visible = d.mail_list(BOB)
    checks.check(killed and 0 < len(visible) < n,
                 f"kill -9 of an import of {n} messages mid-way ({len(visible)} visible)", (killed, len(visible)))
    checks.check(len(visible) % GROUP == 0, f"the messages visible are whole groups of {GROUP}", len(visible))
    m = imap_session(d, BOB)
    try:
        got = fetch_all(m, "INBOX")
    finally:
        m.logout()
    whole = got is not None and len(got) == len(visible) and all(
        g["body"] == crlf(msg(100000 + i, b"bulk %d" % i, (b"bulk line %d of message\n" % i) * (20 + i % 50)))
        for i, g in enumerate(got))
    checks.check(whole, "every message IMAP shows after the kill is whole and byte-exact, in order")
    pop = poplib.POP3("127.0.0.1", d.pop3_port, timeout=20)
    try:
        pop.user(BOB)
        pop.pass_(d.passwords[BOB])
        sizes = [int(x.split()[1]) for x in pop.list()[1]]
    finally:
        pop.quit()
    checks.check(got is not None and sizes == [g["size"] for g in got], "POP3 LIST sizes match after the kill")

    d.stop()
    start_daemon(checks, d, "ternd restarted after the killed import")
    account_dir = d.data_dir / "mail"
    files = sum(len(list(p.glob("*.eml"))) for p in account_dir.iterdir() if p.is_dir())
    rows = len(d.mail_list(ALICE)) + len(d.mail_list(BOB)) + len(d.mail_list(ALICE, "Archive/2020"))
    checks.check(files == rows and not any((d.data_dir / "tmp").iterdir()),
                 "the restart swept the killed import's leftovers: as many .eml files as rows, tmp/ empty",
                 (files, rows, list((d.data_dir / "tmp").iterdir())[:3]))
    p = run_ternd(["mail", "import", BOB, tmp / "big.mbox", "--json", "--data-dir", d.data_dir], check=False,
                  timeout=300)
    summary = json.loads(p.stdout or b"{}") if p.returncode == 0 else {}
    checks.check(summary.get("imported") == n and len(d.mail_list(BOB)) == n + len(visible),
                 f"a full import of the {n} messages afterwards", p.stderr[-300:])


def run(checks):
    with Daemon("import", imap=True) as d, tempfile.TemporaryDirectory(prefix="tern-import-src-") as t:
        tmp = Path(t)
        if not start_daemon(checks, d):
            return
        (tmp / "src").mkdir()
        sources = build_sources(tmp / "src")
        test_errors(checks, d, tmp / "src")
        test_import(checks, d, sources)
        test_kill(checks, d, tmp)


if __name__ == "__main__":
    harness.main_guard(run)
