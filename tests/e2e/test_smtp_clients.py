#!/usr/bin/env python3
"""End-to-end: real SMTP clients against a real ternd on loopback.

Checks, each against the bytes that `ternd mail cat` returns (which must be exactly
`Return-Path: <sender>` + `Received: ...` + the bytes the client sent, dot-unstuffed):
- admin commands: `init` made the config, certificate, key and database and refuses an existing non-empty
  dir; `user list --json` lists the users; `mail list --json` has the documented fields;
- Python smtplib: STARTTLS + AUTH PLAIN on submission (certificate verified for "localhost"),
  SMTP_SSL + AUTH LOGIN on submissions, plain delivery to the MX port with no AUTH;
- swaks: STARTTLS + AUTH PLAIN on submission, implicit TLS + AUTH LOGIN on submissions;
- curl: smtp:// with --ssl-reqd and smtps://, certificate checked with --cacert;
- multi-recipient delivery (both users get it), delivery to an alias, an 8-bit body byte for byte,
  a 5 MB message, dot-stuffed lines, submission to a non-local recipient accepted into the queue;
- SIGHUP reloads the certificate; SIGTERM ends the daemon with exit status 0.
"""

import json
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, ALICE_ALIAS, BOB, Daemon, make_message, stored_matches, unique_id  # noqa: E402


def check_delivered(checks, daemon, user, sender, message_id, sent, what):
    """The message with message_id is in user's INBOX and its bytes are trace headers + sent."""
    entry = daemon.find_message(user, message_id)
    if not checks.check(entry is not None, f"{what}: stored in {user}'s INBOX",
                        f"Message-ID {message_id} not found in `mail list --json`"):
        return None
    stored = daemon.mail_cat(user, entry["uid"])
    ok, reason = stored_matches(stored, sender, sent)
    checks.check(ok, f"{what}: `mail cat` for {user} is Return-Path + Received + the exact sent bytes", reason)
    return entry, stored


def smtplib_send(checks, daemon, what, client_factory, login, mech, sender, recipients, message,
                 mail_options=()):
    """Sends through an smtplib client; returns True if every recipient was accepted."""
    try:
        with client_factory() as client:
            client.ehlo()
            if login:
                client.user, client.password = login
                authobject = client.auth_plain if mech == "PLAIN" else client.auth_login
                code, resp = client.auth(mech, authobject)
                checks.check(code == 235, f"{what}: AUTH {mech} accepted (235)", f"{code} {resp!r}")
            refused = client.sendmail(sender, recipients, message, mail_options=list(mail_options))
            return checks.check(refused == {}, f"{what}: every recipient accepted and the data got 250",
                                f"refused: {refused}")
    except (smtplib.SMTPException, OSError) as exc:
        checks.check(False, f"{what}: delivered without an SMTP error", f"{type(exc).__name__}: {exc}")
        return False


def test_admin(checks, daemon):
    data = daemon.data_dir
    for rel in ("tern.conf", "tls/cert.pem", "tls/key.pem", "tern.db"):
        checks.check((data / rel).is_file() and (data / rel).stat().st_size > 0,
                     f"init: created {rel}")
    key_mode = (data / "tls/key.pem").stat().st_mode & 0o077
    checks.check(key_mode == 0, "init: tls/key.pem is not readable by group or others",
                 f"mode {oct((data / 'tls/key.pem').stat().st_mode)}")

    before = sorted(p.name for p in data.iterdir())
    conf_before = (data / "tern.conf").read_bytes()
    proc = harness.run_ternd(["init", "--data-dir", data, "--domain", "example.test"], check=False)
    checks.check(proc.returncode != 0, "init: refuses an existing non-empty data dir (non-zero exit)",
                 f"exit {proc.returncode}")
    checks.check(sorted(p.name for p in data.iterdir()) == before
                 and (data / "tern.conf").read_bytes() == conf_before,
                 "init: the refused data dir is left untouched")

    proc = harness.run_ternd(["user", "list", "--data-dir", data, "--json"], check=False)
    text = proc.stdout.decode(errors="replace")
    try:
        users = json.loads(text)
        listed = json.dumps(users)
    except ValueError:
        users, listed = None, text
    checks.check(proc.returncode == 0 and users is not None and ALICE in listed and BOB in listed,
                 "user list --json: valid JSON naming alice and bob", text[:300])
    checks.check(ALICE_ALIAS in listed, "user list --json: shows the alias ally@example.test", text[:300])

    proc = harness.run_ternd(["mail", "list", ALICE, "--data-dir", data, "--json"], check=False)
    checks.check(proc.returncode == 0 and proc.stdout.strip().startswith(b"["),
                 "mail list --json: an empty INBOX is a JSON array", proc.stdout[:200] + proc.stderr[:200])


