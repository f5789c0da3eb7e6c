#!/usr/bin/env python3
"""End-to-end: the `tern` client against reference servers started by the test on loopback (issue 4).

- Dovecot (Debian dovecot-imapd + dovecot-pop3d), run in the foreground as root with its own config in a
  temp dir: listen 127.0.0.1 on free ports for pop3 (STLS), pop3s, imap (STARTTLS) and imaps; ssl =
  required with a self-signed certificate for localhost; a passwd-file passdb and a static userdb (mail
  owned by nobody); mail_location maildir with messages the test places in cur/ and new/ (LF endings, one
  with CRLF, 8-bit UTF-8, dot lines, a base64 attachment, a 5,000-character line, 2 MB).
  tern fetches over POP3+STLS, POP3S, IMAP+STARTTLS and IMAPS (each in its own TERN_HOME, trusting the
  certificate with --ca-file): every message arrives once with the maildir file's bytes (line endings
  normalized: Dovecot serves CRLF), a second fetch downloads nothing, a message added to new/ afterwards is
  the only one a third fetch downloads, and --delete over POP3 and over IMAP empties the maildir while the
  local copies remain. A wrong password fails with exit 1.
- Python's aiosmtpd (Debian python3-aiosmtpd, run with /usr/bin/python3 since `python3` on PATH may be
  another interpreter) as the SMTP peer: STARTTLS required, AUTH required (one user), a handler that saves
  each envelope. `tern send` with To, Cc and Bcc: the session used TLS and AUTH, every recipient is in the
  envelope, Bcc is not in the content, and the content is exactly the local Sent copy (also with a binary
  attachment); a wrong password fails with exit 1 quoting the server and delivers nothing.
"""

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import client_helpers as ch  # noqa: E402
from client_helpers import Tern, crlf, fetch_counts, has_header, header_section, mentions  # noqa: E402

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
SYSTEM_PYTHON = "/usr/bin/python3"
MAIL_USER = "nobody"
USERS = {"dave": "dave-Secret-4", "pdel": "pdel-Secret-5", "idel": "idel-Secret-6"}
SMTP_USER, SMTP_PASSWORD = "sender@example.test", "smtp-Secret-7"
AUTH_WORDS = ("auth", "login", "password", "credential", "535", "-err", "no ", "denied", "refused", "rejected",
              "failed")


def message_id_of(raw):
    m = re.search(rb"(?im)^Message-ID:[ \t]*<([^>\r\n]+)>", header_section(raw))
    return m.group(1).decode(errors="replace") if m else None


