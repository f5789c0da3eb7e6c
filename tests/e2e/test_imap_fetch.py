#!/usr/bin/env python3
"""End-to-end: IMAP FETCH of message structure and body sections (issue 5) against a real ternd.

Messages go in over SMTP (DATA through smtplib for CRLF mail, BDAT for bare-LF mail and 8-bit headers).
What is checked, each against the bytes ternd stored (`ternd mail cat`) converted to wire form (bare LF
as CRLF):
- every section form: BODY[] HEADER TEXT, part numbers nested to any depth (1.2, 3.1, 2.HEADER /
  2.TEXT / 2.1 of a message/rfc822 part, 1 of a non-multipart message), MIME, HEADER.FIELDS (list),
  HEADER.FIELDS.NOT (list), RFC822, RFC822.HEADER, RFC822.TEXT, a part that does not exist (empty);
- partials <o.n> on the wire form, past the end, and the response names (BODY[1.1]<2>, field names
  upper-cased);
- BODYSTRUCTURE / BODY / ENVELOPE strings byte for byte for multipart/alternative with attachments and
  a forwarded message, 8-bit headers (literals), bare-LF multipart, a header-only message;
- the same FETCH against Dovecot (Debian dovecot-imapd, run in preauth mode on a copy of each stored
  message) gives byte-identical responses for every item (skipped when Dovecot is not installed);
- a 3 MB attachment streamed through imaplib is byte-exact;
- BODY[...] sets \\Seen (FLAGS in the response), BODY.PEEK does not; macros ALL, FAST, FULL;
  MODSEQ and (CHANGEDSINCE n); BAD for invalid sections, unknown items, nested lists.
"""

import imaplib
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, Daemon, RawIMAP  # noqa: E402

REMOTE = "sender@remote.test"
DOVECOT_IMAP = "/usr/lib/dovecot/imap"


def crlf(data):
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def split_header(stored):
    """(header with its blank line, body) of a stored message."""
    m = re.search(rb"\r?\n\r?\n", stored)
    if not m:
        return stored, b""
    return stored[:m.end()], stored[m.end():]


def alt_message(mid):
    """multipart/mixed: (1) multipart/alternative text+html, (2) a PDF attachment, (3) a forwarded
    message/rfc822 that is itself multipart. CRLF line ends, 8-bit text part."""
    return (f"From: Alice Example <alice@example.com>\r\nTo: bob@example.com, Carol <carol@example.com>\r\n"
            f"Cc: team: dave@example.com, erin@example.com;\r\nSubject: quarterly report\r\n"
            f"Date: Tue, 2 Jan 2024 09:00:00 +0100\r\nMessage-ID: <{mid}>\r\nIn-Reply-To: <prev@example.com>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
            "This is a multi-part message.\r\n"
            "--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
            "--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            "Hello \u00e9t\u00e9\r\nsecond line\r\n"
            "--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n--inner--\r\n"
            "--outer\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\n"
            "Content-Disposition: attachment; filename=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Language: de, en\r\nContent-Location: r.pdf\r\nContent-ID: <pdf@x>\r\n\r\nJVBERi0xLjQK\r\n"
            "--outer\r\nContent-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
            "From: fw@example.org\r\nSubject: fw\r\nContent-Type: multipart/mixed; boundary=fwb\r\n\r\n"
            "--fwb\r\n\r\nfw text\r\n--fwb\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--fwb--\r\n"
            "--outer--\r\nepilogue\r\n").encode()


def barelf_message(mid):
    """Bare LF throughout: a multipart with a nested message/rfc822 and no final close delimiter."""
    return (f"From: Bob <bob@example.com>\nTo: alice@example.test\nSubject: bare LF\nMessage-ID: <{mid}>\n"
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\npreamble\n"
            "--b1\n\nfirst part\nline two\n"
            "--b1\nContent-Type: message/rfc822\n\nSubject: inner\nFrom: in@example.com\n\ninner body\n"
            "--b1\nContent-Type: text/plain; charset=us-ascii\n\nlast part without close\n").encode()


