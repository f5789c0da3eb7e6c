#!/usr/bin/env python3
"""End-to-end: real IMAP clients against ternd (issue 5).

- mutt (Debian package mutt) in batch mode: a private muttrc (-n -F), no real terminal (run under
  `script` for a pseudo-terminal, TERM=vt100), `push` of keys: `<pipe-message>cat > FILE` writes the
  delivered message (its headers and body must be in the file, byte-exact body line); a second run
  deletes the first message with `<delete-message><sync-mailbox>` and the store (`ternd mail list`) must
  have lost exactly that message.
- Python's imaplib doing what a mail program (Thunderbird-like) does at start-up: STARTTLS with the
  certificate verified, CAPABILITY, ID, LIST "" "*" with the special-use attributes, SELECT INBOX,
  UID FETCH 1:* (FLAGS), UID FETCH of BODY.PEEK[HEADER.FIELDS (...)] over a UID range (every message's
  header fields, no \\Seen set), IDLE receiving a message delivered over SMTP as EXISTS within 2 s, DONE;
  then delete-to-Trash with UID MOVE: OK [COPYUID ...], EXPUNGE, the message is in Trash and gone from
  INBOX on the server.

  python3 tests/e2e/test_imap_clients.py
"""

import imaplib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, BOB, Daemon, make_message, unique_id  # noqa: E402

MUTT = shutil.which("mutt")
SCRIPT = shutil.which("script")
SENDER = "sender@remote.test"


def deliver(d, rcpt, subject, body_lines):
    mid = unique_id(subject.replace(" ", "-"))
    msg = make_message(SENDER, rcpt, subject, mid, body_lines)
    code = harness.deliver_raw(d.mx_port, SENDER, rcpt, msg)
    if code != 250:
        raise RuntimeError(f"SMTP delivery answered {code}")
    return mid, msg


# ---- mutt -------------------------------------------------------------------------------------------
def mutt_rc(d, home, user):
    url = f"imap://{user.replace('@', '%40')}@127.0.0.1:{d.imap_port}/"
    rc = home / "muttrc"
    rc.write_text(f"""# private muttrc of the tern e2e tests: plaintext IMAP on loopback, nothing cached
set folder="{url}"
set spoolfile="{url}INBOX"
set imap_user="{user}"
set imap_pass="{d.passwords[user]}"
set ssl_starttls=no
set ssl_force_tls=no
set header_cache=""
set message_cachedir=""
set certificate_file="{home}/certificates"
set mail_check=0
set imap_keepalive=300
set timeout=5
set wait_key=no
set quit=yes
set delete=yes
set move=no
set mark_old=no
set pipe_decode=no
set sort=date-sent
""")
    return rc


