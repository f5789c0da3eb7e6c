#!/usr/bin/env python3
"""End-to-end: IMAP SEARCH and UID SEARCH (RFC 3501 6.4.4, ESEARCH RFC 4731, CONDSTORE MODSEQ RFC 7162)
against a real ternd on loopback.

Six messages go in over SMTP (plain ASCII with Cc; quoted-printable ISO-8859-1 with RFC 2047 From and
Subject; base64 UTF-8 with an RFC 2047 UTF-8 Subject and a Bcc; multipart with HTML and a PDF attachment;
base64 ISO-8859-1 with a custom header; a tiny one without a Date: header), then system flags are set with
STORE. What is checked:
- a table of (search keys, expected sequence numbers) through Python's imaplib over TLS: every flag key,
  FROM/TO/CC/BCC/SUBJECT/HEADER on decoded headers, BODY/TEXT on decoded bodies (transfer encodings undone,
  charsets converted, Unicode case folding: "STRASSE" finds "Straße"), attachments not searched, sequence
  sets, OR/NOT/parentheses, LARGER/SMALLER against FETCH RFC822.SIZE, BEFORE/ON/SINCE against today's
  internal date (the server's time zone, the same as this test's), SENT* on the Date: header's own day;
- UTF-8 search strings sent as literals (imaplib's `literal`) with CHARSET UTF-8;
- UID SEARCH answers UIDs; RECENT/NEW/OLD are consistent with each other;
- KEYWORD/UNKEYWORD after STORE +FLAGS ($Work) (a refused STORE is a failure);
- MODSEQ n and the "(MODSEQ n)" tail, checked against FETCH MODSEQ when the server returns it;
- ESEARCH: SEARCH RETURN (MIN MAX COUNT ALL), RETURN () = ALL, no MIN/MAX/ALL when nothing matches,
  UID SEARCH RETURN gives "UID" and UIDs, MODSEQ in ESEARCH;
- errors: unknown key, missing or invalid arguments, invalid dates, a bad CHARSET (NO [BADCHARSET
  (UTF-8 US-ASCII)]), invalid UTF-8 in a literal, 40 nested parentheses, 5,000 NOTs (BAD, no crash), and the
  session and daemon still answer afterwards.

A second daemon (log.level=debug, to see when a command has been dispatched) gets BULK_MESSAGES messages of
about 8 KB over SMTP (eight connections at once); then, with message files read on the worker threads:
- a BODY search over all of them answers the expected messages (SEARCH, UID SEARCH, ESEARCH COUNT); its time
  alone is printed;
- while that search runs in one session (as "OR BODY x BODY x", which the search index does not narrow, so it
  reads every message; the server has dispatched it: its debug line is in the log), another
  session's NOOP gets its OK before the search's tagged reply (ordering, not a timing threshold; both times
  printed);
- an EXPUNGE by the other session while the search runs: the SEARCH answers from the snapshot it started
  with and sends no EXPUNGE (RFC 3501 7.4.1); the next NOOP brings "* 1 EXPUNGE", and a new search the
  shifted numbers;
- a client that drops its connection (RST) mid-search, three times: ternd keeps running and answers the
  next session correctly;
- SIGTERM while a search runs: the search still gets its answer, then "* BYE", and ternd exits 0 with no
  sanitizer report and no session left over ("leaked-at-exit"). Run against an ASan build
  (TERN_BUILD=build-asan, ASAN_OPTIONS=detect_leaks=1) this checks the dropped searches leak nothing.
"""

import base64
import imaplib
import re
import select
import signal
import smtplib
import socket
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, Daemon, RawIMAP, imap_tagged_ok  # noqa: E402

REMOTE = "sender@remote.test"


