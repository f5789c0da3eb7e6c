#!/usr/bin/env python3
"""End-to-end: the `tern` client against a real ternd on loopback (issue 4, Tests).

A ternd from the harness (alice, bob, carol; ally -> alice). The client's accounts point at its submission
port (STARTTLS) and its POP3S port, trusting the daemon's self-signed certificate with --ca-file:
- accounts: add (password on stdin), list --json, the stored password in a 0600 file and not printed by
  `account show`, `account test` reports ok;
- sending as alice to bob: plain text, HTML only, text + HTML (multipart/alternative), attachments
  (multipart/mixed, base64, a random binary file with all 256 byte values, a PNG, an RFC 2231 non-ASCII file
  name), a non-ASCII subject and display names (RFC 2047 in the headers, decoded back by list/show), Bcc
  (the Bcc recipient gets it, no stored copy has a Bcc header), `--raw` from stdin; every message has
  Date and Message-ID, the local Sent copy is exactly what ternd stored after its trace headers;
- fetching as bob over POP3S: every message in bob's maildrop arrives with the bytes `ternd mail cat` gives;
  a second fetch downloads nothing; list --json fields; show (text part, HTML-only rendered without tags,
  decoded names); save-attachments bit-identical; search by subject word, body word, subject:, from:,
  has:attachment, before:/after:, with negative controls;
- errors: a wrong password fails with exit 1 and a clear message (fetch, send, account test) and changes
  nothing; --insecure works but warns; without --ca-file the self-signed certificate is refused;
- `tern shell` with piped commands (list, show 1, quit);
- `tern fetch --delete` empties the maildrop and the local copies remain;
- an interrupted fetch (SIGKILL while downloading 300 messages) followed by a second fetch leaves every
  message exactly once.
"""

import email
import email.policy
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, ALICE_ALIAS, BOB, Daemon, start_daemon, stored_matches  # noqa: E402
import client_helpers as ch  # noqa: E402
from client_helpers import Tern, crlf, fetch_counts, field_text, has_header, header_section, mentions  # noqa: E402

CAROL = "carol@example.test"
CAROL_PW = "carol-Secret-3"
REMOTE = "sender@remote.test"
ALICE_NAME = "Älice Ünïcode 爱丽丝"
BOB_NAME = "Böb 鲍勃"
AUTH_WORDS = ("auth", "login", "password", "credential", "535", "-err", "denied", "refused", "rejected")

INTERRUPT_COUNT = 300


