#!/usr/bin/env python3
"""End-to-end: client usability bugs of issue 10 (section 5), each against the real binaries.

- `tern shell` at a real terminal (a pty, so libedit reads the keys): `search Grüße` typed as UTF-8 finds
  the message whose subject holds "Grüße" and not the one holding "Gre" (libedit dropped the non-ASCII
  characters while nothing called setlocale), with a UTF-8 environment and with LC_ALL=C (tern falls back
  to C.UTF-8 for what is typed).
- `tern list` shows the folder, so the Sent copy and the INBOX copy of one message are different lines;
  `--json` has the folder too.
- A reader that stops early (`| head`): `ternd mail cat`, `ternd user list` and `tern show --raw` end quietly (exit 0 for
  ternd, no "Broken pipe" on stderr), whether SIGPIPE is ignored or not when they start.
- `ternd --help` describes IMAP as on (it said "IMAP when enabled").
- `tern fetch --protocol imap` after a POP3 fetch of the same ternd account downloads nothing (ternd's UIDL
  is UIDVALIDITY.UID, the IMAP key's twin), and the other way round; 8 messages stay 8, not 16.
  (tests/e2e/test_client_reference.py does the same against Dovecot, where Message-ID and size match.)
- `tern account add` on ports that say nothing about their security (ternd's demo ports, the harness's
  random ones): STARTTLS servers are recognised by their plain-text greeting, implicit-TLS ones by their
  silence; implicit TLS named on a STARTTLS port fails at once saying the server greets in plain text and
  to use starttls; STARTTLS named on an implicit-TLS port fails within 20 s (not 30 s) saying to use tls.
"""

import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, BOB, Daemon, deliver_raw, start_daemon  # noqa: E402
import client_helpers as ch  # noqa: E402
from client_helpers import Tern  # noqa: E402

GRUSSE_SUBJECT = "=?UTF-8?Q?Herzliche_Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="
GRETNA_SUBJECT = "Greetings from Gretna"