def b64(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def message(headers, body):
    head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode()
    return head + b"\r\n" + body


def corpus():
    """[(name, message bytes)] in delivery order: sequence numbers 1..6."""
    base = [("To", f"Alice <{ALICE}>")]
    m1 = message([("From", "Anna Smith <anna@remote.test>")] + base + [
        ("Cc", "Carl Jones <carl@remote.test>"),
        ("Subject", "Quarterly report"),
        ("Date", "Mon, 1 Jan 2024 23:30:00 -0500"),
        ("Message-ID", "<search-1@remote.test>")],
        b"The quick brown fox\r\njumps over the lazy dog.\r\n")
    m2 = message([("From", "=?iso-8859-1?q?J=F6rg_M=FCller?= <joerg@remote.test>")] + base + [
        ("Subject", "=?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?="),
        ("Date", "Thu, 15 Feb 2024 10:00:00 +0100"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=iso-8859-1"),
        ("Content-Transfer-Encoding", "quoted-printable")],
        b"Un caf=E9 na=EFve =\r\nau cr=E8me br=FBl=E9e.\r\n")
    subject3 = base64.b64encode("Ωμέγα news".encode()).decode()
    m3 = message([("From", "dora@remote.test")] + base + [
        ("Bcc", "hidden@remote.test"),
        ("Subject", f"=?UTF-8?B?{subject3}?="),
        ("Date", "Sun, 31 Mar 2024 01:00:00 +1400"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "base64")],
        b64("Straße Ωμέγα 日本語 text\r\n".encode()))
    pdf = b"%PDF-1.4\n% secretword inside the attachment\n" + bytes(range(256))
    m4 = message([("From", "erik@remote.test")] + base + [
        ("Subject", "Files attached"),
        ("Date", "Wed, 10 Apr 2024 12:00:00 +0000"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'multipart/mixed; boundary="XYZ"')],
        b"This is a multi-part message; the preamble holds preambleword.\r\n"
        b"--XYZ\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attached file.\r\n"
        b"--XYZ\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<p><b>bold words</b> and caf=C3=A9</p>\r\n"
        b"--XYZ\r\nContent-Type: application/pdf; name=\"doc.pdf\"\r\n"
        b"Content-Disposition: attachment; filename=\"doc.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64(pdf) + b"--XYZ--\r\n")
    m5 = message([("From", "fanny@remote.test")] + base + [
        ("Subject", "Prix"),
        ("Date", "Fri, 10 May 2024 09:00:00 +0200"),
        ("X-Custom-Header", "Alpha Beta"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=ISO-8859-1"),
        ("Content-Transfer-Encoding", "base64")],
        b64("Ça coûte très cher.\r\n".encode("iso-8859-1")))
    m6 = message([("From", "gus@remote.test")] + base + [("Subject", "tiny")], b"x\r\n")
    return [("plain", m1), ("qp-latin1", m2), ("b64-utf8", m3), ("multipart", m4), ("b64-latin1", m5),
            ("tiny", m6)]


# (keys as imaplib criteria, expected sequence numbers). Literal searches are below.
TABLE = [
    ("ALL", {1, 2, 3, 4, 5, 6}),
    ("SEEN", {1, 2}),
    ("UNSEEN", {3, 4, 5, 6}),
    ("FLAGGED", {2}),
    ("UNFLAGGED", {1, 3, 4, 5, 6}),
    ("DELETED", {4}),
    ("UNDELETED", {1, 2, 3, 5, 6}),
    ("ANSWERED", {5}),
    ("UNANSWERED", {1, 2, 3, 4, 6}),
    ("DRAFT", {6}),
    ("UNDRAFT", {1, 2, 3, 4, 5}),
    ("FROM anna", {1}),
    ("FROM ANNA@REMOTE.TEST", {1}),
    ("FROM joerg@remote", {2}),
    ('FROM "=?iso"', set()),
    (f"TO {ALICE}", {1, 2, 3, 4, 5, 6}),
    ("CC carl", {1}),
    ('CC ""', {1}),
    ("BCC hidden", {3}),
    ("SUBJECT report", {1}),
    ("SUBJECT news", {3}),
    ("SUBJECT Q", {1}),
    ('SUBJECT ""', {1, 2, 3, 4, 5, 6}),
    ("HEADER X-Custom-Header beta", {5}),
    ('HEADER x-custom-header ""', {5}),
    ('HEADER Received ""', {1, 2, 3, 4, 5, 6}),
    ('HEADER Date ""', {1, 2, 3, 4, 5}),
    ("HEADER Content-Type multipart", {4}),
    ("HEADER X-Nothing x", set()),
    ("BODY fox", {1}),
    ('BODY "QUICK BROWN"', {1}),
    ("BODY =E9", set()),
    ("BODY lazy", {1}),
    ('BODY "bold words"', {4}),
    ("BODY secretword", set()),
    ("BODY preambleword", set()),
    ("BODY U3RyYcOfZS", set()),
    ("BODY attached", {4}),
    ("TEXT report", {1}),
    ("TEXT fox", {1}),
    ("TEXT hidden@remote", {3}),
    ("TEXT x-custom-header", {5}),
    ("TEXT nowhere-at-all", set()),
    ("2:4", {2, 3, 4}),
    ("*", {6}),
    ("5:*", {5, 6}),
    ("1,3,5", {1, 3, 5}),
    ("7:9", set()),
    ("6:9", {6}),
    ("OR SEEN DRAFT", {1, 2, 6}),
    ("NOT SEEN", {3, 4, 5, 6}),
    ("(FLAGGED SEEN)", {2}),
    ("OR (BODY fox) (SUBJECT prix)", {1, 5}),
    ("NOT (OR BODY fox FROM fanny)", {2, 3, 4, 6}),
    ("NOT NOT NOT SEEN", {3, 4, 5, 6}),
    ("OR OR FROM anna CC carl BCC hidden", {1, 3}),
    ("UNDELETED BODY attached", set()),
    ("SEEN UNSEEN", set()),
    ("SENTON 1-Jan-2024", {1}),
    ("SENTON 2-Jan-2024", set()),
    ("SENTBEFORE 2-Jan-2024", {1}),
    ('SENTSINCE "15-Feb-2024"', {2, 3, 4, 5}),
    ("SENTON 31-Mar-2024", {3}),
    ("SENTON 30-Mar-2024", set()),
    ("SENTBEFORE 1-Jan-1990", set()),
    ("NOT SENTSINCE 1-Jan-1990", {6}),
    ("SENTSINCE 1-May-2024 SENTBEFORE 11-May-2024", {5}),
]

# (UTF-8 prefix keys, UTF-8 string sent as a literal, expected): imaplib puts the literal last.
LITERALS = [
    ("FROM", "jörg", {2}),
    ("FROM", "MÜLLER", {2}),
    ("SUBJECT", "grüße", {2}),
    ("SUBJECT", "GRÜSSE", {2}),
    ("SUBJECT", "aus köln", {2}),
    ("SUBJECT", "ωμέγα", {3}),
    ("SUBJECT", "ΩΜΈΓΑ NEWS", {3}),
    ("BODY", "café", {2, 4}),
    ("BODY", "crème brûlée", {2}),
    ("BODY", "naïve au", {2}),
    ("BODY", "straße", {3}),
    ("BODY", "STRASSE", {3}),
    ("BODY", "日本語", {3}),
    ("BODY", "très cher", {5}),
    ("BODY", "ÇA COÛTE", {5}),
    ("TEXT", "köln", {2}),
    ("NOT BODY", "café", {1, 3, 5, 6}),
    ("OR FROM anna BODY", "coûte", {1, 5}),
    ("SEEN BODY", "café", {2}),
]


def smtp_deliver(d, msg):
    with smtplib.SMTP("127.0.0.1", d.mx_port, timeout=30) as client:
        client.ehlo()
        return client.sendmail(REMOTE, [ALICE], msg) == {}


def seqs(data):
    """imaplib SEARCH data -> set of ints."""
    out = set()
    for chunk in data or []:
        if chunk:
            out.update(int(x) for x in chunk.split() if x.isdigit())
    return out


def imaplib_session(d):
    m = imaplib.IMAP4_SSL("localhost", d.imaps_port, ssl_context=d.client_tls_context(), timeout=20)
    m.login(ALICE, d.passwords[ALICE])
    typ, _ = m.select("INBOX")
    if typ != "OK":
        raise imaplib.IMAP4.error("SELECT INBOX failed")
    return m


def raw_session(d):
    s = RawIMAP(d.imap_port, timeout=20)
    tagged, _ = s.login(ALICE, d.passwords[ALICE])
    if not imap_tagged_ok(tagged):
        raise RuntimeError(f"LOGIN: {tagged}")
    tagged, _ = s.command("SELECT INBOX")
    if not imap_tagged_ok(tagged):
        raise RuntimeError(f"SELECT: {tagged}")
    return s


def status_of(tagged):
    parts = (tagged or "").split(" ", 2)
    return parts[1].upper() if len(parts) > 1 else ""


def search_line(untagged, word="SEARCH"):
    for line in untagged:
        if line.upper().startswith(b"* " + word.encode() + b" ") or line.upper() == b"* " + word.encode():
            return line.decode(errors="replace")
    return None


def fetch_numbers(s, item):
    """{seq: int} of a numeric FETCH item for 1:*, or None if the server refuses it."""
    tagged, untagged = s.command(f"FETCH 1:* ({item})")
    if not imap_tagged_ok(tagged):
        return None
    out = {}
    for line in untagged:
        m = re.match(rb"\* (\d+) FETCH .*" + item.encode() + rb" \(?(\d+)", line, re.I)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


# ---- the tests -------------------------------------------------------------------------------------
def search_set(s, keys):
    tagged, untagged = s.command(f"SEARCH {keys}")
    line = search_line(untagged) or ""
    return imap_tagged_ok(tagged), {int(x) for x in line.split()[2:] if x.isdigit()}


def set_flags(checks, d):
    """The first session to select INBOX sees every message as \\Recent; then it sets the flags."""
    s = RawIMAP(d.imap_port, timeout=20)
    try:
        s.login(ALICE, d.passwords[ALICE])
        tagged, untagged = s.command("SELECT INBOX")
        checks.check(imap_tagged_ok(tagged), "SELECT INBOX in the first session", tagged)
        recent = next((int(m.group(1)) for m in (re.match(rb"\* (\d+) RECENT", l) for l in untagged) if m), None)
        ok, got = search_set(s, "RECENT")
        want = set(range(7 - recent, 7)) if recent else set()
        checks.check(ok and recent is not None and got == want,
                     f"first session: SEARCH RECENT matches the {recent} RECENT of SELECT", got)
        if recent == 6:
            for keys, want in (("NEW", {1, 2, 3, 4, 5, 6}), ("OLD", set()), ("NOT RECENT", set()),
                               ("NEW 2:3", {2, 3})):
                ok, got = search_set(s, keys)
                checks.check(ok and got == want, f"first session: SEARCH {keys} -> {sorted(want)}", got)
        else:
            checks.check(False, "first session: six recent messages for the NEW/OLD searches",
                         f"SELECT said {recent} RECENT")
        for cmd in ("STORE 1:2 +FLAGS.SILENT (\\Seen)", "STORE 2 +FLAGS.SILENT (\\Flagged)",
                    "STORE 4 +FLAGS.SILENT (\\Deleted)", "STORE 5 +FLAGS.SILENT (\\Answered)",
                    "STORE 6 +FLAGS.SILENT (\\Draft)"):
            tagged, _ = s.command(cmd)
            checks.check(imap_tagged_ok(tagged), f"setup: {cmd}", tagged)
    finally:
        s.close()


def test_table(checks, d):
    m = imaplib_session(d)
    try:
        for keys, want in TABLE:
            typ, data = m.search(None, keys)
            got = seqs(data)
            checks.check(typ == "OK" and got == want, f"imaplib SEARCH {keys} -> {sorted(want)}",
                         f"{typ} {data} (got {sorted(got)})")
        for prefix, text, want in LITERALS:
            m.literal = text.encode()
            typ, data = m.search("UTF-8", prefix)
            got = seqs(data)
            checks.check(typ == "OK" and got == want,
                         f"imaplib SEARCH CHARSET UTF-8 {prefix} {{literal {text!r}}} -> {sorted(want)}",
                         f"{typ} {data} (got {sorted(got)})")
        m.literal = "café".encode()
        typ, data = m.search("US-ASCII", "BODY")
        checks.check(typ == "OK" and seqs(data) == {2, 4}, "CHARSET US-ASCII is accepted (bytes taken as UTF-8)",
                     data)

        # Sizes: LARGER/SMALLER against FETCH RFC822.SIZE.
        typ, data = m.fetch("1:*", "(RFC822.SIZE)")
        sizes = {}
        for item in data:
            mm = re.match(rb"(\d+) \(RFC822\.SIZE (\d+)\)", item if isinstance(item, bytes) else item[0])
            if mm:
                sizes[int(mm.group(1))] = int(mm.group(2))
        if checks.check(len(sizes) == 6, "FETCH 1:* RFC822.SIZE: six sizes", data):
            for n in sorted(set(sizes.values())):
                for key, want in ((f"LARGER {n}", {k for k, v in sizes.items() if v > n}),
                                  (f"SMALLER {n}", {k for k, v in sizes.items() if v < n}),
                                  (f"NOT LARGER {n} NOT SMALLER {n}", {k for k, v in sizes.items() if v == n})):
                    typ, data = m.search(None, key)
                    checks.check(seqs(data) == want, f"SEARCH {key} -> {sorted(want)}", data)

        # Internal dates: every message arrived today (in the server's zone, which is ours).
        today = time.localtime()
        before, after = time.localtime(time.time() - 86400), time.localtime(time.time() + 86400)
        fmt = "%d-%b-%Y"
        if time.strftime("%Y%m%d", today) == time.strftime("%Y%m%d", time.localtime(time.time() - 120)):
            for key, want in ((f"ON {time.strftime(fmt, today)}", {1, 2, 3, 4, 5, 6}),
                              (f"SINCE {time.strftime(fmt, today)}", {1, 2, 3, 4, 5, 6}),
                              (f"BEFORE {time.strftime(fmt, today)}", set()),
                              (f"BEFORE {time.strftime(fmt, after)}", {1, 2, 3, 4, 5, 6}),
                              (f"ON {time.strftime(fmt, before)}", set()),
                              (f"SINCE {time.strftime(fmt, after)}", set()),
                              (f"NOT BEFORE {time.strftime(fmt, today)} SEEN", {1, 2})):
                typ, data = m.search(None, key)
                checks.check(seqs(data) == want, f"SEARCH {key} (internal date, local zone) -> {sorted(want)}",
                             data)
        else:
            checks.skip("internal date searches", "the test started around midnight", documented="midnight")

        # \Recent: whatever the server says, the keys agree with each other.
        rec = seqs(m.search(None, "RECENT")[1])
        old = seqs(m.search(None, "OLD")[1])
        new = seqs(m.search(None, "NEW")[1])
        unseen = seqs(m.search(None, "UNSEEN")[1])
        checks.check(rec | old == {1, 2, 3, 4, 5, 6} and not (rec & old),
                     "RECENT and OLD split the mailbox", (rec, old))
        checks.check(new == rec & unseen, "NEW = RECENT UNSEEN", (new, rec, unseen))
        checks.note(f"RECENT in this session: {sorted(rec)}")

        # UID SEARCH answers UIDs.
        typ, data = m.fetch("1:*", "(UID)")
        uids = {}
        for item in data:
            mm = re.match(rb"(\d+) \(UID (\d+)\)", item)
            if mm:
                uids[int(mm.group(1))] = int(mm.group(2))
        if checks.check(len(uids) == 6, "FETCH 1:* UID: six UIDs", data):
            for key, want in (("SEEN", {1, 2}), ("BODY fox", {1}), ("2:3", {2, 3}),
                              (f"UID {uids[3]}:{uids[5]}", {3, 4, 5}), (f"UID {uids[6] + 100}:*", {6}),
                              (f"UID {uids[1]},{uids[6]}", {1, 6}), ("UID *", {6})):
                typ, data = m.uid("SEARCH", key)
                want_uids = {uids[n] for n in want}
                checks.check(typ == "OK" and seqs(data) == want_uids, f"UID SEARCH {key} -> UIDs {sorted(want_uids)}",
                             data)
            typ, data = m.search(None, f"UID {uids[2]}")
            checks.check(seqs(data) == {2}, "SEARCH UID n answers sequence numbers", data)
        m.logout()
    finally:
        try:
            m.shutdown()
        except OSError:
            pass
    return uids


def test_keywords(checks, d):
    s = raw_session(d)
    try:
        tagged, _ = s.command("STORE 3 +FLAGS.SILENT ($Work)")
        if not checks.check(status_of(tagged) == "OK", "setup: STORE 3 +FLAGS.SILENT ($Work)", tagged):
            return
        tagged, _ = s.command("STORE 5 +FLAGS.SILENT ($Work $Other)")
        checks.check(status_of(tagged) == "OK", "setup: STORE 5 +FLAGS.SILENT ($Work $Other)", tagged)
        for keys, want in (("KEYWORD $Work", {3, 5}), ("KEYWORD $work", {3, 5}), ("KEYWORD $Other", {5}),
                           ("UNKEYWORD $Work", {1, 2, 4, 6}), ("KEYWORD $Wor", set()),
                           ("KEYWORD $Work NOT KEYWORD $Other", {3})):
            tagged, untagged = s.command(f"SEARCH {keys}")
            line = search_line(untagged) or ""
            got = {int(x) for x in line.split()[2:] if x.isdigit()}
            checks.check(imap_tagged_ok(tagged) and got == want, f"SEARCH {keys} -> {sorted(want)}", (tagged, line))
    finally:
        s.close()


def test_modseq(checks, d):
    s = raw_session(d)
    try:
        tagged, untagged = s.command("SEARCH MODSEQ 0")
        line = search_line(untagged) or ""
        checks.check(imap_tagged_ok(tagged) and re.search(r"\(MODSEQ \d+\)$", line) is not None,
                     "SEARCH MODSEQ 0: every message, with a (MODSEQ n) tail", line)
        checks.check([int(x) for x in line.split()[2:8] if x.isdigit()] == [1, 2, 3, 4, 5, 6],
                     "SEARCH MODSEQ 0 lists 1..6", line)
        tagged, untagged = s.command("SEARCH SEEN")
        line = search_line(untagged) or ""
        checks.check("MODSEQ" not in line, "SEARCH without MODSEQ: no (MODSEQ n) tail", line)
        tagged, untagged = s.command('SEARCH MODSEQ "/flags/\\\\seen" all 0')
        checks.check(imap_tagged_ok(tagged), "SEARCH MODSEQ with an entry name and type: OK", tagged)
        modseqs = fetch_numbers(s, "MODSEQ")
        if not checks.check(modseqs and len(modseqs) == 6 and any(modseqs.values()),
                            "FETCH MODSEQ gives six non-zero MODSEQs (for SEARCH MODSEQ n)", modseqs):
            return
        for n in sorted(set(modseqs.values())):
            want = {k for k, v in modseqs.items() if v >= n}
            tagged, untagged = s.command(f"SEARCH MODSEQ {n}")
            line = search_line(untagged) or ""
            got = {int(x) for x in re.sub(r"\(MODSEQ \d+\)", "", line).split()[2:] if x.isdigit()}
            tail = re.search(r"\(MODSEQ (\d+)\)", line)
            checks.check(got == want and tail and int(tail.group(1)) == max(modseqs[k] for k in want),
                         f"SEARCH MODSEQ {n} -> {sorted(want)} (MODSEQ {max(modseqs[k] for k in want)})", line)
        top = max(modseqs.values())
        tagged, untagged = s.command(f"SEARCH MODSEQ {top + 1}")
        line = search_line(untagged) or ""
        checks.check(line.strip() == "* SEARCH", "SEARCH MODSEQ above the highest: empty, no tail", line)
    finally:
        s.close()


def esearch(s, cmd):
    tagged, untagged = s.command(cmd, tag="es1")
    return tagged, search_line(untagged, "ESEARCH")


def test_esearch(checks, d, uids):
    s = raw_session(d)
    try:
        cases = [
            ("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN", '* ESEARCH (TAG "es1") MIN 3 MAX 6 COUNT 4 ALL 3:6'),
            ("SEARCH RETURN (ALL) OR SEEN DRAFT", '* ESEARCH (TAG "es1") ALL 1:2,6'),
            ("SEARCH RETURN () OR SEEN DRAFT", '* ESEARCH (TAG "es1") ALL 1:2,6'),
            ("SEARCH RETURN (COUNT) BODY fox", '* ESEARCH (TAG "es1") COUNT 1'),
            ("SEARCH RETURN (MIN) NOT SEEN", '* ESEARCH (TAG "es1") MIN 3'),
            ("SEARCH RETURN (MAX) 1:3", '* ESEARCH (TAG "es1") MAX 3'),
            ("SEARCH RETURN (MIN MAX COUNT ALL) BODY nothing-at-all", '* ESEARCH (TAG "es1") COUNT 0'),
            ("SEARCH RETURN (MIN MAX ALL) BODY nothing-at-all", '* ESEARCH (TAG "es1")'),
            ("SEARCH RETURN (ALL) CHARSET UTF-8 1,3,5", '* ESEARCH (TAG "es1") ALL 1,3,5'),
        ]
        if len(uids) == 6:
            u = uids
            seen = f"{u[1]}:{u[2]}" if u[2] == u[1] + 1 else f"{u[1]},{u[2]}"
            cases += [
                ("UID SEARCH RETURN (ALL) SEEN", f'* ESEARCH (TAG "es1") UID ALL {seen}'),
                ("UID SEARCH RETURN (MIN MAX) UNSEEN", f'* ESEARCH (TAG "es1") UID MIN {u[3]} MAX {u[6]}'),
                ("UID SEARCH RETURN (COUNT) ALL", '* ESEARCH (TAG "es1") UID COUNT 6'),
            ]
        for cmd, want in cases:
            tagged, line = esearch(s, cmd)
            checks.check(imap_tagged_ok(tagged) and line == want, f"{cmd} -> {want}", (tagged, line))
        tagged, line = esearch(s, "SEARCH RETURN (MIN MAX) MODSEQ 0")
        checks.check(imap_tagged_ok(tagged) and line is not None and
                     re.fullmatch(r'\* ESEARCH \(TAG "es1"\) MIN 1 MAX 6 MODSEQ \d+', line) is not None,
                     "SEARCH RETURN (MIN MAX) MODSEQ 0: MIN 1 MAX 6 MODSEQ n", line)
        tagged, untagged = s.command("SEARCH RETURN (SAVE) ALL")
        checks.check(status_of(tagged) == "BAD", "SEARCH RETURN (SAVE): BAD (SEARCHRES not offered)", tagged)
        tagged, untagged = s.command("SEARCH RETURN ALL")
        checks.check(status_of(tagged) == "BAD", "SEARCH RETURN without a list: BAD", tagged)
        tagged, untagged = s.command("SEARCH RETURN (MIN)")
        checks.check(status_of(tagged) == "BAD", "SEARCH RETURN (MIN) without keys: BAD", tagged)
    finally:
        s.close()


# (command, expected status, text the tagged line holds); a BAD counts against imap.max_errors.
ERRORS = (
    ("SEARCH FROBNICATE", "BAD", "unknown search key"),
    ("SEARCH SEEN FOO", "BAD", "unknown search key"),
    ("SEARCH", "BAD", ""),
    ("SEARCH FROM", "BAD", "missing argument"),
    ("SEARCH OR SEEN", "BAD", "missing argument"),
    ("SEARCH NOT", "BAD", "missing argument"),
    ("SEARCH HEADER Subject", "BAD", "missing argument"),
    ("SEARCH BEFORE 32-Jan-2024", "BAD", "date"),
    ("SEARCH SINCE 29-Feb-2023", "BAD", "date"),
    ("SEARCH ON yesterday", "BAD", "date"),
    ("SEARCH SENTON 1-Jan-24", "BAD", "date"),
    ("SEARCH LARGER big", "BAD", "number"),
    ("SEARCH MODSEQ x", "BAD", "number"),
    ("SEARCH 1:*:*", "BAD", ""),
    ("SEARCH 0", "BAD", ""),
    ("SEARCH UID", "BAD", "missing argument"),
    ("SEARCH ()", "BAD", ""),
    ("SEARCH CHARSET", "BAD", ""),
    ("SEARCH CHARSET KOI8-R ALL", "NO", "[BADCHARSET (UTF-8 US-ASCII)]"),
    ("SEARCH CHARSET ISO-8859-1 BODY x", "NO", "[BADCHARSET (UTF-8 US-ASCII)]"),
    ("UID SEARCH CHARSET \"WINDOWS-1252\" ALL", "NO", "[BADCHARSET (UTF-8 US-ASCII)]"))


def test_errors(checks, d):
    # Each BAD counts against imap.max_errors (20 by default, then the session is closed): a fresh
    # session for every ten.
    for start in range(0, len(ERRORS), 10):
        s = raw_session(d)
        try:
            for cmd, want, text in ERRORS[start:start + 10]:
                tagged, _ = s.command(cmd)
                checks.check(status_of(tagged) == want and text.lower() in tagged.lower(),
                             f"{cmd} -> {want} {text}".rstrip(), tagged)
            tagged, _ = s.command("NOOP")
            checks.check(imap_tagged_ok(tagged), "the session still answers after those errors", tagged)
        finally:
            s.close()
    s = raw_session(d)
    try:
        # Invalid UTF-8 in a literal search string.
        s.send(b"u1 SEARCH CHARSET UTF-8 BODY {3}\r\n")
        cont = s.response()
        if checks.check(cont.startswith(b"+"), "literal announced: + continuation", cont):
            s.send(b"\xff\xfe\xfd\r\n")
            tagged, _ = s.read_until_tagged("u1")
            checks.check(status_of(tagged) == "BAD" and "utf-8" in tagged.lower(),
                         "BODY with an invalid UTF-8 literal -> BAD", tagged)
        # A non-synchronizing literal (LITERAL+) with UTF-8.
        lit = "straße".encode()
        s.send(b"u2 SEARCH CHARSET UTF-8 BODY {%d+}\r\n" % len(lit) + lit + b"\r\n")
        tagged, untagged = s.read_until_tagged("u2")
        checks.check(imap_tagged_ok(tagged) and search_line(untagged) == "* SEARCH 3",
                     "BODY {n+} literal straße -> * SEARCH 3", (tagged, untagged))
        # Deep nesting: parentheses past the parser's limit, and NOT chains without parentheses.
        tagged, _ = s.command("SEARCH " + "(" * 40 + "ALL" + ")" * 40)
        checks.check(status_of(tagged) in ("BAD", "NO"), "40 nested parentheses -> BAD", tagged)
        tagged, _ = s.command("SEARCH " + "(" * 5000 + "ALL" + ")" * 5000)
        checks.check(status_of(tagged) in ("BAD", "NO"), "5,000 nested parentheses -> BAD", tagged)
        tagged, _ = s.command("SEARCH " + "NOT " * 5000 + "ALL")
        checks.check(status_of(tagged) == "BAD" and "[LIMIT]" in tagged.upper(), "5,000 chained NOTs -> BAD [LIMIT]",
                     tagged)
        tagged, _ = s.command("SEARCH " + "OR ALL " * 3000 + "ALL")
        checks.check(status_of(tagged) == "BAD" and "[LIMIT]" in tagged.upper(), "3,000 nested ORs -> BAD [LIMIT]",
                     tagged)
        tagged, untagged = s.command("SEARCH " + "NOT " * 10 + "(" * 20 + "SEEN" + ")" * 20)
        checks.check(imap_tagged_ok(tagged) and search_line(untagged) == "* SEARCH 1 2",
                     "10 NOTs around 20 parentheses: fine, * SEARCH 1 2", (tagged, untagged))
        tagged, untagged = s.command("SEARCH " + " ".join(["BODY x"] * 40))
        checks.check(status_of(tagged) == "BAD" and "[LIMIT]" in tagged.upper(), "40 BODY keys -> BAD [LIMIT]", tagged)
        tagged, _ = s.command("NOOP")
        checks.check(imap_tagged_ok(tagged), "the session still answers after the refused searches", tagged)
    finally:
        s.close()
    # Before SELECT, SEARCH is refused.
    s = RawIMAP(d.imap_port, timeout=20)
    try:
        s.login(ALICE, d.passwords[ALICE])
        tagged, _ = s.command("SEARCH ALL")
        checks.check(status_of(tagged) == "BAD", "SEARCH without a selected mailbox -> BAD", tagged)
    finally:
        s.close()


# ---- searches on the worker threads ----------------------------------------------------------------
BULK_MESSAGES = 3000
BULK_NEEDLE = "zebraword"
BULK_EVERY = 97  # message i (0-based) holds the needle when i % BULK_EVERY == 0: 1, 98, 195, ...
BULK_FILLER = b"".join(b"line %04d of filler text, nothing to find in it, plain ascii words....\r\n" % i
                       for i in range(115))


def bulk_deliver(d, n, connections=8):
    """Delivers n messages to alice over `connections` SMTP sessions at once; returns how many were accepted.

    Message i (in delivery order, which is not the order of arrival) carries its number in the Subject; the
    needle is in the body of every BULK_EVERY-th."""
    accepted = [0] * connections

    def one(k):
        with smtplib.SMTP("127.0.0.1", d.mx_port, timeout=60) as client:
            client.ehlo()
            for i in range(k, n, connections):
                body = BULK_FILLER + (f"the {BULK_NEEDLE} is here\r\n".encode() if i % BULK_EVERY == 0 else b"")
                msg = message([("From", REMOTE), ("To", ALICE), ("Subject", f"bulk {i}")], body)
                if client.sendmail(REMOTE, [ALICE], msg) == {}:
                    accepted[k] += 1

    threads = [threading.Thread(target=one, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(accepted)


class LogFollower:
    """The daemon's stderr lines, read incrementally; waits for lines that hold a text."""

    def __init__(self, d):
        self.path = d.stderr_path
        self.offset = 0
        self.partial = b""
        self.seen = []

    def _read(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        self.seen += lines

    def mark(self):
        """The position after every line written so far."""
        self._read()
        return len(self.seen)

    def wait_for(self, text, since, count=1, timeout=30.0):
        """True once `count` lines after position `since` hold text (bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            if sum(text in line for line in self.seen[since:]) >= count:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)


def readable(s):
    """Whether a RawIMAP session has a response waiting (buffered or on the socket), without reading it."""
    if s.buf:
        return True
    r, _, _ = select.select([s.sock], [], [], 0)
    return bool(r)


def bulk_subjects(s):
    """{seq: i} from FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])."""
    tagged, untagged = s.command("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out = {}
    for line in untagged:
        m = re.match(rb"\* (\d+) FETCH .*Subject: bulk (\d+)", line, re.S | re.I)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


# The checks of a search still running need one that reads every message: "OR k k" is BODY k evaluated
# by the scan (the search index narrows top-level ANDs only; test_imap_search_index.py covers it), where
# plain BODY zebraword reads only the 31 files the index names and may answer before a NOOP does.
SCAN_SEARCH = f"SEARCH OR BODY {BULK_NEEDLE} BODY {BULK_NEEDLE}"


def start_search(s, log, tag, cmd=SCAN_SEARCH):
    """Sends a search and waits until the server logged its dispatch; returns (sent at, dispatched)."""
    since = log.mark()
    sent = time.monotonic()
    s.send(f"{tag} {cmd}\r\n")
    return sent, log.wait_for(b"event=command name=" + cmd.split(" ")[0].encode(), since)


def test_concurrency(checks, d, log):
    a, b = raw_session(d), raw_session(d)
    try:
        subjects = bulk_subjects(a)
        if not checks.check(len(subjects) == BULK_MESSAGES, f"FETCH: the {BULK_MESSAGES} subjects", len(subjects)):
            return
        want = {seq for seq, i in subjects.items() if i % BULK_EVERY == 0}
        t0 = time.monotonic()
        tagged, untagged = a.command(f"SEARCH BODY {BULK_NEEDLE}")
        alone = time.monotonic() - t0
        line = search_line(untagged) or ""
        got = {int(x) for x in line.split()[2:] if x.isdigit()}
        checks.check(imap_tagged_ok(tagged) and got == want,
                     f"SEARCH BODY {BULK_NEEDLE} over {BULK_MESSAGES} messages -> the {len(want)} that hold it",
                     (tagged, sorted(got ^ want)[:10]))
        checks.note(f"BODY search over {BULK_MESSAGES} messages alone: {alone:.3f} s")
        tagged, untagged = a.command(f"UID SEARCH BODY {BULK_NEEDLE}")
        uids = fetch_numbers(a, "UID") or {}
        line = search_line(untagged) or ""
        checks.check(imap_tagged_ok(tagged) and {int(x) for x in line.split()[2:]} == {uids.get(n) for n in want},
                     f"UID SEARCH BODY {BULK_NEEDLE} -> their UIDs", tagged)
        tagged, line = esearch(a, f"SEARCH RETURN (COUNT MIN) BODY {BULK_NEEDLE}")
        checks.check(imap_tagged_ok(tagged) and line == f'* ESEARCH (TAG "es1") MIN {min(want)} COUNT {len(want)}',
                     f"SEARCH RETURN (COUNT MIN) BODY {BULK_NEEDLE} -> MIN {min(want)} COUNT {len(want)}", line)

        # Another session's NOOP while the search runs.
        sent, dispatched = start_search(a, log, "a1")
        checks.check(dispatched, "the server dispatched the SEARCH (its debug line is in the log)")
        tagged, _ = b.command("NOOP")
        noop_at = time.monotonic() - sent
        search_pending = not readable(a)
        tagged_a, untagged = a.read_until_tagged("a1")
        search_at = time.monotonic() - sent
        checks.note(f"while the SEARCH ran: the other session's NOOP answered after {noop_at:.3f} s, "
                    f"the SEARCH after {search_at:.3f} s")
        checks.check(imap_tagged_ok(tagged) and search_pending,
                     "another session's NOOP gets its OK before the running SEARCH's tagged reply", tagged)
        line = search_line(untagged) or ""
        checks.check(imap_tagged_ok(tagged_a) and {int(x) for x in line.split()[2:]} == want,
                     "... and that SEARCH answers the same messages", tagged_a)

        # Commands pipelined behind a running search wait for it, and run in order.
        a.send(f"p1 SEARCH BODY {BULK_NEEDLE}\r\np2 NOOP\r\np3 SEARCH RETURN (COUNT) BODY {BULK_NEEDLE}\r\n")
        tagged1, untagged1 = a.read_until_tagged("p1")
        tagged2, untagged2 = a.read_until_tagged("p2")
        tagged3, untagged3 = a.read_until_tagged("p3")
        line1, line3 = search_line(untagged1) or "", search_line(untagged3, "ESEARCH") or ""
        checks.check(imap_tagged_ok(tagged1) and imap_tagged_ok(tagged2) and imap_tagged_ok(tagged3) and
                     not untagged2 and {int(x) for x in line1.split()[2:]} == want and
                     line3.endswith(f"COUNT {len(want)}"),
                     "SEARCH, NOOP, SEARCH pipelined in one write: answered in order, each complete",
                     (tagged1, tagged2, tagged3, line3))

        # An expunge by the other session while the search runs: no EXPUNGE before the SEARCH's OK.
        sent, dispatched = start_search(a, log, "a2")
        tagged1, _ = b.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        tagged2, untagged_b = b.command("EXPUNGE")
        during = not readable(a)
        checks.check(imap_tagged_ok(tagged1) and imap_tagged_ok(tagged2) and b"* 1 EXPUNGE" in untagged_b,
                     "the other session expunges message 1 meanwhile", (tagged1, tagged2))
        checks.note("that EXPUNGE completed " + ("while the SEARCH was still running" if during else
                                                 "after the SEARCH had answered"))
        tagged_a, untagged = a.read_until_tagged("a2")
        line = search_line(untagged) or ""
        checks.check(imap_tagged_ok(tagged_a) and {int(x) for x in line.split()[2:]} == want,
                     "SEARCH answers from the snapshot it began with (message 1 still numbered 1)", line[:80])
        checks.check(not any(b"EXPUNGE" in u for u in untagged),
                     "no EXPUNGE response during SEARCH (RFC 3501 7.4.1)", untagged[:5])
        tagged_a, untagged = a.command("NOOP")
        checks.check(imap_tagged_ok(tagged_a) and b"* 1 EXPUNGE" in untagged, "the next NOOP brings * 1 EXPUNGE",
                     untagged[:5])
        shifted = {n - 1 for n in want if n > 1}
        tagged_a, untagged = a.command(f"SEARCH BODY {BULK_NEEDLE}")
        line = search_line(untagged) or ""
        checks.check(imap_tagged_ok(tagged_a) and {int(x) for x in line.split()[2:]} == shifted,
                     f"a new SEARCH answers the {len(shifted)} shifted numbers", line[:80])
    finally:
        a.close()
        b.close()
    return want


def test_drop_mid_search(checks, d, log, want):
    since = log.mark()
    for round_ in range(3):
        c = raw_session(d)
        _, dispatched = start_search(c, log, "c1")
        # RST instead of FIN: the server sees the connection die at once.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
        checks.check(dispatched, f"drop {round_ + 1}: the SEARCH was dispatched, then the client reset the "
                     "connection")
    gone = log.wait_for(b"event=disconnect", since, count=3, timeout=10)
    checks.check(d.alive() and gone, "ternd still running after three clients dropped mid-search", d.stderr_tail())
    s = raw_session(d)
    try:
        tagged, untagged = s.command(f"SEARCH BODY {BULK_NEEDLE}")
        line = search_line(untagged) or ""
        checks.check(imap_tagged_ok(tagged) and {int(x) for x in line.split()[2:]} == want,
                     "a new session's BODY search after the drops answers correctly", line[:80])
    finally:
        s.close()


def test_shutdown_mid_search(checks, d, log, want):
    s = raw_session(d)
    try:
        _, dispatched = start_search(s, log, "d1")
        d.proc.send_signal(signal.SIGTERM)
        tagged, untagged = s.read_until_tagged("d1")
        line = search_line(untagged) or ""
        checks.check(dispatched and imap_tagged_ok(tagged) and {int(x) for x in line.split()[2:]} == want,
                     "SIGTERM while a SEARCH runs: the search still answers", (tagged, line[:80]))
        try:
            bye = s.response().decode(errors="replace")
        except (OSError, ConnectionError) as exc:
            bye = repr(exc)
        checks.check(bye.startswith("* BYE"), "... then * BYE", bye)
    finally:
        s.close()


def run_bulk(checks):
    with Daemon("imap-search-bulk", imap=True, options=["log.level=debug"]) as d:
        if not harness.start_daemon(checks, d):
            return
        log = LogFollower(d)
        t0 = time.monotonic()
        n = bulk_deliver(d, BULK_MESSAGES)
        checks.check(n == BULK_MESSAGES, f"SMTP in: {BULK_MESSAGES} messages of ~8 KB accepted "
                     f"({time.monotonic() - t0:.1f} s)", n)
        want = checks.guard("concurrency tests ran", test_concurrency, checks, d, log)
        if want:
            shifted = {x - 1 for x in want if x > 1}
            checks.guard("drop tests ran", test_drop_mid_search, checks, d, log, shifted)
            checks.guard("shutdown test ran", test_shutdown_mid_search, checks, d, log, shifted)
        status = d.stop()
        text = d.stderr_text()
        checks.check(status == 0, "ternd exits with status 0", f"exit status {status}\n" + d.stderr_tail())
        checks.check("Sanitizer" not in text and "runtime error" not in text,
                     "no sanitizer report in ternd's output",
                     "\n".join(l for l in text.splitlines() if "Sanitizer" in l or "runtime error" in l)[:2000])
        checks.check("leaked-at-exit" not in text, "no IMAP session left over at exit")


def run(checks):
    with Daemon("imap-search", imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        msgs = corpus()
        for name, msg in msgs:
            checks.check(smtp_deliver(d, msg), f"SMTP in: {name} message accepted")
        for _ in range(50):
            if d.mail_count(ALICE) >= len(msgs):
                break
            time.sleep(0.1)
        if not checks.check(d.mail_count(ALICE) == len(msgs), "six messages in alice's INBOX"):
            return
        checks.guard("flags set", set_flags, checks, d)
        uids = checks.guard("table searches ran", test_table, checks, d) or {}
        checks.guard("keyword searches ran", test_keywords, checks, d)
        checks.guard("MODSEQ searches ran", test_modseq, checks, d)
        checks.guard("ESEARCH tests ran", test_esearch, checks, d, uids)
        checks.guard("error tests ran", test_errors, checks, d)
        checks.check(d.alive(), "ternd still running after every search")
        status = d.stop()
        checks.check(status == 0, "SIGTERM: ternd exits with status 0", f"exit status {status}\n" + d.stderr_tail())
    run_bulk(checks)


if __name__ == "__main__":
    harness.main_guard(run)