def run_mutt(home, rc, keys, timeout=60):
    """mutt -n -F rc -f =INBOX with pushed keys, under `script` for a pseudo-terminal."""
    env = dict(os.environ, TERM="vt100", HOME=str(home), LC_ALL="C.UTF-8", MAIL="", MAILCHECK="")
    mutt_cmd = f"{MUTT} -n -F {rc} -f =INBOX -e 'push \"{keys}\"'"
    proc = subprocess.run([SCRIPT, "-qfec", mutt_cmd, "/dev/null"], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    screen = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[>=()][0-9A-Za-z]?|[\x0e\x0f\x08]", b"", proc.stdout)
    return proc.returncode, screen.decode(errors="replace")


def test_mutt(checks, d, tmp):
    if MUTT is None or SCRIPT is None:
        checks.check(False, "mutt reads a mailbox over IMAP", "mutt or script(1) not installed (scripts/bootstrap "
                     "installs them: apt-get install mutt bsdutils)")
        return
    home = tmp / "mutt"
    home.mkdir()
    rc = mutt_rc(d, home, BOB)
    mid1, msg1 = deliver(d, BOB, "mutt first", ["First message for mutt.", "Line two."])
    time.sleep(1.1)  # distinct Date ordering is by Date: header; keep deliveries apart anyway
    mid2, msg2 = deliver(d, BOB, "mutt second", ["Second message for mutt."])
    out = home / "piped.eml"
    # The index is sorted by date-sent; both have the same Date: header, so mutt keeps arrival order.
    status, screen = run_mutt(home, rc, f"<pipe-message>cat > {out}<enter><quit>")
    data = out.read_bytes() if out.exists() else b""
    checks.check(status == 0, "mutt -n -F muttrc -f =INBOX (batch, under script(1)) exits 0",
                 f"exit {status}\nscreen: {screen[-600:]}")
    checks.check("Msgs:2" in screen.replace(" ", ""), "mutt's status line shows 2 messages in the INBOX",
                 screen[-600:])
    checks.check(b"Subject: mutt first" in data and b"First message for mutt." in data
                 and mid1.encode() in data,
                 "mutt <pipe-message>: the first message (headers and body) comes out of mutt",
                 data[:600])
    stored = d.mail_cat(BOB, d.find_message(BOB, mid1)["uid"])
    norm = data.replace(b"\r\n", b"\n")
    checks.check(norm == stored.replace(b"\r\n", b"\n"),
                 "mutt <pipe-message>: exactly the stored message (ternd mail cat), line endings aside",
                 f"piped {len(norm)} bytes, stored {len(stored)} bytes")
    before = d.mail_list(BOB)
    status, screen = run_mutt(home, rc, "<delete-message><sync-mailbox><quit>")
    after = d.mail_list(BOB)
    left = [str(e.get("message_id") or "").strip("<>") for e in after]
    checks.check(status == 0 and len(before) == 2 and left == [mid2],
                 "mutt <delete-message><sync-mailbox>: the first message is expunged on the server, the second "
                 "stays", f"exit {status}; before {len(before)}, left {left}\nscreen: {screen[-400:]}")


# ---- imaplib: a mail program's start-up --------------------------------------------------------------
def imap_ok(typ):
    return typ == "OK"


def test_imaplib_startup(checks, d):
    uids = []
    for i in range(4):
        mid, _ = deliver(d, ALICE, f"startup {i}", [f"Body {i}."])
        uids.append(mid)
    imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
    m = imaplib.IMAP4("127.0.0.1", d.imap_port, timeout=harness.SOCKET_TIMEOUT)
    try:
        typ, _ = m.starttls(ssl_context=d.client_tls_context())
        checks.check(imap_ok(typ), "imaplib: STARTTLS with the certificate verified for localhost", typ)
        typ, caps = m.capability()
        capset = set(caps[0].decode().upper().split()) if caps and caps[0] else set()
        checks.check(imap_ok(typ) and {"IMAP4REV1", "AUTH=PLAIN", "IDLE", "UIDPLUS", "MOVE"} <= capset,
                     "imaplib: CAPABILITY after STARTTLS lists IMAP4rev1 AUTH=PLAIN IDLE UIDPLUS MOVE", caps)
        typ, data = m.login(ALICE, d.passwords[ALICE])
        checks.check(imap_ok(typ), "imaplib: LOGIN", data)
        typ, data = m._simple_command("ID", '("name" "Thunderbird" "version" "128.0")')
        typ, data = m._untagged_response(typ, data, "ID")
        checks.check(imap_ok(typ) and data and data[0], "imaplib: ID answers with an untagged ID", data)
        typ, data = m.list('""', "*")
        lines = [l.decode(errors="replace") for l in data or [] if l]
        want = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Junk": "\\Junk", "Trash": "\\Trash"}
        missing = [f"{name} {attr}" for name, attr in want.items()
                   if not any(re.search(rf'\({"[^)]*"}{re.escape(attr)}\b[^)]*\) "/" "?{name}"?$', l) for l in lines)]
        checks.check(imap_ok(typ) and any(re.search(r'"?INBOX"?$', l) for l in lines) and not missing,
                     'imaplib: LIST "" "*" has INBOX and the special-use mailboxes (RFC 6154 attributes)',
                     f"missing {missing}\n" + "\n".join(lines))
        typ, data = m.select("INBOX")
        checks.check(imap_ok(typ) and data and data[0] == b"4", "imaplib: SELECT INBOX -> 4 messages", data)
        typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
        got = [re.search(rb"UID (\d+)", l) for l in data if isinstance(l, bytes)]
        server_uids = [int(g.group(1)) for g in got if g]
        checks.check(imap_ok(typ) and len(server_uids) == 4 and server_uids == sorted(server_uids),
                     "imaplib: UID FETCH 1:* (FLAGS) -> 4 responses in ascending UID order", data)
        fields = "FROM TO CC BCC SUBJECT DATE MESSAGE-ID PRIORITY X-PRIORITY REFERENCES NEWSGROUPS IN-REPLY-TO " \
                 "CONTENT-TYPE REPLY-TO"
        lo, hi = (server_uids[0], server_uids[-1]) if server_uids else (1, 1)
        typ, data = m.uid("FETCH", f"{lo}:{hi}", f"(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS ({fields})])")
        heads = [part[1] for part in data if isinstance(part, tuple)]
        subjects = sorted(re.search(rb"Subject: ([^\r\n]*)", h).group(1).decode() for h in heads
                          if re.search(rb"Subject: ", h))
        checks.check(imap_ok(typ) and subjects == [f"startup {i}" for i in range(4)]
                     and all(h.endswith(b"\r\n\r\n") and b"Received:" not in h for h in heads),
                     "imaplib: UID FETCH lo:hi BODY.PEEK[HEADER.FIELDS (...)]: each message's asked fields only, "
                     "ending in a blank line", data[:3])
        typ, data = m.uid("FETCH", f"{lo}:{hi}", "(FLAGS)")
        checks.check(imap_ok(typ) and not any(b"\\Seen" in l for l in data if isinstance(l, bytes)),
                     "imaplib: BODY.PEEK did not set \\Seen", data)

        # IDLE (imaplib has no idle() before Python 3.14: the raw exchange over its socket).
        tag = m._new_tag()
        m.send(tag + b" IDLE\r\n")
        cont = m.readline()
        checks.check(cont.startswith(b"+"), "imaplib: IDLE -> '+' continuation", cont)
        t0 = time.monotonic()
        deliver(d, ALICE, "idle arrival", ["Arrived while idling."])
        m.sock.settimeout(2.0)
        seen, exists = [], None
        try:
            while exists is None:
                line = m.readline()
                if not line:
                    break
                seen.append(line)
                match = re.match(rb"\* (\d+) EXISTS", line)
                if match:
                    exists = int(match.group(1))
        except (socket.timeout, OSError):
            pass
        checks.check(exists == 5, "imaplib IDLE: * 5 EXISTS within 2 s of the SMTP delivery",
                     f"after {time.monotonic() - t0:.2f}s: {seen}")
        m.sock.settimeout(harness.SOCKET_TIMEOUT)
        m.send(b"DONE\r\n")
        tagged = None
        while tagged is None:
            line = m.readline()
            if not line:
                break
            if line.startswith(tag + b" "):
                tagged = line
        checks.check(tagged is not None and tagged.split()[1] == b"OK", "imaplib IDLE: DONE -> tagged OK", tagged)

        # Delete to Trash: UID MOVE (RFC 6851) of the first message.
        victim = server_uids[0] if server_uids else 1
        typ, data = m.uid("MOVE", str(victim), "Trash")
        copyuid = m.untagged_responses.get("COPYUID") or []
        expunged = m.untagged_responses.get("EXPUNGE") or []
        m.untagged_responses.pop("COPYUID", None)
        checks.check(imap_ok(typ) and copyuid and expunged == [b"1"],
                     "imaplib: UID MOVE <uid> Trash -> OK, [COPYUID ...], * 1 EXPUNGE",
                     (typ, data, copyuid, expunged))
        typ, data = m.select("Trash", readonly=True)
        checks.check(imap_ok(typ) and data and data[0] == b"1", "imaplib: Trash now holds 1 message", data)
        inbox = [str(e.get("message_id") or "").strip("<>") for e in d.mail_list(ALICE)]
        trash = [str(e.get("message_id") or "").strip("<>") for e in d.mail_list(ALICE, mailbox="Trash")]
        checks.check(uids[0] not in inbox and trash == [uids[0]],
                     "server side (ternd mail list): the moved message left INBOX and is in Trash",
                     f"inbox {inbox}\ntrash {trash}")
        typ, _ = m.logout()
        checks.check(typ == "BYE", "imaplib: LOGOUT", typ)
    except (imaplib.IMAP4.error, OSError) as exc:
        checks.check(False, "imaplib start-up flow ran to the end", f"{type(exc).__name__}: {exc}")
        try:
            m.shutdown()
        except OSError:
            pass


def run(checks):
    with Daemon("imap-clients", imap=True) as d, tempfile.TemporaryDirectory(prefix="tern-imap-clients-") as tmp:
        if not harness.start_daemon(checks, d):
            return
        checks.guard("mutt tests ran", test_mutt, checks, d, Path(tmp))
        checks.guard("imaplib start-up tests ran", test_imaplib_startup, checks, d)
        checks.check(d.alive(), "ternd still running after every client")
        status = d.stop()
        checks.check(status == 0, "SIGTERM: ternd exits with status 0", f"exit status {status}\n" + d.stderr_tail())


if __name__ == "__main__":
    harness.main_guard(run)