def test_smtplib(checks, daemon):
    ctx = daemon.client_tls_context()

    # STARTTLS + AUTH PLAIN on submission.
    mid = unique_id("smtplib-starttls")
    msg = make_message(ALICE, [BOB], "smtplib starttls plain", mid)

    def submission_starttls():
        client = smtplib.SMTP("localhost", daemon.submission_port, timeout=harness.SOCKET_TIMEOUT)
        client.ehlo()
        checks.check(client.has_extn("starttls"), "submission: EHLO advertises STARTTLS before TLS")
        client.starttls(context=ctx)
        return client

    if smtplib_send(checks, daemon, "smtplib STARTTLS+PLAIN on submission", submission_starttls,
                    (ALICE, daemon.passwords[ALICE]), "PLAIN", ALICE, [BOB], msg):
        check_delivered(checks, daemon, BOB, ALICE, mid, msg, "smtplib STARTTLS+PLAIN")

    # After STARTTLS: no STARTTLS advertised any more, AUTH is.
    try:
        with smtplib.SMTP("localhost", daemon.submission_port, timeout=harness.SOCKET_TIMEOUT) as client:
            client.starttls(context=ctx)
            client.ehlo()
            checks.check(not client.has_extn("starttls"), "submission: STARTTLS not advertised inside TLS")
            auth = client.esmtp_features.get("auth", "").upper().split()
            checks.check("PLAIN" in auth and "LOGIN" in auth,
                         "submission: AUTH PLAIN LOGIN advertised inside TLS", f"AUTH {auth}")
            for ext in ("pipelining", "8bitmime", "enhancedstatuscodes", "size"):
                checks.check(client.has_extn(ext), f"submission: EHLO advertises {ext.upper()}")
            # QUIT inside a STARTTLS session: the 221 must reach the client before the close.
            try:
                code, resp = client.docmd("QUIT")
            except smtplib.SMTPServerDisconnected as exc:
                code, resp = None, str(exc)
            checks.check(code == 221, "submission: QUIT after STARTTLS is answered 221 before the close",
                         f"{code} {resp!r}")
            client.close()
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        checks.check(False, "submission: EHLO after STARTTLS", exc)

    # SMTP_SSL + AUTH LOGIN on submissions, from the alias (allowed: it is alice's).
    mid = unique_id("smtplib-ssl")
    msg = make_message(ALICE_ALIAS, [BOB], "smtplib implicit tls login", mid)
    if smtplib_send(checks, daemon, "smtplib SMTP_SSL+LOGIN on submissions (MAIL FROM alias)",
                    lambda: smtplib.SMTP_SSL("localhost", daemon.submissions_port, context=ctx,
                                             timeout=harness.SOCKET_TIMEOUT),
                    (ALICE, daemon.passwords[ALICE]), "LOGIN", ALICE_ALIAS, [BOB], msg):
        check_delivered(checks, daemon, BOB, ALICE_ALIAS, mid, msg, "smtplib SMTP_SSL+LOGIN")

    # AUTH LOGIN without the initial response (the 334 Username: / Password: dialogue).
    try:
        with smtplib.SMTP_SSL("localhost", daemon.submissions_port, context=ctx,
                              timeout=harness.SOCKET_TIMEOUT) as client:
            client.ehlo()
            client.user, client.password = BOB, daemon.passwords[BOB]
            code, resp = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
            checks.check(code == 235, "submissions: AUTH LOGIN without initial response accepted",
                         f"{code} {resp!r}")
    except (smtplib.SMTPException, OSError) as exc:
        checks.check(False, "submissions: AUTH LOGIN without initial response accepted", exc)

    # Plain delivery to the MX port, no AUTH, from a remote sender.
    mid = unique_id("smtplib-mx")
    sender = "someone@remote.test"
    msg = make_message(sender, [ALICE], "plain mx delivery", mid)
    if smtplib_send(checks, daemon, "smtplib plain to the MX port",
                    lambda: smtplib.SMTP("127.0.0.1", daemon.mx_port, timeout=harness.SOCKET_TIMEOUT),
                    None, None, sender, [ALICE], msg):
        got = check_delivered(checks, daemon, ALICE, sender, mid, msg, "smtplib MX delivery")
        if got:
            entry, stored = got
            fields = ("uid", "size", "internal_date", "date", "from", "to", "subject", "message_id",
                      "flags", "has_attachments")
            missing = [f for f in fields if f not in entry]
            checks.check(not missing, "mail list --json: entry has every documented field", f"missing {missing}")
            checks.check(entry.get("subject") == "plain mx delivery", "mail list --json: subject parsed",
                         entry.get("subject"))
            checks.check(entry.get("size") == len(stored), "mail list --json: size equals the stored length",
                         f"size {entry.get('size')} vs {len(stored)} bytes")
            checks.check(sender in str(entry.get("from")), "mail list --json: from parsed", entry.get("from"))
            checks.check(entry.get("has_attachments") in (False, 0), "mail list --json: no attachments",
                         entry.get("has_attachments"))

    # Multi-recipient delivery: both users get the same bytes.
    mid = unique_id("multi")
    msg = make_message(ALICE, [ALICE, BOB], "to both", mid)
    if smtplib_send(checks, daemon, "multi-recipient on submissions",
                    lambda: smtplib.SMTP_SSL("localhost", daemon.submissions_port, context=ctx,
                                             timeout=harness.SOCKET_TIMEOUT),
                    (ALICE, daemon.passwords[ALICE]), "PLAIN", ALICE, [ALICE, BOB], msg):
        check_delivered(checks, daemon, ALICE, ALICE, mid, msg, "multi-recipient (alice)")
        check_delivered(checks, daemon, BOB, ALICE, mid, msg, "multi-recipient (bob)")

    # Alias delivery on the MX port: ally@ lands in alice's INBOX.
    mid = unique_id("alias")
    msg = make_message("friend@remote.test", [ALICE_ALIAS], "to the alias", mid)
    bob_before = daemon.mail_count(BOB)
    if smtplib_send(checks, daemon, "delivery to the alias ally@example.test",
                    lambda: smtplib.SMTP("127.0.0.1", daemon.mx_port, timeout=harness.SOCKET_TIMEOUT),
                    None, None, "friend@remote.test", [ALICE_ALIAS], msg):
        check_delivered(checks, daemon, ALICE, "friend@remote.test", mid, msg, "alias delivery")
        checks.check(daemon.mail_count(BOB) == bob_before, "alias delivery: nothing went to bob")

    # 8-bit body, byte for byte (every byte value except CR, LF and NUL).
    mid = unique_id("8bit")
    raw = bytes(b for b in range(1, 256) if b not in (10, 13))
    body = b"".join(raw[i:i + 60] + b"\r\n" for i in range(0, len(raw), 60))
    body += "Grüße, ça va? Ωμέγα 日本語\r\n".encode("utf-8")
    msg = make_message(ALICE, [BOB], "8bit body", mid, body=body).replace(
        b"MIME-Version: 1.0\r\n", b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n")
    if smtplib_send(checks, daemon, "8BITMIME body on submissions",
                    lambda: smtplib.SMTP_SSL("localhost", daemon.submissions_port, context=ctx,
                                             timeout=harness.SOCKET_TIMEOUT),
                    (ALICE, daemon.passwords[ALICE]), "PLAIN", ALICE, [BOB], msg,
                    mail_options=["BODY=8BITMIME"]):
        check_delivered(checks, daemon, BOB, ALICE, mid, msg, "8-bit body")

    # Dot-stuffing: smtplib sends ".foo" as "..foo" and "." as ".."; the store has the originals.
    mid = unique_id("dots")
    msg = make_message(ALICE, [BOB], "dots", mid,
                       body_lines=[".foo", "..bar", ".", "middle", "...", ". space", "end."])
    if smtplib_send(checks, daemon, "dot-stuffed lines on submissions",
                    lambda: smtplib.SMTP_SSL("localhost", daemon.submissions_port, context=ctx,
                                             timeout=harness.SOCKET_TIMEOUT),
                    (ALICE, daemon.passwords[ALICE]), "PLAIN", ALICE, [BOB], msg):
        check_delivered(checks, daemon, BOB, ALICE, mid, msg, "dot-stuffed lines come back unstuffed")

    # A 5 MB message.
    mid = unique_id("big")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_=+!?#$%^&*()"
    body = b"".join(b"%06d " % i + line + b"\r\n" for i in range(5 * 1024 * 1024 // (len(line) + 9) + 1))
    msg = make_message(ALICE, [BOB], "five megabytes", mid, body=body)
    checks.note(f"5 MB message: {len(msg)} bytes")
    start = time.monotonic()
    if smtplib_send(checks, daemon, "5 MB message on submissions",
                    lambda: smtplib.SMTP_SSL("localhost", daemon.submissions_port, context=ctx,
                                             timeout=60),
                    (ALICE, daemon.passwords[ALICE]), "PLAIN", ALICE, [BOB], msg):
        checks.note(f"5 MB message took {time.monotonic() - start:.2f}s")
        check_delivered(checks, daemon, BOB, ALICE, mid, msg, "5 MB message")

    # Submission to a non-local recipient: accepted into the outbound queue (250).
    mid = unique_id("outbound")
    msg = make_message(ALICE, ["someone@elsewhere.example"], "outbound", mid)
    smtplib_send(checks, daemon, "submission to a non-local recipient (queued)",
                 lambda: smtplib.SMTP_SSL("localhost", daemon.submissions_port, context=ctx,
                                          timeout=harness.SOCKET_TIMEOUT),
                 (ALICE, daemon.passwords[ALICE]), "PLAIN", ALICE, ["someone@elsewhere.example"], msg)


def run_tool(argv, timeout=60):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, -1, exc.stdout or b"", b"timed out")


def test_swaks(checks, daemon, workdir):
    if not Path("/usr/bin/swaks").exists():
        checks.check(False, "swaks is installed (scripts/bootstrap installs it)")
        return
    cases = [
        ("swaks STARTTLS+PLAIN on submission",
         ["--port", str(daemon.submission_port), "--tls", "--auth", "PLAIN"], BOB, ALICE),
        ("swaks implicit TLS+LOGIN on submissions",
         ["--port", str(daemon.submissions_port), "--tls-on-connect", "--auth", "LOGIN"], ALICE, BOB),
    ]
    for what, extra, user, rcpt in cases:
        mid = unique_id("swaks")
        msg = make_message(user, [rcpt], what, mid, body_lines=["swaks body", ".leading dot", "last"])
        path = workdir / f"{mid}.eml"
        # swaks sends the file, then CRLF.CRLF: leave out the file's last CRLF so the sent bytes are msg.
        path.write_bytes(msg[:-2])
        argv = (["swaks", "--server", "127.0.0.1", "--helo", "swaks.e2e.test",
                 "--tls-verify", "--tls-ca-path", str(daemon.cert_path), "--tls-sni", "localhost",
                 "--auth-user", user, "--auth-password", daemon.passwords[user],
                 "--from", user, "--to", rcpt, "--data", f"@{path}", "--timeout", "20"] + extra)
        # --tls-verify checks the name the server is reached by; reach it as localhost.
        argv[argv.index("127.0.0.1")] = "localhost"
        proc = run_tool(argv)
        if not checks.check(proc is not None and proc.returncode == 0, f"{what}: swaks exits 0",
                            None if proc is None else
                            (proc.stdout + proc.stderr).decode(errors="replace")[-1500:]):
            if proc is None:
                continue
            # swaks may fail after the data was accepted (e.g. at QUIT): still check what was stored.
        check_delivered(checks, daemon, rcpt, user, mid, msg, what)


def test_curl(checks, daemon, workdir):
    cases = [
        ("curl smtp:// --ssl-reqd AUTH=PLAIN on submission",
         f"smtp://127.0.0.1:{daemon.submission_port}", ["--ssl-reqd", "--login-options", "AUTH=PLAIN"],
         ALICE, BOB),
        ("curl smtps:// AUTH=LOGIN on submissions",
         f"smtps://127.0.0.1:{daemon.submissions_port}", ["--login-options", "AUTH=LOGIN"], BOB, ALICE),
    ]
    for what, url, extra, user, rcpt in cases:
        mid = unique_id("curl")
        msg = make_message(user, [rcpt], what, mid, body_lines=["curl body", ".leading dot", "last"])
        path = workdir / f"{mid}.eml"
        path.write_bytes(msg)
        argv = (["curl", "--silent", "--show-error", "--max-time", "30", url, "--cacert", str(daemon.cert_path),
                 "--mail-from", user, "--mail-rcpt", rcpt, "--user", f"{user}:{daemon.passwords[user]}",
                 "--upload-file", str(path)] + extra)
        proc = run_tool(argv)
        if not checks.check(proc is not None and proc.returncode == 0, f"{what}: curl exits 0",
                            None if proc is None else proc.stderr.decode(errors="replace")[-1500:]):
            continue
        check_delivered(checks, daemon, rcpt, user, mid, msg, what)


def test_sighup_reload(checks, daemon, workdir):
    """Replaces cert.pem/key.pem with a new self-signed pair, SIGHUP, new connections present it."""
    new_cert, new_key = workdir / "new-cert.pem", workdir / "new-key.pem"
    proc = run_tool(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-nodes", "-days", "2", "-subj", "/CN=localhost",
                     "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                     "-keyout", str(new_key), "-out", str(new_cert)])
    if proc is None or proc.returncode != 0:
        checks.note("skip: openssl CLI not available, SIGHUP reload not tested")
        return
    tls_dir = daemon.cert_path.parent
    for src, name in ((new_key, "key.pem"), (new_cert, "cert.pem")):
        tmp = tls_dir / (name + ".new")
        tmp.write_bytes(src.read_bytes())
        tmp.chmod(0o600)
        tmp.replace(tls_dir / name)
    want_der = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
    daemon.proc.send_signal(1)  # SIGHUP
    got_der = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            ctx = ssl.create_default_context(cafile=str(new_cert))
            with harness.RawSMTP(daemon.submissions_port, tls_context=ctx) as s:
                got_der = s.sock.getpeercert(binary_form=True)
                if got_der == want_der:
                    break
        except (OSError, ssl.SSLError, harness.SMTPError):
            pass
        time.sleep(0.2)
    checks.check(got_der == want_der, "SIGHUP: new TLS connections present the reloaded certificate")
    checks.check(daemon.alive(), "SIGHUP: the daemon is still running")


def run(checks):
    with Daemon("clients") as daemon, tempfile.TemporaryDirectory(prefix="tern-clients-") as tmp:
        workdir = Path(tmp)
        test_admin(checks, daemon)
        started = harness.start_daemon(checks, daemon)
        if not started:
            return
        test_smtplib(checks, daemon)
        test_swaks(checks, daemon, workdir)
        test_curl(checks, daemon, workdir)
        test_sighup_reload(checks, daemon, workdir)
        status = daemon.stop()
        checks.check(status == 0, "SIGTERM: ternd exits with status 0", f"exit status {status}\n"
                     + daemon.stderr_tail())


if __name__ == "__main__":
    harness.main_guard(run)