def tiny_png():
    """A valid 1x1 PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def message_id_of(raw):
    m = re.search(rb"(?im)^Message-ID:[ \t]*<([^>\r\n]+)>", header_section(raw))
    return m.group(1).decode(errors="replace") if m else None


class Ctx:
    """What the steps share."""

    def __init__(self, checks, d, tmp):
        self.checks = checks
        self.d = d
        self.tmp = tmp
        self.tok = secrets.token_hex(4)
        self.main = Tern(tmp, "main")
        self.sent = {}        # key -> {"subject", "raw" (Sent copy bytes), "mid", "words"}
        self.inbox = {}       # key -> local id of bob's fetched copy
        self.files = {}       # attachment name -> bytes

    def server(self, port):
        return f"localhost:{port}"

    def account_args(self, ca=True, insecure=False):
        args = ["--smtp", self.server(self.d.submission_port), "--smtp-security", "starttls",
                "--pop3", self.server(self.d.pop3s_port), "--pop3-security", "tls"]
        if ca:
            args += ["--ca-file", str(self.d.cert_path)]
        if insecure:
            args += ["--insecure"]
        return args


# ---- accounts --------------------------------------------------------------------------------------
def step_accounts(c):
    checks, t = c.checks, c.main
    r = t.account_add("alice", ALICE, harness.PASSWORDS[ALICE],
                      extra=["--name", ALICE_NAME, "--user", ALICE, "--default"] + c.account_args())
    ok = checks.check(r.rc == 0, "account add alice (submission STARTTLS, POP3S, --ca-file, password on stdin)",
                      r.detail())
    r = t.account_add("bob", BOB, harness.PASSWORDS[BOB], extra=["--name", "Bob"] + c.account_args())
    ok = checks.check(r.rc == 0, "account add bob", r.detail()) and ok
    r = t.run(["account", "list", "--json"])
    names = ""
    try:
        names = field_text(ch.parse_json_any(r.stdout))
    except ValueError:
        pass
    checks.check(r.rc == 0 and "alice" in names and "bob" in names, "account list --json names alice and bob",
                 r.detail())
    r = t.run(["account", "show", "alice"])
    checks.check(r.rc == 0 and ALICE in r.stdout, "account show alice prints its address", r.detail())
    checks.check(harness.PASSWORDS[ALICE] not in r.stdout + r.stderr,
                 "account show does not print the stored password", r.detail())
    holders = []
    for p in t.home.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                if harness.PASSWORDS[ALICE].encode() in p.read_bytes():
                    holders.append(p)
            except OSError:
                pass
    bad = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in holders
           if stat.S_IMODE(p.stat().st_mode) & 0o077}
    checks.check(holders and not bad, "the stored password is only in files of mode 0600",
                 f"files holding it: {[str(p) for p in holders]}; too open: {bad}")
    r = t.run(["account", "test", "alice"], timeout=60)
    lines = (r.stdout + r.stderr).lower().splitlines()
    proto_ok = {p: any(p in l and re.search(r"\bok\b", l) and not re.search(r"error|fail", l) for l in lines)
                for p in ("smtp", "pop3")}
    checks.check(r.rc == 0 and all(proto_ok.values()),
                 "account test alice: exit 0 and reports ok for SMTP and for POP3", r.detail())
    return ok


# ---- sending -------------------------------------------------------------------------------------
def send(c, key, subject, args, words, input_bytes=None, what=None, raw=False):
    """tern send as alice (the default account); records the Sent copy."""
    argv = ["send"] + (["--raw"] if raw else ["--subject", subject]) + args
    r = c.main.run(argv, input_bytes=input_bytes, timeout=90)
    ok = c.checks.check(r.rc == 0, f"send {what or key}: exit 0", r.detail())
    c.sent[key] = {"subject": subject, "raw": None, "mid": None, "words": words, "ok": ok}
    return ok


def find_sent_copies(c):
    """Fills c.sent[*]['raw'] from the local Sent folder."""
    checks = c.checks
    try:
        sent = c.main.list_json("--folder", "Sent")
    except Exception as exc:  # noqa: BLE001
        checks.check(False, "list --folder Sent --json", exc)
        return
    by_subject = {}
    for e in sent:
        by_subject.setdefault(e.get("subject"), []).append(e)
    for key, info in c.sent.items():
        if not info["ok"]:
            continue
        entries = by_subject.get(info["subject"], [])
        if checks.check(len(entries) == 1, f"{key}: exactly one copy in the local Sent folder",
                        f"{len(entries)} with subject {info['subject']!r}; Sent has "
                        f"{[e.get('subject') for e in sent]}"):
            try:
                info["raw"] = c.main.raw(entries[0]["id"])
                info["mid"] = message_id_of(info["raw"])
                info["sent_id"] = entries[0]["id"]
            except Exception as exc:  # noqa: BLE001
                checks.check(False, f"{key}: show --raw of the Sent copy", exc)


def step_send(c):
    checks, tok, tmp = c.checks, c.tok, c.tmp
    files = tmp / "files"
    files.mkdir()
    plain_body = f"Hello Bob,\nthis is the plain one: mango{tok}.\n.leading dot line\n\nAlice\n"
    (files / "plain.txt").write_text(plain_body)
    send(c, "plain", f"plain kiwi{tok}", ["--to", BOB, "--text", files / "plain.txt"], [f"mango{tok}"])

    html = (f"<html><head><title>t</title><style>p {{ color: red; }}</style></head><body>"
            f"<h1>Heading papaya{tok}</h1><p>Fish &amp; Chips with <b>bold{tok}</b> and "
            f"<a href=\"https://example.test/x\">a link</a></p><script>evilScript{tok}()</script>"
            f"<ul><li>first item</li><li>second item</li></ul></body></html>\n")
    (files / "only.html").write_text(html)
    send(c, "html", f"htmlonly lychee{tok}", ["--to", BOB, "--html", files / "only.html"], [f"papaya{tok}"])

    (files / "both.txt").write_text(f"The text part: guava{tok}.\n")
    (files / "both.html").write_text(f"<html><body><p>The HTML part: <i>quince{tok}</i></p></body></html>\n")
    send(c, "both", f"both fig{tok}", ["--to", BOB, "--text", files / "both.txt", "--html", files / "both.html"],
         [f"guava{tok}"])

    binary = bytes(range(256)) + os.urandom(200_000) + bytes(range(255, -1, -1))
    c.files = {"random.bin": binary, "pixel.png": tiny_png(),
               "Prüfbericht Grüße.txt": "Grüße aus Köln\r\nline two\n".encode()}
    for name, data in c.files.items():
        (files / name).write_bytes(data)
    (files / "attach.txt").write_text(f"See the attachments: apricot{tok}.\n")
    args = ["--to", BOB, "--text", files / "attach.txt"]
    for name in c.files:
        args += ["--attach", files / name]
    send(c, "attach", f"attachments melon{tok}", args, [f"apricot{tok}"])

    (files / "intl.txt").write_text(f"Ünïcode body: 你好世界 cherry{tok}\n")
    send(c, "intl", f"Grüße 你好 {tok}", ["--to", f"{BOB_NAME} <{BOB}>", "--text", files / "intl.txt"],
         [f"cherry{tok}"], what="non-ASCII subject and display names")

    (files / "bcc.txt").write_text(f"Blind copy test plum{tok}\n")
    send(c, "bcc", f"bcc damson{tok}", ["--to", BOB, "--bcc", ALICE_ALIAS, "--text", files / "bcc.txt"],
         [f"plum{tok}"], what="with --bcc")

    c.raw_mid = f"raw.{tok}@e2e.test"
    raw = (f"From: Alice <{ALICE}>\nTo: Bob <{BOB}>\nSubject: raw lime{tok}\n"
           f"Date: Mon, 24 Nov 2025 12:00:00 +0000\nMessage-ID: <{c.raw_mid}>\nMIME-Version: 1.0\n"
           f"Content-Type: text/plain; charset=us-ascii\n\nRaw body peach{tok}\n.dot line\n..two dots\nend\n").encode()
    c.raw_input = raw
    send(c, "raw", f"raw lime{tok}", [], [f"peach{tok}"], input_bytes=raw, what="--raw from stdin (LF endings)",
         raw=True)

    find_sent_copies(c)
    check_sent_structure(c)
    check_server_copies(c)


def check_sent_structure(c):
    checks, tok = c.checks, c.tok
    for key, info in c.sent.items():
        raw = info["raw"]
        if raw is None:
            continue
        head = header_section(raw)
        checks.check(has_header(raw, "Date") and has_header(raw, "Message-ID") and info["mid"],
                     f"{key}: Sent copy has Date and Message-ID", head[:600])
        checks.check(all(b < 0x80 for b in head), f"{key}: header section is 7-bit (RFC 2047 for non-ASCII)",
                     head[:600])
        checks.check(not has_header(raw, "Bcc"), f"{key}: no Bcc header in the Sent copy", head[:600])
    info = c.sent.get("plain")
    if info and info["raw"]:
        m = parse(info["raw"])
        checks.check(m.get_content_type() == "text/plain" and f"mango{tok}" in m.get_content(),
                     "plain: a text/plain message with the body", m.get_content_type())
        checks.check(str(m["From"]).find(ALICE) >= 0 and ALICE_NAME in str(m["From"]),
                     "plain: From has the account's display name and address", m["From"])
    info = c.sent.get("html")
    if info and info["raw"]:
        m = parse(info["raw"])
        body = m.get_body(preferencelist=("html",))
        checks.check(body is not None and f"papaya{tok}" in body.get_content() and m.get_body(("plain",)) is None,
                     "html: an HTML part with the markup and no text part", m.get_content_type())
    info = c.sent.get("both")
    if info and info["raw"]:
        m = parse(info["raw"])
        types = [p.get_content_type() for p in m.iter_parts()] if m.is_multipart() else []
        checks.check(m.get_content_type() == "multipart/alternative" and types == ["text/plain", "text/html"],
                     "both: multipart/alternative with text/plain then text/html",
                     f"{m.get_content_type()} {types}")
    info = c.sent.get("attach")
    if info and info["raw"]:
        m = parse(info["raw"])
        atts = {p.get_filename(): p for p in m.iter_attachments()}
        checks.check(m.get_content_type() == "multipart/mixed" and set(atts) == set(c.files),
                     "attach: multipart/mixed with the three named attachments",
                     f"{m.get_content_type()} {list(atts)}")
        for name, data in c.files.items():
            p = atts.get(name)
            if p is None:
                continue
            checks.check(p.get("Content-Transfer-Encoding", "").lower() == "base64" or name.endswith(".txt"),
                         f"attach: {name} is base64", p.get("Content-Transfer-Encoding"))
            checks.check(p.get_payload(decode=True) == data, f"attach: {name} decodes to the original bytes")
        if "pixel.png" in atts:
            checks.check(atts["pixel.png"].get_content_type() == "image/png",
                         "attach: pixel.png has a detected Content-Type image/png",
                         atts["pixel.png"].get_content_type())
        uname = "Prüfbericht Grüße.txt"
        if uname in atts:
            checks.check(re.search(rb"(?i)filename\*(0\*)?=", info["raw"]) is not None,
                         "attach: the non-ASCII file name is RFC 2231 encoded (filename*=)",
                         atts[uname].get("Content-Disposition", ""))
    info = c.sent.get("intl")
    if info and info["raw"]:
        m = parse(info["raw"])
        checks.check(str(m["Subject"]) == f"Grüße 你好 {c.tok}", "intl: Subject decodes to the UTF-8 text",
                     m["Subject"])
        checks.check(BOB_NAME in str(m["To"]) and BOB in str(m["To"]), "intl: To keeps the non-ASCII display name",
                     m["To"])
        checks.check(b"=?" in header_section(info["raw"]), "intl: encoded-words in the raw header section",
                     header_section(info["raw"])[:500])
    info = c.sent.get("raw")
    if info and info["raw"]:
        checks.check(crlf(info["raw"]) == crlf(c.raw_input), "--raw: the Sent copy is the message given on stdin",
                     f"{info['raw'][:300]!r}")


def check_server_copies(c):
    """Every sent message reached bob on ternd as trace headers + exactly the Sent copy; Bcc handling."""
    checks, d = c.checks, c.d
    for key, info in c.sent.items():
        if not info["raw"] or not info["mid"]:
            continue
        entry = d.find_message(BOB, info["mid"], timeout=5)
        if not checks.check(entry is not None, f"{key}: delivered to bob's INBOX on ternd", info["mid"]):
            continue
        stored = d.mail_cat(BOB, entry["uid"])
        ok, why = stored_matches(stored, ALICE, crlf(info["raw"]))
        checks.check(ok, f"{key}: ternd stored exactly the local Sent copy (after Return-Path/Received)", why)
        checks.check(not has_header(stored, "Bcc"), f"{key}: no Bcc header in bob's stored copy")
        info["server_uid"] = entry["uid"]
    info = c.sent.get("bcc")
    if info and info["mid"]:
        entry = d.find_message(ALICE, info["mid"], timeout=5)
        if checks.check(entry is not None, "bcc: the Bcc recipient (ally -> alice) received it"):
            stored = d.mail_cat(ALICE, entry["uid"])
            checks.check(not has_header(stored, "Bcc"), "bcc: no Bcc header in the Bcc recipient's copy",
                         header_section(stored)[:800])
            ok, why = stored_matches(stored, ALICE, crlf(info["raw"]))
            checks.check(ok, "bcc: the Bcc recipient's copy is the same message", why)
        checks.check(ALICE_ALIAS.encode() not in info["raw"], "bcc: the Bcc address appears nowhere in the message")


# ---- fetching and reading ---------------------------------------------------------------------------
def step_fetch(c):
    checks, d, t = c.checks, c.d, c.main
    server = d.mail_list(BOB)
    checks.check(len(server) >= len([1 for i in c.sent.values() if i["ok"]]),
                 "bob's maildrop on ternd holds the sent messages", len(server))
    r = t.run(["fetch", "--account", "bob", "--protocol", "pop3", "--keep", "--json"], timeout=120)
    checks.check(r.rc == 0, "fetch bob over POP3S (--keep): exit 0", r.detail())
    new, skipped = fetch_counts(r)
    checks.check(new == len(server), f"first fetch: JSON reports {len(server)} new", r.detail())
    local = t.list_json("--account", "bob", "--folder", "INBOX")
    checks.check(server and len(local) == len(server), "first fetch: as many local messages as on the server",
                 f"local {len(local)}, server {len(server)}")
    by_mid = {}
    for e in local:
        try:
            raw = t.raw(e["id"])
        except Exception as exc:  # noqa: BLE001
            checks.check(False, f"show --raw {e.get('id')}", exc)
            continue
        by_mid.setdefault(message_id_of(raw), []).append((e, raw))
    same = []
    differ = []
    for s in server:
        got = by_mid.get(s["message_id"], [])
        want = crlf(d.mail_cat(BOB, s["uid"]))
        if len(got) == 1 and crlf(got[0][1]) == want:
            same.append(s["uid"])
        else:
            differ.append((s["uid"], s["message_id"], len(got),
                           got[0][1][:200] if got else None, want[:200]))
    checks.check(not differ and same, "every message in bob's maildrop is stored locally once with the same bytes",
                 "\n".join(map(str, differ[:5])))
    for key, info in c.sent.items():
        if info["mid"] in by_mid:
            c.inbox[key] = by_mid[info["mid"]][0][0]
    for key in ("plain", "attach"):
        e = c.inbox.get(key)
        if e:
            missing = [f for f in ("id", "account", "folder", "from", "to", "subject", "date", "size", "flags",
                                   "has_attachments") if f not in e]
            checks.check(not missing, f"list --json entry has every documented field ({key})", f"missing {missing}")
            checks.check(e.get("account") == "bob" and e.get("folder") == "INBOX",
                         f"list --json: {key} is in account bob, folder INBOX", e)
    if "attach" in c.inbox and "plain" in c.inbox:
        checks.check(c.inbox["attach"].get("has_attachments") is True
                     and c.inbox["plain"].get("has_attachments") is False,
                     "list --json: has_attachments true for the attachments message, false for the plain one",
                     (c.inbox["attach"].get("has_attachments"), c.inbox["plain"].get("has_attachments")))
    e = c.inbox.get("plain")
    if e:
        size = e.get("size")
        checks.check(size == len(by_mid[c.sent["plain"]["mid"]][0][1]), "list --json: size is the stored size",
                     f"{size} vs {len(by_mid[c.sent['plain']['mid']][0][1])}")

    r = t.run(["fetch", "--account", "bob", "--protocol", "pop3", "--keep", "--json"], timeout=120)
    new2, skipped2 = fetch_counts(r)
    checks.check(r.rc == 0 and new2 == 0, "second fetch: exit 0 and 0 new", r.detail())
    checks.check(skipped2 is None or skipped2 == len(server), "second fetch: skipped counts the known messages",
                 r.detail())
    local2 = t.list_json("--account", "bob", "--folder", "INBOX")
    checks.check(len(local2) == len(local), "second fetch: nothing added locally", f"{len(local)} -> {len(local2)}")
    checks.check(len(d.mail_list(BOB)) == len(server), "fetch --keep leaves the maildrop as it was")


def step_read(c):
    checks, t, tok = c.checks, c.main, c.tok
    e = c.inbox.get("intl")
    if checks.check(e is not None, "intl: fetched into bob's INBOX"):
        checks.check(e.get("subject") == f"Grüße 你好 {tok}", "list --json: the non-ASCII subject round-trips",
                     e.get("subject"))
        checks.check(ALICE_NAME in field_text(e.get("from")), "list --json: the sender's non-ASCII name round-trips",
                     e.get("from"))
        checks.check(BOB_NAME in field_text(e.get("to")), "list --json: the recipient's non-ASCII name round-trips",
                     e.get("to"))
        r = t.run(["show", e["id"]])
        checks.check(r.rc == 0 and f"Grüße 你好 {tok}" in r.stdout and ALICE_NAME in r.stdout
                     and BOB_NAME in r.stdout and f"cherry{tok}" in r.stdout and "你好世界" in r.stdout,
                     "show: decoded subject, names and UTF-8 body", r.detail())
    e = c.inbox.get("plain")
    if e:
        r = t.run(["show", e["id"]])
        checks.check(r.rc == 0 and f"mango{tok}" in r.stdout and f"plain kiwi{tok}" in r.stdout,
                     "show: the plain message's subject and body", r.detail())
        r = t.run(["show", e["id"], "--headers"])
        checks.check(r.rc == 0 and re.search(r"(?im)^Message-ID:", r.stdout) and "Return-Path" in r.stdout,
                     "show --headers: every header, including the trace", r.detail())
    e = c.inbox.get("html")
    if e:
        r = t.run(["show", e["id"]])
        out = r.stdout
        checks.check(r.rc == 0 and f"papaya{tok}" in out and f"bold{tok}" in out and "Fish & Chips" in out,
                     "show of an HTML-only message: its text, entities decoded", r.detail())
        checks.check(r.rc == 0 and not re.search(r"</?(p|b|h1|html|body|ul|li|a)\b", out, re.I)
                     and "&amp;" not in out, "show of an HTML-only message: no tags", r.detail())
        checks.check(r.rc == 0 and f"evilScript{tok}" not in out and "color: red" not in out,
                     "show of an HTML-only message: script and style dropped", r.detail())
        r = t.run(["show", e["id"], "--html"])
        checks.check(r.rc == 0 and "<h1>" in r.stdout and f"papaya{tok}" in r.stdout,
                     "show --html prints the HTML part", r.detail())
    e = c.inbox.get("both")
    if e:
        r = t.run(["show", e["id"]])
        checks.check(r.rc == 0 and f"guava{tok}" in r.stdout, "show of text+HTML: the text part", r.detail())
    e = c.inbox.get("attach")
    if e:
        r = t.run(["show", e["id"]])
        checks.check(r.rc == 0 and all(n in r.stdout for n in c.files) and f"apricot{tok}" in r.stdout,
                     "show lists the attachments by name", r.detail())
        out_dir = c.tmp / "saved"
        out_dir.mkdir()
        r = t.run(["save-attachments", e["id"], out_dir])
        checks.check(r.rc == 0, "save-attachments: exit 0", r.detail())
        saved = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()}
        checks.check(set(saved) == set(c.files), "save-attachments writes one file per attachment, names kept",
                     sorted(saved))
        for name, data in c.files.items():
            got = saved.get(name)
            checks.check(got == data, f"save-attachments: {name} is bit-identical ({len(data)} bytes)",
                         None if got is None else f"{len(got)} bytes, first difference at "
                         f"{next((i for i in range(min(len(got), len(data))) if got[i] != data[i]), 'end')}")


def step_export_import(c):
    """export writes every message as an .eml with its exact bytes; import into a fresh home brings them back."""
    checks, t = c.checks, c.main
    entries = t.list_json()
    stored = sorted(t.raw(e["id"]) for e in entries)
    out = c.tmp / "export"
    r = t.run(["export", out], timeout=60)
    checks.check(r.rc == 0, "export DIR: exit 0", r.detail())
    files = sorted(p.read_bytes() for p in out.rglob("*.eml")) if out.exists() else []
    checks.check(entries and files == stored, f"export: {len(entries)} .eml files with the stored bytes",
                 f"{len(files)} files for {len(entries)} messages")
    fresh = Tern(c.tmp, "imported")
    r = fresh.run(["import", out], timeout=60)
    checks.check(r.rc == 0, "import DIR into a fresh store: exit 0", r.detail())
    got = fresh.list_json()
    checks.check(sorted(e.get("subject") or "" for e in got) == sorted(e.get("subject") or "" for e in entries),
                 "import: the same messages (subjects) in the fresh store", f"{len(got)} vs {len(entries)}")


def ids(entries):
    return {e.get("id") for e in entries}


def step_search(c):
    checks, t, tok = c.checks, c.main, c.tok
    inbox = {k: e["id"] for k, e in c.inbox.items()}
    if "plain" not in inbox or "attach" not in inbox:
        checks.check(False, "search: the plain and attachment messages were fetched")
        return

    def search(query):
        try:
            return t.search_json(query)
        except Exception as exc:  # noqa: BLE001
            checks.check(False, f"search {query!r} --json", exc)
            return None

    def subjects_only(res, subject):
        return all(e.get("subject") == subject for e in res)

    res = search(f"kiwi{tok}")
    if res is not None:
        checks.check(inbox["plain"] in ids(res) and subjects_only(res, f"plain kiwi{tok}"),
                     "search by a subject word finds that message and only it", res)
    res = search(f"subject:kiwi{tok}")
    if res is not None:
        checks.check(inbox["plain"] in ids(res) and subjects_only(res, f"plain kiwi{tok}"),
                     "search subject:WORD", res)
    res = search(f"mango{tok}")
    if res is not None:
        checks.check(inbox["plain"] in ids(res) and subjects_only(res, f"plain kiwi{tok}"),
                     "search by a body word finds that message and only it", res)
    res = search(f"papaya{tok}")
    if res is not None and "html" in inbox:
        checks.check(inbox["html"] in ids(res) and subjects_only(res, f"htmlonly lychee{tok}"),
                     "search by a word of an HTML-only body", res)
    res = search("from:alice")
    if res is not None:
        checks.check(set(inbox.values()) <= ids(res), "search from:alice finds every message alice sent",
                     f"missing {set(inbox.values()) - ids(res)}")
    res = search(f"from:nobody{tok}")
    if res is not None:
        checks.check(res == [], "search from:<unknown> finds nothing", res)
    res = search("has:attachment")
    if res is not None:
        checks.check(inbox["attach"] in ids(res) and inbox["plain"] not in ids(res)
                     and all(e.get("has_attachments") in (True, None) for e in res),
                     "search has:attachment: the attachments message, not the plain one", res)
    res = search(f"has:attachment mango{tok}")
    if res is not None:
        checks.check(res == [], "search terms are ANDed (has:attachment + a plain-only word: nothing)", res)
    res = search(f"before:2000-01-01 kiwi{tok}")
    if res is not None:
        checks.check(res == [], "search before:2000-01-01 excludes today's message", res)
    res = search(f"after:2000-01-01 kiwi{tok}")
    if res is not None:
        checks.check(inbox["plain"] in ids(res), "search after:2000-01-01 includes today's message", res)
    r = t.run(["search", "form:alice"])
    checks.check(r.rc == 1 and r.stderr.strip(), "search with an unknown field: exit 1 and an error", r.detail())


# ---- errors --------------------------------------------------------------------------------------
def step_errors(c):
    checks, d, t, tok = c.checks, c.d, c.main, c.tok
    before_local = len(t.list_json())
    before_server = len(d.mail_list(BOB))
    r = t.account_add("badpw", BOB, "definitely-wrong", extra=c.account_args())
    if not checks.check(r.rc == 0, "account add badpw (wrong password)", r.detail()):
        return
    r = t.run(["fetch", "--account", "badpw", "--keep"], timeout=60)
    checks.check(r.rc == 1 and mentions(r.stderr, AUTH_WORDS), "wrong password: fetch exits 1 with a login error",
                 r.detail())
    r = t.run(["send", "--account", "badpw", "--to", BOB, "--subject", f"never {tok}", "--text", "-"],
              input_bytes=b"should not arrive\n", timeout=60)
    checks.check(r.rc == 1 and mentions(r.stderr, AUTH_WORDS), "wrong password: send exits 1 with a login error",
                 r.detail())
    r = t.run(["account", "test", "badpw"], timeout=60)
    checks.check(r.rc == 1 and mentions(r.stdout + r.stderr, AUTH_WORDS),
                 "wrong password: account test exits 1 and says the login failed", r.detail())
    checks.check(len(t.list_json()) == before_local and len(d.mail_list(BOB)) == before_server,
                 "wrong password: nothing stored locally or on the server")

    other = Tern(c.tmp, "tls")
    r = other.account_add("noca", BOB, harness.PASSWORDS[BOB], extra=c.account_args(ca=False))
    if checks.check(r.rc == 0, "account add noca (no --ca-file)", r.detail()):
        r = other.run(["fetch", "--account", "noca", "--keep"], timeout=60)
        checks.check(r.rc == 1 and ("certif" in r.stderr.lower() or "verif" in r.stderr.lower()),
                     "without --ca-file: fetch refuses the self-signed certificate (exit 1, certificate error)",
                     r.detail())
        r = other.run(["send", "--account", "noca", "--to", BOB, "--subject", f"never {tok}", "--text", "-"],
                      input_bytes=b"should not arrive\n", timeout=60)
        checks.check(r.rc == 1 and ("certif" in r.stderr.lower() or "verif" in r.stderr.lower()),
                     "without --ca-file: send refuses the self-signed certificate", r.detail())
        checks.check(len(d.mail_list(BOB)) == before_server and other.list_json() == [],
                     "without --ca-file: nothing sent, nothing fetched")
    r = other.account_add("insec", BOB, harness.PASSWORDS[BOB], extra=c.account_args(ca=False, insecure=True))
    if checks.check(r.rc == 0, "account add insec (--insecure)", r.detail()):
        checks.check("warn" in r.stderr.lower() and mentions(r.stderr, ("insecure", "verif", "certificate")),
                     "--insecure: account add prints a warning", r.detail())
        r = other.run(["fetch", "--account", "insec", "--keep", "--json"], timeout=120)
        new, _ = fetch_counts(r)
        checks.check(r.rc == 0 and new == before_server, "--insecure: fetch works without verification", r.detail())
        checks.check("warn" in r.stderr.lower() and mentions(r.stderr, ("insecure", "verif", "certificate")),
                     "--insecure: fetch prints a warning about the unverified certificate (at every use, "
                     "accounts.h)", r.detail())


def step_shell(c):
    checks, t = c.checks, c.main
    r = t.run(["shell"], input_bytes=b"list\nshow 1\nquit\n", timeout=30)
    out = r.stdout
    subjects = [i["subject"] for i in c.sent.values() if i["ok"]]
    words = [w for i in c.sent.values() for w in i["words"]]
    checks.check(r.rc == 0 and not r.timed_out, "shell with piped commands: exit 0", r.detail())
    checks.check(any(s in out for s in subjects), "shell: `list` prints the messages", r.detail())
    checks.check(any(w in out for w in words) and re.search(r"(?im)^\s*Subject:", out),
                 "shell: `show 1` prints a message (headers and body)", r.detail())
    r = t.run(["shell"], input_bytes=b"list\n", timeout=30)
    checks.check(r.rc == 0 and not r.timed_out, "shell: end of input ends the shell", r.detail())


def step_delete(c):
    checks, d, t, tok = c.checks, c.d, c.main, c.tok
    r = t.run(["send", "--to", BOB, "--subject", f"last one nectarine{tok}", "--text", "-"],
              input_bytes=f"final message nectarine{tok}\n".encode(), timeout=60)
    checks.check(r.rc == 0, "send one more message to bob (--text -)", r.detail())
    before = t.list_json("--account", "bob", "--folder", "INBOX")
    server_before = len(d.mail_list(BOB))
    r = t.run(["fetch", "--account", "bob", "--delete", "--json"], timeout=120)
    new, _ = fetch_counts(r)
    checks.check(r.rc == 0 and new == 1, "fetch --delete: exit 0, the one new message downloaded", r.detail())
    left = d.mail_list(BOB)
    checks.check(server_before > 1 and left == [], "fetch --delete: bob's maildrop on ternd is empty",
                 f"{server_before} before, left: {[(e['uid'], e['subject']) for e in left]}")
    after = t.list_json("--account", "bob", "--folder", "INBOX")
    checks.check(ids(before) <= ids(after) and len(after) == len(before) + 1,
                 "fetch --delete: every local copy remains (plus the new one)", f"{len(before)} -> {len(after)}")
    missing = [e["id"] for e in after if not c.main.run(["show", e["id"], "--raw"]).out]
    checks.check(after and not missing, "fetch --delete: every local message is still readable", missing)
    r = t.run(["fetch", "--account", "bob", "--json"], timeout=60)
    new, _ = fetch_counts(r)
    checks.check(r.rc == 0 and new == 0, "fetch after --delete: an empty maildrop, 0 new", r.detail())


# ---- interrupted fetch ---------------------------------------------------------------------------
def deliver_many(port, rcpt, messages, per_session=50):
    refused = 0
    for start in range(0, len(messages), per_session):
        with harness.RawSMTP(port, timeout=30) as s:
            s.ehlo()
            for msg in messages[start:start + per_session]:
                if s.cmd(f"MAIL FROM:<{REMOTE}>")[0] != 250 or s.cmd(f"RCPT TO:<{rcpt}>")[0] != 250:
                    refused += 1
                    s.cmd("RSET")
                    continue
                if s.cmd("DATA")[0] != 354:
                    refused += 1
                    continue
                s.send(harness.dot_stuff(msg) + b".\r\n")
                if s.reply()[0] != 250:
                    refused += 1
            try:
                s.cmd("QUIT")
            except (OSError, harness.SMTPError):
                pass
    return refused


def step_interrupt(c):
    checks, d, tok = c.checks, c.d, c.tok
    filler = "".join(f"filler line {i:03d} " + "x" * 60 + "\r\n" for i in range(100))
    subjects = [f"bulk {i:04d} {tok}" for i in range(INTERRUPT_COUNT)]
    msgs = [harness.make_message(REMOTE, [CAROL], s, harness.unique_id(f"bulk{i}"),
                                 body=(filler + f"message {i}\r\n").encode()) for i, s in enumerate(subjects)]
    refused = deliver_many(d.mx_port, CAROL, msgs)
    n_server = len(d.mail_list(CAROL))
    if not checks.check(refused == 0 and n_server == INTERRUPT_COUNT,
                        f"{INTERRUPT_COUNT} messages delivered to carol", f"refused {refused}, stored {n_server}"):
        return
    t = Tern(c.tmp, "interrupt")
    r = t.account_add("carol", CAROL, CAROL_PW, extra=c.account_args())
    if not checks.check(r.rc == 0, "account add carol", r.detail()):
        return
    errfile = open(c.tmp / "interrupted-fetch.stderr", "wb")
    proc = t.popen(["fetch", "--account", "carol", "--keep"], stdout=subprocess.DEVNULL, stderr=errfile)
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        n = len(t.eml_files())
        if n >= 3:
            proc.send_signal(signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.002)
    if proc.poll() is None and killed_at is None:
        proc.kill()
    proc.wait()
    errfile.close()
    if killed_at is not None:
        checks.check(proc.returncode == -signal.SIGKILL, f"fetch killed with SIGKILL mid-way ({killed_at} .eml files)")
    else:
        checks.skip("fetch killed with SIGKILL mid-way",
                    f"the fetch finished (exit {proc.returncode}) before 3 messages could be seen",
                    documented="fetch-too-fast")
    partial = t.list_json()
    if killed_at is not None:
        checks.check(0 < len(partial) < INTERRUPT_COUNT, "after the kill: part of the mail is stored",
                     f"{len(partial)} of {INTERRUPT_COUNT}")
    time.sleep(0.5)  # let ternd see the dropped session and release the maildrop
    r = None
    for _ in range(5):
        r = t.run(["fetch", "--account", "carol", "--keep", "--json"], timeout=150)
        if r.rc == 0 or "use" not in r.stderr.lower():
            break
        time.sleep(1)
    new, _ = fetch_counts(r)
    checks.check(r.rc == 0 and new == INTERRUPT_COUNT - len(partial),
                 f"second fetch: exit 0 and downloads the {INTERRUPT_COUNT - len(partial)} missing messages",
                 r.detail())
    final = t.list_json()
    got = [e.get("subject") for e in final]
    dups = sorted({s for s in got if got.count(s) > 1})
    missing = sorted(set(subjects) - set(got))
    checks.check(not dups and not missing and len(got) == INTERRUPT_COUNT,
                 f"after the interrupted fetch: every one of the {INTERRUPT_COUNT} messages exactly once",
                 f"{len(got)} local, duplicates {dups[:5]}, missing {missing[:5]}")
    emls = t.eml_files()
    # localstore.c documents that a crash between the rename and the row insert leaves one renamed file no
    # row points to; more than that one would mean duplicates on disk.
    checks.check(INTERRUPT_COUNT <= len(emls) <= INTERRUPT_COUNT + 1,
                 "one .eml file per message (at most the one orphan of the killed commit)", f"{len(emls)} files")
    if len(emls) > INTERRUPT_COUNT:
        checks.note(f"{len(emls) - INTERRUPT_COUNT} orphan .eml file(s) left by the SIGKILL (no row points to it)")
    sample = [e for e in final if e.get("subject") in (subjects[0], subjects[-1], subjects[len(subjects) // 2])]
    server = {e["subject"]: e["uid"] for e in d.mail_list(CAROL)}
    bad = [e.get("subject") for e in sample if crlf(t.raw(e["id"])) != crlf(d.mail_cat(CAROL, server[e["subject"]]))]
    checks.check(len(sample) == 3 and not bad, "sampled messages have the server's bytes", bad)
    r = t.run(["fetch", "--account", "carol", "--keep", "--json"], timeout=60)
    new, _ = fetch_counts(r)
    checks.check(r.rc == 0 and new == 0, "third fetch: 0 new", r.detail())


def run(checks):
    if not ch.tern_built(checks):
        return
    tmp = Path(tempfile.mkdtemp(prefix="tern-client-e2e-"))
    try:
        # Every test connection comes from 127.0.0.1: the wrong-password checks must not trip the brute-force
        # throttle (auth.max_failures, auth.max_failures_per_ip) for the checks after them.
        with Daemon("client", users={CAROL: CAROL_PW},
                    options=["auth.max_failures=1000", "auth.max_failures_per_ip=100000",
                             "auth.failure_delay=0"]) as d:
            if not start_daemon(checks, d):
                return
            c = Ctx(checks, d, tmp)
            if not checks.guard("accounts", step_accounts, c):
                return
            for name, step in (("send", step_send), ("fetch", step_fetch), ("read", step_read),
                               ("search", step_search), ("export/import", step_export_import), ("errors", step_errors), ("shell", step_shell),
                               ("fetch --delete", step_delete), ("interrupted fetch", step_interrupt)):
                checks.guard(f"{name} steps ran to the end", step, c)
            checks.check(d.alive(), "ternd is still running at the end")
    finally:
        if os.environ.get("TERN_E2E_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            checks.note(f"kept {tmp}")


if __name__ == "__main__":
    harness.main_guard(run)