def corpus(tok):
    """(name, bytes as placed in the maildir, subdir) for every pre-placed message."""
    def msg(name, subject, body, extra=b"", nl=b"\n"):
        head = (f"From: Sender <sender@remote.test>{nl.decode()}To: dave@example.test{nl.decode()}"
                f"Subject: {subject}{nl.decode()}Date: Mon, 24 Nov 2025 12:00:00 +0000{nl.decode()}"
                f"Message-ID: <{name}.{tok}@e2e.test>{nl.decode()}").encode() + extra
        return head + nl + body
    out = []
    out.append(("plain", msg("plain", "plain from dovecot", b"Hello Dave.\nSecond line.\n"), "cur"))
    out.append(("utf8", msg("utf8", "=?UTF-8?B?R3LDvMOfZSDkvaDlpb0=?=",
                            "Grüße, 你好, Ωμέγα\n".encode(),
                            b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                            b"Content-Transfer-Encoding: 8bit\n"), "cur"))
    out.append(("dots", msg("dots", "dot lines", b".\n..\n.leading\n..two\n. space\nmiddle\n.\n"), "cur"))
    att = os.urandom(48 * 1024)
    import base64
    b64 = base64.encodebytes(att)
    body = (b"--b1\nContent-Type: text/plain\n\nsee attached\n--b1\nContent-Type: application/octet-stream\n"
            b"Content-Disposition: attachment; filename=\"r.bin\"\nContent-Transfer-Encoding: base64\n\n"
            + b64 + b"--b1--\n")
    out.append(("attach", msg("attach", "with attachment", body,
                              b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n"), "new"))
    out.append(("crlf", msg("crlf", "crlf file", b"CRLF line one\r\nline two\r\n", nl=b"\r\n"), "new"))
    out.append(("longline", msg("longline", "a 5000-character line", b"L" * 5000 + b"\nafter\n"), "new"))
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    out.append(("big", msg("big", "two megabytes", line * (2 * 1024 * 1024 // len(line))), "new"))
    return out


class Dovecot:
    def __init__(self, tmp, cert, key):
        self.dir = tmp / "dovecot"
        self.dir.mkdir()
        os.chmod(self.dir, 0o755)
        self.mail = self.dir / "mail"
        self.uid = pwd.getpwnam(MAIL_USER).pw_uid
        self.gid = pwd.getpwnam(MAIL_USER).pw_gid
        self.pop3, self.pop3s, self.imap, self.imaps = harness.free_ports(4)
        self.conf = self.dir / "dovecot.conf"
        self.log = self.dir / "dovecot.log"
        self.proc = None
        shutil.copy(cert, self.dir / "cert.pem")
        shutil.copy(key, self.dir / "key.pem")
        passwd = self.dir / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in USERS.items()))
        os.chmod(passwd, 0o644)
        d = self.dir
        self.conf.write_text(f"""# tern e2e: a private Dovecot on loopback
protocols = pop3 imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = tern-e2e-{os.getpid()}
ssl = required
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.mail}/%u
}}
mail_location = maildir:{self.mail}/%u/Maildir
service imap-login {{
  inet_listener imap {{
    port = {self.imap}
  }}
  inet_listener imaps {{
    port = {self.imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3}
  }}
  inet_listener pop3s {{
    port = {self.pop3s}
    ssl = yes
  }}
}}
""")

    def maildir(self, user):
        return self.mail / user / "Maildir"

    def place(self, user, name, data, sub, n):
        md = self.maildir(user)
        for s in ("cur", "new", "tmp"):
            (md / s).mkdir(parents=True, exist_ok=True)
        fname = f"{1764000000 + n}.M{n}P{os.getpid()}.tern-e2e" + (":2,S" if sub == "cur" else "")
        path = md / sub / fname
        path.write_bytes(data)
        for p in [self.mail, self.mail / user, md, md / "cur", md / "new", md / "tmp", path]:
            os.chown(p, self.uid, self.gid)
        return path

    def files(self, user):
        md = self.maildir(user)
        return [p for s in ("cur", "new") for p in (md / s).iterdir() if p.is_file()]

    def start(self):
        self.out = open(self.dir / "foreground.log", "wb")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.out)
        deadline = time.monotonic() + 20
        pending = {self.pop3, self.pop3s, self.imap, self.imaps}
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited {self.proc.returncode}: {self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot not listening on {pending}: {self.logs()}")
            pending = {p for p in pending if not harness.connect_ok(p)}
            time.sleep(0.05)
        return True

    def logs(self):
        text = ""
        for p in (self.dir / "foreground.log", self.log):
            try:
                text += p.read_text(errors="replace")[-3000:]
            except OSError:
                pass
        return text

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.out.close()
        self.proc = None


AIOSMTPD_SERVER = r'''
import json, os, signal, ssl, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, outdir, user, password = sys.argv[1:7]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
          and auth_data.password == password.encode())
    session.tern_mechanism = mechanism
    return AuthResult(success=ok, handled=False)

class Handler:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Handler.n += 1
        base = os.path.join(outdir, "msg%04d" % Handler.n)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                "tls": session.ssl is not None, "authenticated": bool(session.authenticated),
                "mechanism": getattr(session, "tern_mechanism", None), "mail_options": envelope.mail_options}
        with open(base + ".tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".tmp", base + ".json")
        return "250 2.0.0 OK saved"

c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx, require_starttls=True,
               auth_required=True, auth_require_tls=True, authenticator=authenticator,
               server_hostname="localhost", decode_data=False)
c.start()
print("READY", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
while not stop.is_set():
    stop.wait(0.5)
c.stop()
'''


class Aiosmtpd:
    def __init__(self, tmp, cert, key):
        self.dir = tmp / "aiosmtpd"
        self.out = self.dir / "out"
        self.out.mkdir(parents=True)
        self.port = harness.free_ports(1)[0]
        self.script = self.dir / "server.py"
        self.script.write_text(AIOSMTPD_SERVER)
        self.cert, self.key = cert, key
        self.proc = None

    def start(self):
        self.errf = open(self.dir / "stderr", "wb")
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(self.script), str(self.port), str(self.cert),
                                      str(self.key), str(self.out), SMTP_USER, SMTP_PASSWORD],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf)
        line = self.proc.stdout.readline()
        if b"READY" not in line or not harness.connect_ok(self.port):
            raise RuntimeError(f"aiosmtpd did not start: {line!r} "
                               f"{(self.dir / 'stderr').read_text(errors='replace')[-2000:]}")
        return True

    def messages(self):
        out = []
        for j in sorted(self.out.glob("*.json")):
            out.append((json.loads(j.read_text()), j.with_suffix(".eml").read_bytes()))
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.errf.close()


MODES = [  # name, protocol, port attribute, security
    ("pop3-stls", "pop3", "pop3", "starttls"),
    ("pop3s", "pop3", "pop3s", "tls"),
    ("imap-starttls", "imap", "imap", "starttls"),
    ("imaps", "imap", "imaps", "tls"),
]


def add_fetch_account(t, dv, cert, name, user, proto, port, security, password=None):
    return t.account_add(name, f"{user}@example.test", USERS[user] if password is None else password,
                         extra=["--user", user, f"--{proto}", f"localhost:{port}", f"--{proto}-security", security,
                                "--ca-file", cert])


def compare_local(t, expected, account=None):
    """(ok, detail): the local store holds every expected message exactly once with the same bytes
    (CRLF-normalized), and nothing else."""
    try:
        entries = t.list_json(*(["--account", account] if account else []))
    except Exception as exc:  # noqa: BLE001
        return False, str(exc)
    got = {}
    for e in entries:
        raw = t.raw(e["id"])
        got.setdefault(message_id_of(raw), []).append(raw)
    problems = []
    for mid, data in expected.items():
        copies = got.get(mid, [])
        if len(copies) != 1:
            problems.append(f"{mid}: {len(copies)} local copies")
        elif crlf(copies[0]) != crlf(data):
            a, b = crlf(copies[0]), crlf(data)
            i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            problems.append(f"{mid}: bytes differ at {i} (local {len(a)}, maildir {len(b)}): "
                            f"{a[max(0, i - 30):i + 30]!r} vs {b[max(0, i - 30):i + 30]!r}")
    extra = set(got) - set(expected)
    if extra:
        problems.append(f"unexpected local messages: {sorted(map(str, extra))[:5]}")
    return not problems, "\n".join(problems[:8])


def test_fetching(checks, tmp, dv, cert, tok, msgs):
    expected = {message_id_of(data): data for _, data, _ in msgs}
    homes = {}
    for mode, proto, port_attr, security in MODES:
        t = Tern(tmp, mode)
        r = add_fetch_account(t, dv, cert, "dave", "dave", proto, getattr(dv, port_attr), security)
        if not checks.check(r.rc == 0, f"{mode}: account add (--{proto} localhost:PORT, {security}, --ca-file)",
                            r.detail()):
            continue
        homes[mode] = t
        r = t.run(["fetch", "--protocol", proto, "--keep", "--json"], timeout=120)
        new, _ = fetch_counts(r)
        checks.check(r.rc == 0 and new == len(msgs), f"{mode}: first fetch: exit 0, {len(msgs)} new", r.detail())
        ok, why = compare_local(t, expected)
        checks.check(ok, f"{mode}: every maildir message stored once with the same bytes", why)
        r = t.run(["fetch", "--protocol", proto, "--keep", "--json"], timeout=120)
        new, _ = fetch_counts(r)
        checks.check(r.rc == 0 and new == 0, f"{mode}: second fetch: exit 0, 0 new", r.detail())
        checks.check(len(t.list_json()) == len(msgs), f"{mode}: second fetch stored nothing more")
    checks.check(len(dv.files("dave")) == len(msgs), "fetch --keep left every message in the maildir",
                 len(dv.files("dave")))

    # One more message arrives; each home downloads only it.
    late = (f"From: <late@remote.test>\nTo: dave@example.test\nSubject: arrived later\n"
            f"Message-ID: <late.{tok}@e2e.test>\n\nlate body\n").encode()
    dv.place("dave", "late", late, "new", 100)
    expected[message_id_of(late)] = late
    for mode, proto, _, _ in MODES:
        t = homes.get(mode)
        if t is None:
            continue
        r = t.run(["fetch", "--protocol", proto, "--keep", "--json"], timeout=120)
        new, _ = fetch_counts(r)
        checks.check(r.rc == 0 and new == 1, f"{mode}: after a new delivery: exactly 1 new", r.detail())
        ok, why = compare_local(t, expected)
        checks.check(ok, f"{mode}: the local store now holds every message once", why)

    # --delete, once over POP3 and once over IMAP, each on its own mailbox.
    for user, (mode, proto, port_attr, security) in (("pdel", MODES[1]), ("idel", MODES[3])):
        exp = {}
        for i, (name, data, sub) in enumerate(msgs):
            data = data.replace(f".{tok}@".encode(), f".{user}.{tok}@".encode())
            dv.place(user, name, data, sub, 200 + i)
            exp[message_id_of(data)] = data
        t = Tern(tmp, f"delete-{user}")
        r = add_fetch_account(t, dv, cert, user, user, proto, getattr(dv, port_attr), security)
        if not checks.check(r.rc == 0, f"{proto} --delete: account add", r.detail()):
            continue
        r = t.run(["fetch", "--protocol", proto, "--delete", "--json"], timeout=120)
        new, _ = fetch_counts(r)
        checks.check(r.rc == 0 and new == len(msgs), f"{proto} --delete ({mode}): exit 0, {len(msgs)} new",
                     r.detail())
        left = dv.files(user)
        checks.check(left == [], f"{proto} --delete: the maildir is empty afterwards",
                     [p.name for p in left][:10])
        ok, why = compare_local(t, exp)
        checks.check(ok, f"{proto} --delete: every message kept locally with the same bytes", why)

    # One account with both servers: POP3 first, then IMAP finds the same messages by Message-ID
    # and size (Dovecot's UIDLs say nothing about IMAP UIDs) and downloads nothing (issue 10: every
    # message came twice).
    t = Tern(tmp, "pop3-then-imap")
    r = t.account_add("dave", "dave@example.test", USERS["dave"],
                      extra=["--user", "dave", "--pop3", f"localhost:{dv.pop3s}", "--pop3-security", "tls",
                             "--imap", f"localhost:{dv.imaps}", "--imap-security", "tls", "--ca-file", cert])
    if checks.check(r.rc == 0, "pop3+imap account: account add with both servers", r.detail()):
        r = t.run(["fetch", "--protocol", "pop3", "--keep", "--json"], timeout=120)
        new, _ = fetch_counts(r)
        checks.check(r.rc == 0 and new == len(expected), f"pop3+imap: POP3 fetch: {len(expected)} new", r.detail())
        r = t.run(["fetch", "--protocol", "imap", "--keep", "--json"], timeout=120)
        new, skipped = fetch_counts(r)
        checks.check(r.rc == 0 and new == 0 and skipped == len(expected),
                     f"pop3+imap: the IMAP fetch after it: 0 new, {len(expected)} already stored", r.detail())
        ok, why = compare_local(t, expected)
        checks.check(ok, "pop3+imap: every message stored exactly once", why)
        r = t.run(["fetch", "--protocol", "imap", "--keep", "--json"], timeout=120)
        new, _ = fetch_counts(r)
        checks.check(r.rc == 0 and new == 0 and len(t.list_json()) == len(expected),
                     "pop3+imap: a second IMAP fetch: still 0 new", r.detail())

    t = Tern(tmp, "badpw")
    r = add_fetch_account(t, dv, cert, "dave", "dave", "imap", dv.imaps, "tls", password="wrong-password")
    if checks.check(r.rc == 0, "account add with a wrong password", r.detail()):
        r = t.run(["fetch", "--protocol", "imap", "--keep"], timeout=60)
        checks.check(r.rc == 1 and mentions(r.stderr, AUTH_WORDS),
                     "Dovecot IMAP, wrong password: exit 1 with a login error", r.detail())
        checks.check(t.list_json() == [], "wrong password: nothing stored")
    t2 = Tern(tmp, "badpw-pop3")
    r = add_fetch_account(t2, dv, cert, "dave", "dave", "pop3", dv.pop3s, "tls", password="wrong-password")
    if r.rc == 0:
        r = t2.run(["fetch", "--protocol", "pop3", "--keep"], timeout=60)
        checks.check(r.rc == 1 and mentions(r.stderr, AUTH_WORDS),
                     "Dovecot POP3, wrong password: exit 1 with a login error", r.detail())


def test_sending(checks, tmp, smtp, cert, tok):
    t = Tern(tmp, "smtp")
    r = t.account_add("out", SMTP_USER, SMTP_PASSWORD,
                      extra=["--name", "Sender Ünïcode", "--user", SMTP_USER, "--smtp", f"localhost:{smtp.port}",
                             "--smtp-security", "starttls", "--ca-file", cert])
    if not checks.check(r.rc == 0, "aiosmtpd: account add (STARTTLS, AUTH, --ca-file)", r.detail()):
        return
    to, cc, bcc = "to@peer.test", "cc@peer.test", "hidden@peer.test"
    body = tmp / "body.txt"
    body.write_text(f"Hello through aiosmtpd, {tok}.\n.leading dot\n..two dots\n.\nend\n")
    r = t.run(["send", "--to", to, "--cc", cc, "--bcc", bcc, "--subject", f"aiosmtpd Grüße {tok}",
               "--text", body], timeout=60)
    checks.check(r.rc == 0, "aiosmtpd: send with To, Cc and Bcc: exit 0", r.detail())
    binary = bytes(range(256)) * 64 + os.urandom(30000)
    (tmp / "blob.bin").write_bytes(binary)
    r = t.run(["send", "--to", to, "--subject", f"aiosmtpd attachment {tok}", "--text", body,
               "--attach", tmp / "blob.bin"], timeout=60)
    checks.check(r.rc == 0, "aiosmtpd: send with a binary attachment: exit 0", r.detail())
    got = smtp.messages()
    if not checks.check(len(got) == 2, "aiosmtpd received two messages", len(got)):
        return
    sent = {e.get("subject"): e for e in t.list_json("--folder", "Sent")}
    for (meta, content), subject in zip(got, (f"aiosmtpd Grüße {tok}", f"aiosmtpd attachment {tok}")):
        checks.check(meta["tls"] and meta["authenticated"], f"aiosmtpd: {subject!r} sent after STARTTLS and AUTH",
                     meta)
        checks.check(meta["mail_from"] == SMTP_USER, "aiosmtpd: envelope sender is the account's address", meta)
        entry = sent.get(subject)
        if checks.check(entry is not None, f"aiosmtpd: {subject!r} has a local Sent copy", list(sent)):
            local = t.raw(entry["id"])
            checks.check(crlf(local) == content, f"aiosmtpd: {subject!r}: the server got exactly the Sent copy",
                         f"local {len(local)} bytes, server {len(content)}: {content[:300]!r}")
    meta, content = got[0]
    checks.check(sorted(meta["rcpt_tos"]) == sorted([to, cc, bcc]),
                 "aiosmtpd: To, Cc and Bcc recipients are all in the envelope", meta["rcpt_tos"])
    checks.check(not has_header(content, "Bcc") and bcc.encode() not in content,
                 "aiosmtpd: the Bcc address is nowhere in the content", header_section(content)[:800])
    checks.check(has_header(content, "Cc") and cc.encode() in header_section(content),
                 "aiosmtpd: Cc is in the headers", header_section(content)[:800])
    import email
    import email.policy
    m = email.message_from_bytes(got[1][1], policy=email.policy.default)
    atts = [p.get_payload(decode=True) for p in m.iter_attachments()]
    checks.check(atts == [binary], "aiosmtpd: the attachment decodes to the original bytes",
                 [len(a or b"") for a in atts])
    r = t.account_add("bad", SMTP_USER, "not-the-password",
                      extra=["--user", SMTP_USER, "--smtp", f"localhost:{smtp.port}", "--smtp-security", "starttls",
                             "--ca-file", cert])
    if r.rc == 0:
        r = t.run(["send", "--account", "bad", "--to", to, "--subject", "never", "--text", body], timeout=60)
        checks.check(r.rc == 1 and mentions(r.stderr, ("535", "auth")),
                     "aiosmtpd, wrong password: exit 1 quoting the server's refusal", r.detail())
        checks.check(len(smtp.messages()) == 2, "aiosmtpd, wrong password: nothing delivered")
    r = t.account_add("plainonly", SMTP_USER, SMTP_PASSWORD,
                      extra=["--user", SMTP_USER, "--smtp", f"localhost:{smtp.port}", "--smtp-security", "tls",
                             "--ca-file", cert])
    if r.rc == 0:
        r = t.run(["send", "--account", "plainonly", "--to", to, "--subject", "never", "--text", body], timeout=30)
        checks.check(r.rc == 1 and r.stderr.strip() and r.elapsed < 30,
                     "implicit TLS against a STARTTLS port: exit 1 with an error, no hang", r.detail())


def run(checks):
    if not ch.tern_built(checks):
        return
    if not checks.check(os.geteuid() == 0, "running as root (Dovecot is started with its own config)"):
        return
    have_dovecot = checks.check(os.path.exists(DOVECOT) and os.path.exists("/usr/lib/dovecot/pop3")
                                and os.path.exists("/usr/lib/dovecot/imap"),
                                "Dovecot with POP3 and IMAP installed (Debian dovecot-pop3d, dovecot-imapd)",
                                "apt-get install dovecot-imapd dovecot-pop3d")
    have_aiosmtpd = checks.check(subprocess.run([SYSTEM_PYTHON, "-c", "import aiosmtpd"],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0,
                                 "aiosmtpd importable by /usr/bin/python3 (Debian python3-aiosmtpd)",
                                 "apt-get install python3-aiosmtpd")
    tmp = Path(tempfile.mkdtemp(prefix="tern-client-ref-"))
    os.chmod(tmp, 0o755)
    tok = secrets.token_hex(4)
    dv = smtp = None
    try:
        cert, key = ch.make_cert(tmp / "tls")
        if have_dovecot:
            dv = Dovecot(tmp, cert, key)
            msgs = corpus(tok)
            for i, (name, data, sub) in enumerate(msgs):
                dv.place("dave", name, data, sub, i)
            if checks.guard("Dovecot starts", dv.start):
                checks.check(True, "Dovecot started, listening on pop3, pop3s, imap and imaps")
                checks.guard("Dovecot fetch tests ran to the end", test_fetching, checks, tmp, dv, str(dv.dir / "cert.pem"),
                             tok, msgs)
        if have_aiosmtpd:
            smtp = Aiosmtpd(tmp, cert, key)
            if checks.guard("aiosmtpd starts", smtp.start):
                checks.check(True, "aiosmtpd started (STARTTLS and AUTH required)")
                checks.guard("aiosmtpd send tests ran to the end", test_sending, checks, tmp, smtp, str(cert), tok)
    finally:
        if dv is not None:
            dv.stop()
        if smtp is not None:
            smtp.stop()
        if os.environ.get("TERN_E2E_KEEP") == "1":
            checks.note(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.main_guard(run)