def eml(subject, message_id, body="Hello.\r\n", sender="Bob <bob@example.test>"):
    return (f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


def import_files(checks, t, tmp, files, folder=None):
    paths = []
    for name, data in files:
        p = tmp / name
        p.write_bytes(data)
        paths.append(str(p))
    args = ["import"] + paths + (["--folder", folder] if folder else [])
    r = t.run(args)
    checks.check(r.rc == 0, f"tern import {len(paths)} message(s){' into ' + folder if folder else ''}", r.detail())


# ---- the shell at a terminal -----------------------------------------------------------------------
class PtyShell:
    """tern shell on a pseudo-terminal, so it edits lines with libedit as for a person."""

    def __init__(self, t, env_update):
        env = dict(t.env)
        for k in ("LC_ALL", "LANG", "LC_CTYPE"):
            env.pop(k, None)
        env.update(env_update)
        env["TERM"] = "xterm"
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execve(str(ch.TERN), [str(ch.TERN), "shell"], env)
            finally:
                os._exit(127)
        self.out = b""

    def read_until(self, pred, timeout=15.0):
        end = time.monotonic() + timeout
        while not pred(self.out) and time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                self.out += data
        return pred(self.out)

    def type(self, data):
        # Key by key, as a terminal delivers them.
        for i in range(len(data)):
            os.write(self.fd, data[i:i + 1])
            time.sleep(0.005)

    def close(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except OSError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass

    def text(self):
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.out.decode("utf-8", errors="replace"))


def test_shell_utf8(checks, tmp):
    t = Tern(tmp, "shell")
    import_files(checks, t, tmp, [("grusse.eml", eml(GRUSSE_SUBJECT, "grusse@example.test")),
                                  ("gretna.eml", eml(GRETNA_SUBJECT, "gretna@example.test"))])
    for label, env in (("a UTF-8 locale (LANG=C.UTF-8)", {"LANG": "C.UTF-8"}),
                       ("LC_ALL=C", {"LC_ALL": "C"}),
                       ("no locale variables at all", {})):
        sh = PtyShell(t, env)
        try:
            prompted = sh.read_until(lambda b: b"tern>" in b or b"> " in b)
            checks.check(prompted, f"tern shell on a pty prompts ({label})", sh.text()[-500:])
            mark = len(sh.out)
            sh.type("search Grüße\r".encode())
            got = sh.read_until(lambda b: b"Herzliche" in b[mark:] or b"no messages" in b[mark:]
                                or b"Greetings" in b[mark:])
            time.sleep(0.3)
            sh.read_until(lambda b: False, 0.3)
            after = sh.out[mark:].decode("utf-8", errors="replace")
            checks.check(got and "Herzliche" in after and "Greetings" not in after,
                         f"typed `search Grüße` finds the Grüße message and not 'Gre…' ({label})", after[-800:])
            sh.type(b"quit\r")
            sh.read_until(lambda b: False, 0.5)
        finally:
            sh.close()


# ---- list shows the folder -------------------------------------------------------------------------
def test_list_folder(checks, tmp):
    t = Tern(tmp, "folders")
    same = eml("Quarterly figures", "same@example.test")
    import_files(checks, t, tmp, [("inbox-copy.eml", same)])
    import_files(checks, t, tmp, [("sent-copy.eml", same)], folder="Sent")
    r = t.run(["list"])
    lines = [line for line in r.stdout.splitlines() if "Quarterly figures" in line]
    checks.check(r.rc == 0 and len(lines) == 2, "tern list: two lines for the two copies", r.detail())
    header = r.stdout.splitlines()[0] if r.stdout else ""
    checks.check("FOLDER" in header, "tern list: the header names a FOLDER column", header)
    checks.check(len(lines) == 2 and lines[0] != lines[1]
                 and any(re.search(r"\bSent\b", line) for line in lines)
                 and any(re.search(r"\bINBOX\b", line) for line in lines),
                 "tern list: the Sent copy and the INBOX copy differ by their folder", "\n".join(lines))
    entries = t.list_json()
    folders = sorted(e.get("folder") for e in entries)
    checks.check(folders == ["INBOX", "Sent"], "tern list --json: each message has its folder", entries)
    r = t.run(["search", "Quarterly"])
    checks.check(r.rc == 0 and "Sent" in r.stdout and "INBOX" in r.stdout,
                 "tern search prints the same table with the folder", r.detail())


# ---- early readers: | head ---------------------------------------------------------------------------
def read_head_and_close(argv, env=None, ignore_sigpipe=False, nbytes=100):
    """Runs argv with stdout to a pipe, reads nbytes, closes the pipe as `head -c` does; returns
    (exit status, first bytes, stderr)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            restore_signals=not ignore_sigpipe)
    head = proc.stdout.read(nbytes)
    proc.stdout.close()
    try:
        err = proc.stderr.read()
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode, head, err.decode(errors="replace")


def test_broken_pipe(checks, tmp):
    d = Daemon("usability")
    try:
        if not start_daemon(checks, d):
            return
        body = "".join(f"line {i:06d} of a long message that fills more than a pipe buffer\r\n" for i in range(8000))
        msg = eml("Long message", "long@example.test", body=body, sender="Bob <bob@example.test>")
        code = deliver_raw(d.mx_port, BOB, [ALICE], msg)
        checks.check(code == 250, "a 500 KB message delivered to alice", code)
        uid = None
        for _ in range(50):
            listed = d.mail_list(ALICE)
            if listed:
                uid = listed[0].get("uid")
                break
            time.sleep(0.1)
        if not checks.check(uid is not None, "it is in alice's INBOX", listed):
            return
        argv = [str(harness.TERND), "mail", "cat", ALICE, str(uid), "--data-dir", str(d.data_dir)]
        for ignored in (False, True):
            how = "SIGPIPE ignored" if ignored else "SIGPIPE default"
            rc, head, err = read_head_and_close(argv, ignore_sigpipe=ignored)
            checks.check(head.startswith(b"Return-Path") or head.startswith(b"Received") or len(head) == 100,
                         f"ternd mail cat | head: the first bytes arrive ({how})", head)
            checks.check(rc == 0 and err == "", f"ternd mail cat | head: exit 0, nothing on stderr ({how})",
                         f"exit {rc}, stderr {err!r}")
        # A reader gone before anything is written (| head -c0, or | head once the output is
        # bigger than the pipe): the one write at the end fails with EPIPE.
        for sub in (["user", "list"], ["user", "list", "--json"]):
            argv = [str(harness.TERND), *sub, "--data-dir", str(d.data_dir)]
            for ignored in (False, True):
                how = "SIGPIPE ignored" if ignored else "SIGPIPE default"
                rfd, wfd = os.pipe()
                os.close(rfd)
                proc = subprocess.run(argv, stdout=wfd, stderr=subprocess.PIPE, timeout=30,
                                      restore_signals=not ignored)
                os.close(wfd)
                err = proc.stderr.decode(errors="replace")
                checks.check(proc.returncode == 0 and err == "",
                             f"ternd {' '.join(sub)} into a closed pipe: exit 0, nothing on stderr ({how})",
                             f"exit {proc.returncode}, stderr {err!r}")
        t = Tern(tmp, "pipe")
        import_files(checks, t, tmp, [("long.eml", msg)])
        entries = t.list_json()
        if checks.check(len(entries) == 1, "the long message is in tern's local store", entries):
            for ignored in (False, True):
                how = "SIGPIPE ignored" if ignored else "SIGPIPE default"
                rc, head, err = read_head_and_close([str(ch.TERN), "show", "--raw", str(entries[0]["id"])],
                                                    env=t.env, ignore_sigpipe=ignored)
                checks.check(len(head) == 100 and "pipe" not in err.lower() and "error" not in err.lower(),
                             f"tern show --raw | head: no 'Broken pipe' or write error on stderr ({how})",
                             f"exit {rc}, stderr {err!r}")
    finally:
        d.cleanup()


# ---- POP3 then IMAP on the same account ------------------------------------------------------------------
def test_pop3_then_imap(checks, tmp):
    d = Daemon("usability-fetch", imap=True)
    try:
        if not start_daemon(checks, d):
            return
        count = 8
        for i in range(count):
            code = deliver_raw(d.mx_port, BOB, [ALICE], eml(f"Both protocols {i}", f"both.{i}@example.test"))
            checks.check(code == 250, f"message {i + 1} of {count} delivered to alice", code)
        for first, second in (("pop3", "imap"), ("imap", "pop3")):
            t = Tern(tmp, f"{first}-then-{second}")
            r = t.account_add("alice", ALICE, harness.PASSWORDS[ALICE], ca_file=str(d.cert_path),
                              pop3=f"localhost:{d.pop3s_port}", imap=f"localhost:{d.imaps_port}",
                              extra=["--pop3-security", "tls", "--imap-security", "tls"])
            if not checks.check(r.rc == 0, f"{first}-then-{second}: account with ternd's POP3S and IMAPS", r.detail()):
                continue
            r = t.run(["fetch", "--protocol", first, "--keep", "--json"], timeout=60)
            new, _ = ch.fetch_counts(r)
            checks.check(r.rc == 0 and new == count, f"{first}-then-{second}: {first} fetch: {count} new", r.detail())
            r = t.run(["fetch", "--protocol", second, "--keep", "--json"], timeout=60)
            new, skipped = ch.fetch_counts(r)
            checks.check(r.rc == 0 and new == 0 and skipped == count,
                         f"{first}-then-{second}: the {second} fetch after it: 0 new, {count} already stored "
                         "(ternd's UIDL is UIDVALIDITY.UID)", r.detail())
            entries = t.list_json()
            checks.check(len(entries) == count, f"{first}-then-{second}: {count} messages in the local store, not "
                         f"{2 * count}", len(entries))
    finally:
        d.cleanup()


# ---- security on ports that do not say -----------------------------------------------------------------
def security_of(t, kind):
    r = t.run(["account", "list", "--json"])
    try:
        entries = ch.parse_json_any(r.stdout)
        return entries[0][kind]["security"]
    except Exception:  # noqa: BLE001
        return f"(unreadable: {r.stdout[:300]!r})"


def test_security_guess(checks, tmp):
    """ternd's demo ports (2587, 2110, 2143 STARTTLS; 2465, 2995, 2993 implicit TLS) say nothing about
    their security; the harness's random ports are the same case. account add looked only at the port
    number and picked implicit TLS for all of them."""
    d = Daemon("usability-tls", imap=True)
    try:
        if not start_daemon(checks, d):
            return
        pw = harness.PASSWORDS[ALICE]
        t = Tern(tmp, "guess-starttls")
        r = t.account_add("alice", ALICE, pw, ca_file=str(d.cert_path), smtp=f"localhost:{d.submission_port}",
                          pop3=f"localhost:{d.pop3_port}", imap=f"localhost:{d.imap_port}")
        checks.check(r.rc == 0 and "greets in plain text" in r.stderr,
                     "account add on STARTTLS ports without --security: says the servers greet in plain text",
                     r.detail())
        got = {k: security_of(t, k) for k in ("smtp", "pop3", "imap")}
        checks.check(got == {"smtp": "starttls", "pop3": "starttls", "imap": "starttls"},
                     "... and picks starttls for each", got)
        r = t.run(["account", "test"], timeout=60)
        checks.check(r.rc == 0 and r.stdout.count("ok") >= 3, "... and account test logs in on all three",
                     r.detail())
        t = Tern(tmp, "guess-tls")
        r = t.account_add("alice", ALICE, pw, ca_file=str(d.cert_path), smtp=f"localhost:{d.submissions_port}",
                          pop3=f"localhost:{d.pop3s_port}", imap=f"localhost:{d.imaps_port}")
        got = {k: security_of(t, k) for k in ("smtp", "pop3", "imap")}
        checks.check(r.rc == 0 and got == {"smtp": "tls", "pop3": "tls", "imap": "tls"},
                     "account add on implicit-TLS ports without --security: picks tls", (got, r.detail()))

        # Wrong choices named explicitly: clear, fast errors.
        t = Tern(tmp, "wrong-tls")
        r = t.account_add("alice", ALICE, pw, ca_file=str(d.cert_path), smtp=f"localhost:{d.submission_port}",
                          extra=["--smtp-security", "tls"])
        checks.check(r.rc == 0, "account add --smtp-security tls on the STARTTLS submission port", r.detail())
        r = t.run(["account", "test"], timeout=60)
        checks.check(r.rc == 1 and "does not speak implicit TLS" in r.stdout + r.stderr
                     and "starttls" in (r.stdout + r.stderr).split("does not speak implicit TLS", 1)[-1]
                     and r.elapsed < 15,
                     "account test: 'does not speak implicit TLS ... use security starttls', at once", r.detail())
        t = Tern(tmp, "wrong-starttls")
        r = t.account_add("alice", ALICE, pw, ca_file=str(d.cert_path), imap=f"localhost:{d.imaps_port}",
                          extra=["--imap-security", "starttls"])
        checks.check(r.rc == 0, "account add --imap-security starttls on the IMAPS port", r.detail())
        r = t.run(["account", "test"], timeout=60)
        out = r.stdout + r.stderr
        checks.check(r.rc == 1 and "no greeting" in out and "security tls" in out and r.elapsed < 20,
                     "account test: 'no greeting ... use security tls' within 20 s (was a 30 s timeout "
                     "with no hint)", r.detail())
    finally:
        d.cleanup()


def test_ternd_help(checks):
    r = harness.run_ternd(["--help"])
    text = r.stdout.decode()
    checks.check("when enabled" not in text and "IMAP" in text,
                 "ternd --help lists IMAP as served (not 'IMAP when enabled')", text)


def run(checks):
    if not ch.tern_built(checks):
        return
    with tempfile.TemporaryDirectory(prefix="tern-usability-") as tmpdir:
        tmp = Path(tmpdir)
        checks.guard("shell UTF-8 tests ran to the end", test_shell_utf8, checks, tmp)
        checks.guard("list folder tests ran to the end", test_list_folder, checks, tmp)
        checks.guard("broken pipe tests ran to the end", test_broken_pipe, checks, tmp)
        checks.guard("ternd --help test ran to the end", test_ternd_help, checks)
        checks.guard("POP3 then IMAP tests ran to the end", test_pop3_then_imap, checks, tmp)
        checks.guard("security guess tests ran to the end", test_security_guess, checks, tmp)


if __name__ == "__main__":
    harness.main_guard(run)