def eightbit_message(mid):
    return ("From: J\u00f6rg M\u00fcller <joerg@example.de>\nTo: alice@example.test\n"
            "Subject: Gr\u00fc\u00dfe aus K\u00f6ln\n"
            f"Message-ID: <{mid}>\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            "Sch\u00f6ne Gr\u00fc\u00dfe\n").encode()


def header_only_message(mid):
    return f"From: h@example.com\nSubject: header only\nMessage-ID: <{mid}>\n".encode()


def big_message(mid):
    import base64
    payload = crlf(base64.encodebytes(os.urandom(2 * 1024 * 1024)))
    return (f"From: big@example.com\r\nSubject: big\r\nMessage-ID: <{mid}>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=BIG\r\n\r\n--BIG\r\n\r\nsee attachment\r\n"
            "--BIG\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() \
        + payload + b"--BIG--\r\n"


def bdat_deliver(d, msg):
    with harness.RawSMTP(d.mx_port, timeout=30) as s:
        s.ehlo()
        if s.cmd(f"MAIL FROM:<{REMOTE}>")[0] != 250 or s.cmd(f"RCPT TO:<{ALICE}>")[0] != 250:
            return False
        s.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        code, _ = s.reply()
        return code == 250


def smtp_deliver(d, msg):
    with smtplib.SMTP("127.0.0.1", d.mx_port, timeout=30) as c:
        c.ehlo()
        return c.sendmail(REMOTE, [ALICE], msg, mail_options=["BODY=8BITMIME"]) == {}


def parse_items(resp):
    """{name: value bytes} of the FETCH items in one untagged response (literals inlined)."""
    m = re.match(rb"\* \d+ FETCH \(", resp)
    rest = resp[m.end():-1]
    items, i = {}, 0
    while i < len(rest):
        if rest[i:i + 1] == b" ":
            i += 1
            continue
        j = i
        depth = 0
        while j < len(rest) and (rest[j:j + 1] != b" " or depth > 0):
            depth += rest[j:j + 1] == b"["
            depth -= rest[j:j + 1] == b"]"
            j += 1
        name = rest[i:j]
        i = j + 1
        if rest[i:i + 1] == b"{":
            k = rest.index(b"}\r\n", i)
            n = int(rest[i + 1:k])
            items[name] = rest[k + 3:k + 3 + n]
            i = k + 3 + n
        else:
            start, depth = i, 0
            while i < len(rest):
                c = rest[i:i + 1]
                if c == b"\"":
                    i += 1
                    while rest[i:i + 1] != b"\"":
                        i += 2 if rest[i:i + 1] == b"\\" else 1
                elif c == b"{":
                    k = rest.index(b"}\r\n", i)
                    i = k + 3 + int(rest[i + 1:k]) - 1
                elif c == b"(":
                    depth += 1
                elif c == b")":
                    depth -= 1
                elif c == b" " and depth == 0:
                    break
                i += 1
            items[name] = rest[start:i]
    return items


def fetch_one(s, uid, items):
    tagged, untagged = s.command(f"UID FETCH {uid} {items}")
    resp = [u for u in untagged if re.match(rb"\* \d+ FETCH \(", u) and b"UID %d" % uid in u]
    return tagged, resp[0] if resp else b""


class DovecotReference:
    """Dovecot's imap binary in preauth mode on a private maildir holding one message at a time."""

    def __init__(self, tmp):
        self.dir = Path(tmp) / "dovecot"
        self.dir.mkdir()
        os.chmod(tmp, 0o755)
        os.chmod(self.dir, 0o777)
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(f"mail_location = maildir:{self.dir}/home/Maildir\nlog_path = {self.dir}/log\n"
                             f"base_dir = {self.dir}/run\nstate_dir = {self.dir}/state\nssl = no\n"
                             "mail_uid = nobody\nmail_gid = nogroup\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n")

    def fetch(self, data, items):
        home = self.dir / "home"
        shutil.rmtree(home, ignore_errors=True)
        for sub in ("cur", "new", "tmp"):
            (home / "Maildir" / sub).mkdir(parents=True)
        (home / "Maildir" / "cur" / "1.M1.tern:2,").write_bytes(data)
        subprocess.run(["chown", "-R", "nobody:nogroup", str(home)], check=True)
        cmds = f"a SELECT INBOX\r\nb FETCH 1 {items}\r\nc LOGOUT\r\n".encode()
        env = dict(os.environ, USER="nobody", HOME=str(home))
        out = subprocess.run([DOVECOT_IMAP, "-c", str(self.conf)], input=cmds, env=env,
                             capture_output=True, timeout=30).stdout
        m = re.search(rb"\* 1 FETCH \((.*)\)\r\nb OK", out, re.S)
        return m.group(1) if m else None


SECTIONS = ["", "HEADER", "TEXT", "1", "1.MIME", "1.1", "1.2", "1.1.MIME", "2", "2.MIME", "2.HEADER",
            "2.TEXT", "2.1", "2.1.MIME", "2.2", "3", "3.MIME", "3.HEADER", "3.TEXT", "3.1", "3.2", "3.2.MIME",
            "4", "1.HEADER", "HEADER.FIELDS (From To Subject)", "HEADER.FIELDS.NOT (Received Return-Path)",
            "3.HEADER.FIELDS (subject)", "2.HEADER.FIELDS.NOT (From)"]


def test_sections(checks, d, s, uids, stored):
    # The alt message: expected slices written out from how it was built.
    uid, data = uids["alt"], stored["alt"]
    hdr, body = split_header(data)
    want = {
        "": crlf(data), "HEADER": crlf(hdr), "TEXT": crlf(body),
        "1.1": "Hello \u00e9t\u00e9\r\nsecond line".encode(), "1.2": b"<p>Hello</p>",
        "1.1.MIME": b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        "2": b"JVBERi0xLjQK",
        "3.HEADER": b"From: fw@example.org\r\nSubject: fw\r\nContent-Type: multipart/mixed; boundary=fwb\r\n\r\n",
        # The close delimiter's line end stays in: the boundary that follows has no line end of its own.
        "3.TEXT": b"--fwb\r\n\r\nfw text\r\n--fwb\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--fwb--\r\n",
        "3.1": b"fw text", "3.2": b"PNGDATA", "3.2.MIME": b"Content-Type: image/png\r\n\r\n",
        "3.MIME": b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n",
        "4": b"", "1.HEADER": b"",
        "3.HEADER.FIELDS (subject)": b"Subject: fw\r\n\r\n",
    }
    items = "(" + " ".join(f"BODY.PEEK[{sec}]" for sec in want) + ")"
    tagged, resp = fetch_one(s, uid, items)
    got = parse_items(resp)
    checks.check(tagged.split()[1] == "OK", f"UID FETCH of {len(want)} sections: OK", tagged)
    for sec, w in want.items():
        name = f"BODY[{sec.upper()}]".encode()
        checks.check(got.get(name) == w, f"alt message BODY[{sec}]: {len(w)} bytes as stored",
                     f"got {got.get(name)!r:.200} want {w!r:.200}")
    # HEADER.FIELDS: the fields in the header's order, with the blank line; names echoed upper-cased.
    tagged, resp = fetch_one(s, uid, "(BODY.PEEK[HEADER.FIELDS (subject From)] BODY.PEEK[HEADER.FIELDS.NOT "
                                     "(Received Return-Path Date Message-ID In-Reply-To MIME-Version Content-Type)])")
    got = parse_items(resp)
    checks.check(got.get(b"BODY[HEADER.FIELDS (SUBJECT FROM)]") ==
                 b"From: Alice Example <alice@example.com>\r\nSubject: quarterly report\r\n\r\n",
                 "HEADER.FIELDS (subject From): From and Subject in header order, names upper-cased in the reply",
                 repr(resp[:300]))
    checks.check(got.get(b"BODY[HEADER.FIELDS.NOT (RECEIVED RETURN-PATH DATE MESSAGE-ID IN-REPLY-TO MIME-VERSION "
                         b"CONTENT-TYPE)]") ==
                 b"From: Alice Example <alice@example.com>\r\nTo: bob@example.com, Carol <carol@example.com>\r\n"
                 b"Cc: team: dave@example.com, erin@example.com;\r\nSubject: quarterly report\r\n\r\n",
                 "HEADER.FIELDS.NOT: every other field", repr(resp[:400]))
    # Partials on the wire form.
    tagged, resp = fetch_one(s, uid, "(BODY.PEEK[1.1]<2.5> BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<100000.5> "
                                     "BODY.PEEK[3.TEXT]<7.100>)")
    got = parse_items(resp)
    checks.check(got.get(b"BODY[1.1]<2>") == "llo \u00e9".encode()[:5], "BODY[1.1]<2.5>: 5 octets from 2, named BODY[1.1]<2>",
                 repr(resp[:200]))
    checks.check(got.get(b"BODY[]<0>") == crlf(data)[:10], "BODY[]<0.10>: the first 10 octets")
    checks.check(got.get(b"BODY[TEXT]<100000>") == b"", "a partial past the end is empty")
    checks.check(got.get(b"BODY[3.TEXT]<7>") == want["3.TEXT"][7:107], "BODY[3.TEXT]<7.100> of a nested message")
    # RFC822 forms.
    tagged, resp = fetch_one(s, uid, "(RFC822.HEADER RFC822.SIZE)")
    got = parse_items(resp)
    checks.check(got.get(b"RFC822.HEADER") == crlf(hdr), "RFC822.HEADER is the header in wire form")
    checks.check(got.get(b"RFC822.SIZE") == str(len(crlf(data))).encode(), "RFC822.SIZE is the wire size")

    # Bare LF message: sections converted to CRLF, offsets exact.
    uid, data = uids["barelf"], stored["barelf"]
    hdr, body = split_header(data)
    want = {
        "": crlf(data), "HEADER": crlf(hdr), "TEXT": crlf(body), "1": b"first part\r\nline two",
        "1.MIME": b"\r\n", "2": b"Subject: inner\r\nFrom: in@example.com\r\n\r\ninner body",
        "2.HEADER": b"Subject: inner\r\nFrom: in@example.com\r\n\r\n", "2.TEXT": b"inner body", "2.1": b"inner body",
        "2.1.MIME": b"Subject: inner\r\nFrom: in@example.com\r\n\r\n",
        "3": b"last part without close\r\n", "3.MIME": b"Content-Type: text/plain; charset=us-ascii\r\n\r\n",
        "2.HEADER.FIELDS (FROM)": b"From: in@example.com\r\n\r\n",
    }
    items = "(" + " ".join(f"BODY.PEEK[{sec}]" for sec in want) + ")"
    tagged, resp = fetch_one(s, uid, items)
    got = parse_items(resp)
    for sec, w in want.items():
        checks.check(got.get(f"BODY[{sec}]".encode()) == w, f"bare-LF message BODY[{sec}]: CRLF on the wire",
                     f"got {got.get(f'BODY[{sec}]'.encode())!r:.200} want {w!r:.200}")
    # Header-only: BODY[1] and TEXT are empty, HEADER is everything.
    uid, data = uids["hdronly"], stored["hdronly"]
    tagged, resp = fetch_one(s, uid, "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODYSTRUCTURE)")
    got = parse_items(resp)
    checks.check(got.get(b"BODY[HEADER]") == crlf(data) and got.get(b"BODY[TEXT]") == b""
                 and got.get(b"BODY[1]") == b"", "header-only message: HEADER is all of it, TEXT and 1 empty")
    checks.check(got.get(b"BODYSTRUCTURE") == b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
                 "header-only message: BODYSTRUCTURE of an empty text/plain", repr(got.get(b"BODYSTRUCTURE")))


def test_structure(checks, d, s, uids, stored):
    tagged, resp = fetch_one(s, uids["alt"], "(BODYSTRUCTURE)")
    want = (b'BODYSTRUCTURE ((("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 24 1 NIL NIL NIL NIL)'
            b'("text" "html" ("charset" "utf-8") NIL NIL "7bit" 12 0 NIL NIL NIL NIL) "alternative" ("boundary" "inner") '
            b'NIL NIL NIL)("application" "pdf" ("name" "r.pdf") "<pdf@x>" NIL "base64" 12 NIL ("attachment" '
            b'("filename" "r.pdf")) ("de" "en") "r.pdf")("message" "rfc822" NIL NIL "forwarded" "7bit" 152 '
            b'(NIL "fw" ((NIL NIL "fw" "example.org")) ((NIL NIL "fw" "example.org")) ((NIL NIL "fw" "example.org")) '
            b'NIL NIL NIL NIL NIL) (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 0 NIL NIL NIL NIL)'
            b'("image" "png" NIL NIL NIL "7bit" 7 NIL NIL NIL NIL) "mixed" ("boundary" "fwb") NIL NIL NIL) 12 '
            b'NIL NIL NIL NIL) "mixed" ("boundary" "outer") NIL NIL NIL)')
    checks.check(want in resp,
                 "BODYSTRUCTURE of multipart/alternative + attachment + forwarded multipart message, byte for byte",
                 repr(resp))
    tagged, resp = fetch_one(s, uids["alt"], "(ENVELOPE)")
    mid = re.search(rb"Message-ID: <([^>]+)>", stored["alt"]).group(1)
    want = (b'ENVELOPE ("Tue, 2 Jan 2024 09:00:00 +0100" "quarterly report" (("Alice Example" NIL "alice" "example.com")) '
            b'(("Alice Example" NIL "alice" "example.com")) (("Alice Example" NIL "alice" "example.com")) '
            b'((NIL NIL "bob" "example.com")("Carol" NIL "carol" "example.com")) ((NIL NIL "team" NIL)'
            b'(NIL NIL "dave" "example.com")(NIL NIL "erin" "example.com")(NIL NIL NIL NIL)) NIL "<prev@example.com>" '
            b'"<' + mid + b'>")')
    checks.check(want in resp, "ENVELOPE: sender/reply-to default to from, a group in Cc", repr(resp))
    tagged, resp = fetch_one(s, uids["eightbit"], "(ENVELOPE BODY)")
    subj = "Gr\u00fc\u00dfe aus K\u00f6ln".encode()
    name = "J\u00f6rg M\u00fcller".encode()
    checks.check(b"{%d}\r\n%s" % (len(subj), subj) in resp and b"(({%d}\r\n%s NIL \"joerg\" \"example.de\"))" % (len(name), name) in resp,
                 "8-bit Subject and From name come raw, as literals", repr(resp))
    checks.check(b'BODY ("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 17 1)' in resp,
                 "BODY of the 8-bit message", repr(resp))
    tagged, resp = fetch_one(s, uids["barelf"], "(BODY)")
    checks.check(b'BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 20 1)("message" "rfc822" NIL NIL NIL '
                 b'"7bit" 50 (NIL "inner" ((NIL NIL "in" "example.com")) ((NIL NIL "in" "example.com")) '
                 b'((NIL NIL "in" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL '
                 b'"7bit" 10 0) 3)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 25 1) "mixed")' in resp,
                 "BODY of the bare-LF multipart: sizes counted in CRLF", repr(resp))


def test_dovecot(checks, d, s, uids, stored, tmp):
    if not (os.path.exists(DOVECOT_IMAP) and os.geteuid() == 0):
        checks.skip("the same FETCH against Dovecot", "needs root and Debian dovecot-imapd",
                    documented="dovecot-unavailable")
        return
    ref = DovecotReference(tmp)
    items = ["ENVELOPE", "BODYSTRUCTURE", "BODY"] + [f"BODY.PEEK[{sec}]" for sec in SECTIONS]
    for name in ("alt", "barelf", "eightbit", "hdronly"):
        theirs = ref.fetch(stored[name], "(" + " ".join(items) + ")")
        tagged, ours = fetch_one(s, uids[name], "(" + " ".join(items) + ")")
        if not checks.check(theirs is not None, f"Dovecot answered the FETCH for the {name} message"):
            continue
        ours = re.sub(rb"^\* \d+ FETCH \(UID \d+ ", b"", ours)[:-1]
        a, b = parse_items(b"* 1 FETCH (" + theirs + b")"), parse_items(b"* 1 FETCH (" + ours + b")")
        # One known difference: for a header with no blank line after it (a header-only message)
        # Dovecot's HEADER.FIELDS.NOT leaves the blank line out (its HEADER.FIELDS adds it); ternd
        # always ends a HEADER.FIELDS(.NOT) subset with the blank line, as RFC 3501 describes it.
        if name == "hdronly":
            a = {k: v for k, v in a.items() if b"FIELDS.NOT" not in k}
            b = {k: v for k, v in b.items() if b"FIELDS.NOT" not in k}
        differ = [k.decode() for k in a if a[k] != b.get(k)]
        checks.check(not differ and len(a) == len(b),
                     f"{name} message: {len(a)} FETCH items byte-identical to Dovecot's", f"differ: {differ}")


def test_big(checks, d, uids, stored):
    m = imaplib.IMAP4("127.0.0.1", d.imap_port)
    m.login(ALICE, d.passwords[ALICE])
    m.select("INBOX")
    t0 = time.monotonic()
    typ, data = m.uid("FETCH", str(uids["big"]), "(BODY.PEEK[2] BODY.PEEK[1] BODY.PEEK[2.MIME])")
    parts = {re.search(rb"BODY\[[^\]]*\]", p[0]).group(0): p[1] for p in data if isinstance(p, tuple)}
    raw = stored["big"]
    body2 = raw[raw.index(b"base64\r\n\r\n") + 10:raw.rindex(b"\r\n--BIG--")]
    checks.check(typ == "OK" and parts.get(b"BODY[2]") == body2,
                 f"imaplib: a {len(body2)}-byte attachment streamed byte-exact ({time.monotonic() - t0:.2f}s)")
    checks.check(parts.get(b"BODY[1]") == b"see attachment", "imaplib: BODY.PEEK[1] of the same message")
    checks.check(parts.get(b"BODY[2.MIME]") ==
                 b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                 "imaplib: BODY.PEEK[2.MIME]")
    # \Seen: BODY[...] sets it and reports FLAGS; BODY.PEEK does not.
    typ, data = m.uid("FETCH", str(uids["eightbit"]), "(FLAGS)")
    checks.check(b"\\Seen" not in data[0], "before: the message is not \\Seen", repr(data))
    typ, data = m.uid("FETCH", str(uids["eightbit"]), "(BODY[1])")
    flat = b"".join(p[0] if isinstance(p, tuple) else p for p in data)
    checks.check(b"FLAGS (\\Seen" in flat, "BODY[1] (not PEEK) sets \\Seen and reports FLAGS", repr(flat))
    # Macros.
    typ, data = m.uid("FETCH", str(uids["hdronly"]), "FAST")
    checks.check(typ == "OK" and all(w in data[0] for w in (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"))
                 and b"ENVELOPE" not in data[0], "FAST: FLAGS INTERNALDATE RFC822.SIZE", repr(data))
    typ, data = m.uid("FETCH", str(uids["hdronly"]), "ALL")
    checks.check(typ == "OK" and b"ENVELOPE (" in data[0] and b"BODY (" not in data[0], "ALL adds ENVELOPE", repr(data))
    typ, data = m.uid("FETCH", str(uids["hdronly"]), "FULL")
    checks.check(typ == "OK" and b"ENVELOPE (" in data[0] and b"BODY (" in data[0], "FULL adds ENVELOPE and BODY",
                 repr(data))
    m.logout()


def test_condstore_and_errors(checks, d, s, uids):
    tagged, untagged = s.command("FETCH 1:* (MODSEQ)")
    mods = [int(x) for u in untagged for x in re.findall(rb"MODSEQ \((\d+)\)", u)]
    checks.check(tagged.split()[1] == "OK" and len(mods) == len(uids) and all(x > 0 for x in mods),
                 "FETCH MODSEQ: one positive MODSEQ per message", repr(untagged[:3]))
    if mods:
        top = max(mods)
        tagged, untagged = s.command(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {top - 1})")
        got = [u for u in untagged if b"FETCH" in u]
        checks.check(tagged.split()[1] == "OK" and len(got) == sum(1 for x in mods if x > top - 1)
                     and all(b"MODSEQ (" in u for u in got),
                     f"(CHANGEDSINCE {top - 1}): only the messages changed since, with MODSEQ", repr(untagged))
        tagged, untagged = s.command(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {top})")
        checks.check(tagged.split()[1] == "OK" and not [u for u in untagged if b"FETCH (" in u],
                     "(CHANGEDSINCE highest): nothing", repr(untagged))
    for bad in ("BODY[0]", "BODY[1.0]", "BODY[MIME]", "BODY[TEXT.MIME]", "BODY[1.MIME.TEXT]",
                "BODY[HEADER.FIELDS ()]", "BODY[HEADER.FIELDS]", "BODY[HEADER.FIELDS.NOT (A]", "BODY[1.]",
                "BODY[FOO]", "FOO", "(FLAGS (UID))", "BODY.PEEK", "RFC822[1]", "(ALL)", "(FLAGS) (CHANGEDSINCE x)",
                "(FLAGS) (UNKNOWN 1)", "(" * 40 + "FLAGS" + ")" * 40):
        tagged, _ = s.command(f"FETCH 1 {bad}")
        checks.check(tagged.split()[1] == "BAD", f"FETCH 1 {bad[:50]}: BAD", tagged)
    tagged, _ = s.command("NOOP")
    checks.check(tagged.split()[1] == "OK", "the session still works after the BADs", tagged)


def main():
    checks = harness.Checks("imap_fetch")
    with tempfile.TemporaryDirectory(prefix="tern-fetch-") as tmp, Daemon("imap-fetch", imap=True) as d:
        d.start()
        mids, uids, stored = {}, {}, {}
        for name, make, way in (("alt", alt_message, "data"), ("barelf", barelf_message, "bdat"),
                                ("eightbit", eightbit_message, "bdat"), ("hdronly", header_only_message, "bdat"),
                                ("big", big_message, "data")):
            mids[name] = harness.unique_id(name)
            msg = make(mids[name])
            ok = smtp_deliver(d, msg) if way == "data" else bdat_deliver(d, msg)
            checks.check(ok, f"SMTP in ({way.upper()}): the {name} message accepted")
            entry = d.find_message(ALICE, mids[name])
            if entry:
                uids[name] = int(entry["uid"])
                stored[name] = d.mail_cat(ALICE, uids[name])
        if not checks.check(len(uids) == 5, "all five messages stored"):
            return checks.finish()
        s = RawIMAP(d.imap_port, timeout=30)
        s.login(ALICE, d.passwords[ALICE])
        s.command("SELECT INBOX")
        checks.guard("sections", test_sections, checks, d, s, uids, stored)
        checks.guard("structure", test_structure, checks, d, s, uids, stored)
        checks.guard("dovecot", test_dovecot, checks, d, s, uids, stored, tmp)
        checks.guard("imaplib", test_big, checks, d, uids, stored)
        checks.guard("condstore and errors", test_condstore_and_errors, checks, d, s, uids)
        s.close()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
