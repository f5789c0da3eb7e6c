#!/usr/bin/env python3
"""End-to-end: `tern watch` (issue 6) against real servers on loopback.

- ternd with IMAP (the harness's Daemon(imap=True)); the client's account uses its IMAPS port and trusts
  its certificate with --ca-file. A watcher with --exec and --fetch, and a second one with --json (each in
  its own TERN_HOME), both over IMAP IDLE:
  - a message sent over SMTP prints `New mail: From <from> — <subject>` with the RFC 2047 subject and
    display name decoded, and the same event as one JSON object;
  - --exec gets TERN_FROM, TERN_SUBJECT, TERN_MAILBOX, TERN_UID, TERN_SIZE, TERN_DATE, TERN_ACCOUNT in its
    environment; subjects holding `$(touch ...)`, backquotes and `; touch ...` run nothing (the marker files
    never appear) and arrive verbatim; the watcher does not wait for the command (two messages are reported
    while the first command still sleeps) and reaps it (no zombie afterwards);
  - --fetch stores the message: `tern list --json` shows it;
  - ternd stopped while the watchers run: they say "reconnecting in 1 s, 2 s, 4 s" on stderr; ternd comes
    back without IMAP, takes two messages over SMTP, and comes back with IMAP: both watchers reconnect and
    report those two messages once each, and nothing that was reported before;
  - a watcher stopped with SIGTERM exits 0; mail delivered while it is not running is reported once each
    when it starts again; with IDLE renewed every second (--idle-refresh 1) live mail still arrives;
    SIGINT stops it too (exit 0).
- Desktop notifications: a private D-Bus session (dbus-run-session) with a small notification daemon
  (python3-gi: org.freedesktop.Notifications, logging each Notify call): `--notify` sends a Notify whose
  summary is "New mail from <from>" and whose body is the subject; with no session bus reachable, one
  warning on stderr and the watcher goes on reporting mail.
- --via push against a scripted push server (Python, this file) that speaks the push contract over implicit
  TLS and over STARTTLS: AUTH PLAIN with the account's credentials, WATCH INBOX, live events printed; the
  server drops the connection and publishes two messages meanwhile: the client reconnects with
  `WATCH INBOX SINCE <last uid>` and reports them once each; a "resync" event makes it reconnect at once;
  SIGTERM sends LOGOUT and exits 0. Against ternd's own push listener too. A first connection that fails
  (nothing listening, a peer that speaks SMTP instead of push, a refused certificate) exits 1 with a message
  instead of retrying forever (issue 10).
- Dovecot (as tests/e2e/test_client_reference.py starts it): --via idle over IMAPS reports a message
  placed in the maildir while watching.
"""

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, BOB, PASSWORDS, Daemon, deliver_raw, start_daemon  # noqa: E402
import client_helpers as ch  # noqa: E402
from client_helpers import Tern  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"
DASH = "\u2014"


# ---- helpers ---------------------------------------------------------------------------------------
class Watch:
    """A running `tern watch` with its stdout and stderr collected line by line."""

    def __init__(self, tern, args, env=None):
        full_env = dict(tern.env)
        full_env.update(env or {})
        self.argv = tern.argv(["watch"] + list(args))
        self.proc = subprocess.Popen(self.argv, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self.cond = threading.Condition()
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._reader, args=(stream, sink), daemon=True).start()

    def _reader(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self.cond:
                sink.append((time.monotonic(), raw.decode("utf-8", errors="replace").rstrip("\n")))
                self.cond.notify_all()

    def wait(self, sink, pred, timeout):
        """The first line of sink that pred accepts, waiting up to timeout seconds (less once the
        process has exited and its output had a moment to arrive)."""
        deadline = time.monotonic() + timeout
        exited_at = None
        with self.cond:
            while True:
                for _, line in sink:
                    if pred(line):
                        return line
                now = time.monotonic()
                if exited_at is None and self.proc.poll() is not None:
                    exited_at = now
                if now >= deadline or (exited_at is not None and now - exited_at > 1.0):
                    return None
                self.cond.wait(min(deadline - now, 0.2))

    def wait_out(self, pred, timeout=15):
        return self.wait(self.out, pred, timeout)

    def wait_err(self, pred, timeout=15):
        return self.wait(self.err, pred, timeout)

    def lines(self):
        with self.cond:
            return [line for _, line in self.out]

    def err_lines(self):
        with self.cond:
            return [line for _, line in self.err]

    def count(self, text):
        return sum(1 for line in self.lines() if text in line)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        time.sleep(0.1)  # let the readers take the last lines
        return self.proc.returncode

    def detail(self):
        return ("stdout:\n" + "\n".join(self.lines()[-30:]) + "\nstderr:\n" + "\n".join(self.err_lines()[-30:]))


def watching(w):
    return w.wait_err(lambda l: "watching" in l, 20) is not None


def mime_message(from_header, subject_header, body="Hello.", msg_id=None):
    msg_id = msg_id or harness.unique_id("watch")
    return (f"From: {from_header}\r\nTo: <{ALICE}>\r\nSubject: {subject_header}\r\n"
            f"Date: Mon, 24 Nov 2025 12:00:00 +0000\r\nMessage-ID: <{msg_id}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def send(d, subject_header, from_header="Bob Example <bob@example.test>"):
    return deliver_raw(d.mx_port, BOB, [ALICE], mime_message(from_header, subject_header))


def b_encode(text):
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def new_line(from_text, subject):
    return f"New mail: From {from_text} {DASH} {subject}"


def zombies_of(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        rest = text[text.rfind(")") + 2:].split()
        if len(rest) > 1 and rest[1] == str(pid) and rest[0] == "Z":
            out.append(stat.parent.name)
    return out


def read_env0(path):
    env = {}
    for item in path.read_bytes().split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode()] = v.decode("utf-8", errors="replace")
    return env


# ---- ternd over IMAP IDLE ----------------------------------------------------------------------------
def test_ternd(checks, tmp):
    d = Daemon("watch", imap=True)
    watchers = []
    try:
        if not start_daemon(checks, d, "ternd serve with IMAP started"):
            return
        tok = secrets.token_hex(3)
        outdir = tmp / "exec-out"
        outdir.mkdir()
        homes = {}
        for name in ("main", "json"):
            t = Tern(tmp, name)
            r = t.account_add("alice", ALICE, PASSWORDS[ALICE], imap=f"localhost:{d.imaps_port}",
                              ca_file=str(d.cert_path), extra=["--imap-security", "tls"])
            checks.check(r.rc == 0, f"account alice (IMAPS, --ca-file) in the {name} home", r.detail())
            homes[name] = t
        # Written aside and renamed, so the test never reads a file the shell has created but env
        # has not filled yet.
        exec_cmd = (f'env -0 > "{outdir}/$TERN_UID.tmp" && mv "{outdir}/$TERN_UID.tmp" '
                    f'"{outdir}/$TERN_UID.env0"; sleep 4; : > "{outdir}/$TERN_UID.done"')
        w1 = Watch(homes["main"], ["--exec", exec_cmd, "--fetch"])
        w2 = Watch(homes["json"], ["--json"])
        watchers += [w1, w2]
        ok = checks.check(watching(w1) and watching(w2), "two watchers (text with --exec --fetch, --json) "
                          "say they are watching INBOX over IMAP IDLE", w1.detail() + "\n" + w2.detail())
        if not ok:
            return

        # 1. one message: the line, the JSON object, the environment of --exec, the local store
        subj1 = f"Grüße {tok} one"
        code = send(d, b_encode(subj1), from_header=f"{b_encode('Böb Ëxample')} <bob@example.test>")
        checks.check(code == 250, "SMTP delivery of message 1 to alice", code)
        want = new_line("Böb Ëxample <bob@example.test>", subj1)
        line = w1.wait_out(lambda l: l == want)
        checks.check(line is not None, f"the New mail line with the decoded name and subject: {want}",
                     w1.detail())
        jline = w2.wait_out(lambda l: subj1 in l)
        ev = None
        try:
            ev = json.loads(jline) if jline else None
        except json.JSONDecodeError:
            pass
        checks.check(isinstance(ev, dict) and ev.get("type") == "new" and ev.get("subject") == subj1
                     and ev.get("from") == "Böb Ëxample <bob@example.test>" and ev.get("mailbox") == "INBOX"
                     and ev.get("account") == "alice" and isinstance(ev.get("uid"), int) and ev["uid"] > 0
                     and isinstance(ev.get("size"), int) and ev["size"] > 0
                     and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", ev.get("date", "")) is not None
                     and ev.get("missed") is False,
                     "--json prints one JSON object for it (type, account, mailbox, uid, from, subject, date, "
                     "size, missed)", w2.detail())
        uid1 = ev.get("uid") if isinstance(ev, dict) else None
        env_file = outdir / f"{uid1}.env0"
        deadline = time.monotonic() + 10
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        env = read_env0(env_file) if env_file.exists() else {}
        checks.check(env.get("TERN_FROM") == "Böb Ëxample <bob@example.test>" and env.get("TERN_SUBJECT") == subj1
                     and env.get("TERN_MAILBOX") == "INBOX" and env.get("TERN_UID") == str(uid1)
                     and env.get("TERN_ACCOUNT") == "alice" and env.get("TERN_SIZE", "0").isdigit()
                     and int(env.get("TERN_SIZE", "0")) == ev.get("size")
                     and env.get("TERN_DATE") == ev.get("date"),
                     "--exec ran with TERN_FROM, TERN_SUBJECT, TERN_MAILBOX, TERN_UID, TERN_SIZE, TERN_DATE, "
                     "TERN_ACCOUNT in its environment", {k: v for k, v in env.items() if k.startswith("TERN_")})
        stored = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                stored = homes["main"].list_json()
            except (RuntimeError, ValueError):
                stored = []
            if any(m.get("subject") == subj1 for m in stored):
                break
            time.sleep(0.3)
        checks.check(any(m.get("subject") == subj1 for m in stored),
                     "--fetch stored it: tern list --json shows the message", str(stored)[:800])

        # 2. hostile subjects: nothing runs, the values arrive verbatim; no waiting for --exec
        marks = [tmp / f"pwned-{i}" for i in range(3)]
        hostile = [f"$(touch {marks[0]}) {tok} a", f"`touch {marks[1]}` {tok} b",
                   f"x; touch {marks[2]}; {tok} c"]
        for s in hostile:
            checks.check(send(d, s) == 250, f"SMTP delivery of a subject with shell syntax: {s!r}")
        seen = [w1.wait_out(lambda l, s=s: l.endswith(f"{DASH} {s}")) for s in hostile]
        done_then = sorted(p.name for p in outdir.glob("*.done"))
        checks.check(all(seen), "each hostile subject is reported verbatim", w1.detail())
        checks.check(len(done_then) <= 1,
                     "the three reports did not wait for the --exec commands (each sleeps 4 s before it "
                     "is done; at most message 1's had finished)", done_then)
        deadline = time.monotonic() + 20
        while len(list(outdir.glob("*.done"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        envs = [read_env0(p) for p in sorted(outdir.glob("*.env0"))]
        got = {e.get("TERN_SUBJECT") for e in envs}
        checks.check(all(s in got for s in hostile), "--exec saw each hostile subject verbatim in TERN_SUBJECT",
                     sorted(got))
        checks.check(not any(m.exists() for m in marks),
                     "no command embedded in a subject ran ($(...), `...`, ; touch)",
                     [str(m) for m in marks if m.exists()])
        z = zombies_of(w1.proc.pid)
        checks.check(not z, "finished --exec commands were reaped (no zombie children)", z)

        # 3. ternd goes away: backoff on stderr; mail delivered meanwhile is reported once each
        before = len(w1.lines())
        d.stop()
        lines = [w1.wait_err(lambda l, n=n: f"reconnecting in {n} s" in l, 20) for n in (1, 2, 4)]
        checks.check(all(lines), "with ternd down the watcher retries after 1 s, 2 s, 4 s (said on stderr)",
                     w1.detail())
        d.imap = False
        missed = [f"missed {tok} {i}" for i in range(2)]
        try:
            d.start()
            for s in missed:
                checks.check(send(d, s) == 250, f"delivery while IMAP is down: {s!r}")
        finally:
            d.stop()
        d.imap = True
        start_daemon(checks, d, "ternd restarted with IMAP")
        for w, name in ((w1, "text"), (w2, "json")):
            checks.check(w.wait_err(lambda l: "reconnected" in l, 70) is not None,
                         f"the {name} watcher reconnected", w.detail())
            for s in missed:
                checks.check(w.wait_out(lambda l, s=s: s in l, 15) is not None,
                             f"the {name} watcher reported {s!r}, delivered while it was away", w.detail())
        time.sleep(1.0)
        for w, name in ((w1, "text"), (w2, "json")):
            counts = {s: w.count(s) for s in missed + [subj1] + hostile}
            checks.check(all(c == 1 for c in counts.values()),
                         f"the {name} watcher reported every message exactly once across the restart", counts)
        checks.check(len(w1.lines()) == before + 2, "nothing but the two missed messages was reported after "
                     "reconnecting", w1.detail())
        mj = [json.loads(l) for l in w2.lines() if "missed" in l and tok in l and l.startswith("{")]
        checks.check(any(e.get("missed") is True for e in mj), "--json marks them \"missed\": true",
                     [l for l in w2.lines()][-3:])

        # 4. SIGTERM: logout, exit 0; a restart reports what came meanwhile, once each
        rc = w1.stop(signal.SIGTERM)
        checks.check(rc == 0, "SIGTERM: the watcher logs out and exits 0", w1.detail())
        later = [f"while stopped {tok} {i}" for i in range(2)]
        for s in later:
            send(d, s)
        w3 = Watch(homes["main"], ["--idle-refresh", "1"])
        watchers.append(w3)
        for s in later:
            checks.check(w3.wait_out(lambda l, s=s: s in l, 20) is not None,
                         f"restarted watcher reports {s!r}, delivered while it was stopped", w3.detail())
        time.sleep(1.0)
        checks.check(len(w3.lines()) == 2 and all(w3.count(s) == 1 for s in later),
                     "and only those, once each", w3.detail())
        subj_live = f"live after restart {tok}"
        send(d, subj_live)
        time.sleep(2.5)  # a few DONE / IDLE rounds (--idle-refresh 1)
        send(d, subj_live + " 2")
        checks.check(w3.wait_out(lambda l: subj_live in l) is not None
                     and w3.wait_out(lambda l: subj_live + " 2" in l) is not None,
                     "then reports live mail again, also after IDLE was ended and restarted (--idle-refresh 1)",
                     w3.detail())
        rc = w3.stop(signal.SIGINT)
        checks.check(rc == 0, "SIGINT: exit 0", w3.detail())
        rc = w2.stop(signal.SIGTERM)
        checks.check(rc == 0, "the --json watcher exits 0 on SIGTERM", w2.detail())

        # 5. desktop notifications on a private session bus
        test_notify(checks, tmp, d, homes["main"], tok)
        test_ternd_push(checks, tmp, homes["main"], tok)
    finally:
        for w in watchers:
            w.stop(signal.SIGKILL)
        d.cleanup()


# ---- desktop notifications ---------------------------------------------------------------------------
NOTIFY_DAEMON = r'''
import json, os, sys
from gi.repository import Gio, GLib

XML = """<node><interface name="org.freedesktop.Notifications">
<method name="Notify"><arg type="s" direction="in"/><arg type="u" direction="in"/><arg type="s" direction="in"/>
<arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="as" direction="in"/>
<arg type="a{sv}" direction="in"/><arg type="i" direction="in"/><arg type="u" direction="out"/></method>
<method name="CloseNotification"><arg type="u" direction="in"/></method>
<method name="GetCapabilities"><arg type="as" direction="out"/></method>
<method name="GetServerInformation"><arg type="s" direction="out"/><arg type="s" direction="out"/>
<arg type="s" direction="out"/><arg type="s" direction="out"/></method>
<signal name="NotificationClosed"><arg type="u"/><arg type="u"/></signal>
<signal name="ActionInvoked"><arg type="u"/><arg type="s"/></signal>
</interface></node>"""

log_path, ready_path = sys.argv[1], sys.argv[2]
node = Gio.DBusNodeInfo.new_for_xml(XML)
counter = [0]

def call(conn, sender, path, iface, method, params, invocation):
    if method == "Notify":
        app, replaces, icon, summary, body, actions, hints, timeout = params.unpack()
        counter[0] += 1
        with open(log_path, "a") as f:
            f.write(json.dumps({"app": app, "icon": icon, "summary": summary, "body": body,
                                "category": hints.get("category")}) + "\n")
        invocation.return_value(GLib.Variant("(u)", (counter[0],)))
    elif method == "GetCapabilities":
        invocation.return_value(GLib.Variant("(as)", (["body"],)))
    elif method == "GetServerInformation":
        invocation.return_value(GLib.Variant("(ssss)", ("tern-test", "tern", "1", "1.2")))
    else:
        invocation.return_value(None)

def acquired(conn, name):
    with open(ready_path, "w") as f:
        f.write(os.environ["DBUS_SESSION_BUS_ADDRESS"])

def bus(conn, name):
    conn.register_object("/org/freedesktop/Notifications", node.interfaces[0], call, None, None)

Gio.bus_own_name(Gio.BusType.SESSION, "org.freedesktop.Notifications", Gio.BusNameOwnerFlags.NONE,
                 bus, acquired, None)
loop = GLib.MainLoop()
GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 15, loop.quit)
loop.run()
'''


def test_notify(checks, tmp, d, tern, tok):
    have = (shutil.which("dbus-run-session") is not None and subprocess.run(
        [SYSTEM_PYTHON, "-c", "from gi.repository import Gio"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL).returncode == 0)
    if not checks.check(have, "dbus-run-session and python3-gi are installed (Debian dbus-daemon, python3-gi)",
                        "apt-get install dbus-daemon python3-gi"):
        return
    script = tmp / "notifyd.py"
    script.write_text(NOTIFY_DAEMON)
    log, ready = tmp / "notify.log", tmp / "notify.ready"
    bus = subprocess.Popen(["dbus-run-session", "--", SYSTEM_PYTHON, str(script), str(log), str(ready)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           start_new_session=True)
    w = None
    try:
        deadline = time.monotonic() + 15
        while not ready.exists() and time.monotonic() < deadline and bus.poll() is None:
            time.sleep(0.1)
        if not checks.check(ready.exists(), "a private session bus with a notification daemon is up",
                            bus.stdout.read().decode(errors="replace") if bus.poll() is not None else "timeout"):
            return
        address = ready.read_text().strip()
        w = Watch(tern, ["--notify"], env={"DBUS_SESSION_BUS_ADDRESS": address})
        if not checks.check(watching(w), "tern watch --notify is watching", w.detail()):
            return
        subj = f"Notify me {tok} & <b>you</b>"
        send(d, subj, from_header="Carol <carol@example.test>")
        checks.check(w.wait_out(lambda l: subj in l) is not None, "the New mail line is printed", w.detail())
        calls = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log.exists():
                calls = [json.loads(l) for l in log.read_text().splitlines() if l.strip()]
            if calls:
                break
            time.sleep(0.1)
        checks.check(len(calls) == 1 and calls[0]["summary"] == "New mail from Carol <carol@example.test>"
                     and calls[0]["body"] == subj and calls[0]["app"] == "tern",
                     "the daemon got one Notify: summary 'New mail from Carol <carol@example.test>', body the "
                     "subject verbatim (no markup capability: not escaped)", calls)
        checks.check(not any("warning" in l for l in w.err_lines()), "no warning with a working daemon",
                     w.detail())
        checks.check(w.stop() == 0, "stops with exit 0", w.detail())
    finally:
        if w is not None:
            w.stop(signal.SIGKILL)
        try:
            os.killpg(bus.pid, signal.SIGTERM)
            bus.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(bus.pid, signal.SIGKILL)
            except OSError:
                pass
            bus.wait()

    # No session bus at all: one warning, and watching goes on.
    env = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp}/no-such-bus", "DISPLAY": ""}
    w = Watch(tern, ["--notify"], env=env)
    try:
        if not checks.check(watching(w), "tern watch --notify without a session bus starts", w.detail()):
            return
        subs = [f"no bus {tok} {i}" for i in range(2)]
        for s in subs:
            send(d, s)
        got = [w.wait_out(lambda l, s=s: s in l) for s in subs]
        checks.check(all(got), "without a bus both messages are still reported", w.detail())
        warnings = [l for l in w.err_lines() if "notification" in l.lower()]
        checks.check(len(warnings) == 1, "exactly one warning about notifications on stderr", w.detail())
        checks.check(w.stop() == 0, "and it stops with exit 0", w.detail())
    finally:
        w.stop(signal.SIGKILL)


# ---- the scripted push server ------------------------------------------------------------------------
class PushServer:
    """The push contract (docs/push-protocol.md), scripted: implicit TLS and a STARTTLS listener, AUTH PLAIN,
    WATCH [SINCE], events published by the test, NOOP, LOGOUT. Records every command."""

    def __init__(self, cert, key, user, password):
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.user, self.password = user, password
        self.lock = threading.Lock()
        self.uidvalidity = 1764000000
        self.messages = []  # event dicts of INBOX
        self.sessions = []  # live sessions
        self.commands = []  # (session number, command line) with AUTH decoded
        self.count = 0
        self.socks = []
        self.ports = []
        for tls in (True, False):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            self.socks.append(s)
            self.ports.append(s.getsockname()[1])
            threading.Thread(target=self._accept, args=(s, tls), daemon=True).start()
        self.tls_port, self.plain_port = self.ports

    def _accept(self, s, tls):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(c, tls), daemon=True).start()

    def _session(self, sock, tls):
        with self.lock:
            self.count += 1
            n = self.count
        sess = {"n": n, "sock": sock, "wlock": threading.Lock(), "watch": None}
        try:
            if tls:
                sock = self.ctx.wrap_socket(sock, server_side=True)
                sess["sock"] = sock
            self._send(sess, "+OK tern push ready (capabilities: STARTTLS AUTH=PLAIN WATCH SINCE)")
            f = sock.makefile("rb")
            authed = False
            while True:
                raw = f.readline(2000)
                if not raw:
                    return
                line = raw.decode(errors="replace").rstrip("\r\n")
                verb, _, rest = line.partition(" ")
                verb = verb.upper()
                logged = line
                if verb == "AUTH":
                    try:
                        parts = base64.b64decode(rest.split(" ", 1)[1]).split(b"\0")
                        logged = "AUTH PLAIN " + "/".join(p.decode() for p in parts)
                    except Exception:  # noqa: BLE001
                        logged = "AUTH (undecodable)"
                with self.lock:
                    self.commands.append((n, logged))
                if verb == "CAPA":
                    self._send(sess, "+OK " + ("" if tls else "STARTTLS ") + "AUTH=PLAIN WATCH SINCE")
                elif verb == "STARTTLS" and not tls:
                    self._send(sess, "+OK begin TLS")
                    sock = self.ctx.wrap_socket(sock, server_side=True)
                    sess["sock"] = sock
                    f = sock.makefile("rb")
                    tls = True
                elif verb == "AUTH":
                    if not tls:
                        self._send(sess, "-ERR TLS required")
                    elif logged == f"AUTH PLAIN /{self.user}/{self.password}":
                        authed = True
                        self._send(sess, f"+OK authenticated as {self.user}")
                    else:
                        self._send(sess, "-ERR authentication failed")
                elif verb == "WATCH":
                    m = re.match(r'^(?:"((?:[^"\\]|\\.)*)"|(\S+))?(?: SINCE (\d+))?$', rest)
                    if not authed:
                        self._send(sess, "-ERR authenticate first")
                    elif not m or (m.group(1) or m.group(2) or "INBOX") != "INBOX":
                        self._send(sess, f"-ERR no such mailbox {rest}")
                    else:
                        with self.lock:
                            if m.group(3) is not None:
                                since = int(m.group(3))
                                for ev in self.messages:
                                    if ev["uid"] > since:
                                        self._send(sess, json.dumps(dict(ev, replay=True)))
                            self._send(sess, "+OK watching INBOX")
                            sess["watch"] = "INBOX"
                            self.sessions.append(sess)
                elif verb == "NOOP":
                    self._send(sess, "+OK")
                elif verb == "LOGOUT":
                    self._send(sess, "+OK bye")
                    return
                else:
                    self._send(sess, "-ERR unknown command")
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            with self.lock:
                if sess in self.sessions:
                    self.sessions.remove(sess)
            try:
                sess["sock"].close()
            except OSError:
                pass

    def _send(self, sess, line):
        with sess["wlock"]:
            sess["sock"].sendall(line.encode() + b"\r\n")

    def publish(self, from_, subject):
        with self.lock:
            uid = (self.messages[-1]["uid"] if self.messages else 41) + 1
            ev = {"type": "new", "mailbox": "INBOX", "uidvalidity": self.uidvalidity, "uid": uid, "from": from_,
                  "subject": subject, "date": "2026-11-24T23:10:00Z", "size": 1234 + uid}
            self.messages.append(ev)
            for sess in list(self.sessions):
                try:
                    self._send(sess, json.dumps(ev))
                except OSError:
                    pass
        return ev

    def broadcast(self, obj):
        with self.lock:
            for sess in list(self.sessions):
                try:
                    self._send(sess, json.dumps(obj))
                except OSError:
                    pass

    def drop_all(self):
        with self.lock:
            sessions, self.sessions = list(self.sessions), []
        for sess in sessions:
            try:
                sess["sock"].shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def watches(self):
        with self.lock:
            return [c for _, c in self.commands if c.startswith("WATCH")]

    def close(self):
        for s in self.socks:
            s.close()
        self.drop_all()


def test_push(checks, tmp):
    tok = secrets.token_hex(3)
    cert, key = ch.make_cert(tmp / "push-tls")
    server = PushServer(cert, key, ALICE, PASSWORDS[ALICE])
    watchers = []
    try:
        t = Tern(tmp, "push")
        r = t.account_add("alice", ALICE, PASSWORDS[ALICE], imap="localhost:1", ca_file=str(cert),
                          extra=["--imap-security", "tls"])
        checks.check(r.rc == 0, "account for the push tests (host localhost, the server's certificate)", r.detail())
        w = Watch(t, ["--via", "push", "--port", str(server.tls_port)])
        watchers.append(w)
        if not checks.check(watching(w), "tern watch --via push (implicit TLS) is watching", w.detail()):
            return
        with server.lock:
            cmds = [c for _, c in server.commands]
        checks.check(cmds[:3] == ["CAPA", f"AUTH PLAIN /{ALICE}/{PASSWORDS[ALICE]}", "WATCH INBOX"],
                     "the client sent CAPA, AUTH PLAIN with the account's credentials, WATCH INBOX", cmds)
        subj = f"Hello push {tok} — ünïcode"
        server.publish("Bob <bob@example.org>", subj)
        checks.check(w.wait_out(lambda l: l == new_line("Bob <bob@example.org>", subj)) is not None,
                     "a pushed event prints the New mail line", w.detail())
        server.broadcast({"type": "keepalive", "time": "2026-11-24T23:11:00Z"})
        server.broadcast({"type": "flags", "mailbox": "INBOX", "uid": 42, "flags": ["\\Seen"]})
        server.broadcast({"type": "new", "mailbox": "Other", "uid": 99, "from": "x", "subject": "other box"})

        # the connection drops; two messages come meanwhile; reconnect with SINCE, once each
        server.drop_all()
        missed = [server.publish("Dave <dave@example.org>", f"push missed {tok} {i}") for i in range(2)]
        for ev in missed:
            checks.check(w.wait_out(lambda l, ev=ev: ev["subject"] in l, 15) is not None,
                         f"after the drop it reports {ev['subject']!r}", w.detail())
        checks.check(any(c == "WATCH INBOX SINCE 42" for c in server.watches()),
                     "it reconnected with WATCH INBOX SINCE 42 (the last UID it reported)", server.watches())
        checks.check(w.wait_err(lambda l: "reconnecting in 1 s" in l, 1) is not None,
                     "the lost connection was said on stderr with the backoff", w.detail())
        checks.check(w.count("other box") == 0, "events of other mailboxes, flags and keepalives print nothing",
                     w.detail())

        # resync: reconnect at once, SINCE the last UID
        n_before = len(server.watches())
        server.broadcast({"type": "resync", "reason": "overflow"})
        deadline = time.monotonic() + 10
        while len(server.watches()) == n_before and time.monotonic() < deadline:
            time.sleep(0.05)
        checks.check(len(server.watches()) > n_before and server.watches()[-1] == "WATCH INBOX SINCE 44",
                     "a resync event makes it WATCH again SINCE 44", server.watches())
        ev = server.publish("Eve <eve@example.org>", f"after resync {tok}")
        checks.check(w.wait_out(lambda l: ev["subject"] in l) is not None, "live events flow after the resync",
                     w.detail())
        time.sleep(0.5)
        counts = {s: w.count(s) for s in [subj] + [e["subject"] for e in missed] + [ev["subject"]]}
        checks.check(all(c == 1 for c in counts.values()), "every pushed message was reported exactly once",
                     counts)
        rc = w.stop()
        time.sleep(0.2)
        with server.lock:
            last = [c for _, c in server.commands][-1:]
        checks.check(rc == 0 and last == ["LOGOUT"], "SIGTERM sends LOGOUT and exits 0", (rc, last))

        # restart: SINCE the last UID from the state file; JSON over STARTTLS
        server.publish("Frank <frank@example.org>", f"push while stopped {tok}")
        w2 = Watch(t, ["--via", "push", "--port", str(server.plain_port), "--security", "starttls", "--json"])
        watchers.append(w2)
        line = w2.wait_out(lambda l: f"push while stopped {tok}" in l)
        ev2 = json.loads(line) if line else {}
        checks.check(ev2.get("uid") == 46 and ev2.get("missed") is True and ev2.get("from") == "Frank <frank@example.org>"
                     and ev2.get("size") == 1234 + 46,
                     "restarted over STARTTLS with --json: the message pushed while it was stopped, missed: true",
                     w2.detail())
        checks.check(server.watches()[-1] == "WATCH INBOX SINCE 45", "the restart asked SINCE 45", server.watches())
        checks.check(w2.stop() == 0, "exit 0", w2.detail())

        # a wrong password is final: exit 1 with the server's words, no retry loop
        t2 = Tern(tmp, "push-bad")
        t2.account_add("alice", ALICE, "wrong-password", imap="localhost:1", ca_file=str(cert),
                       extra=["--imap-security", "tls"])
        r = t2.run(["watch", "--via", "push", "--port", str(server.tls_port)], timeout=20)
        checks.check(r.rc == 1 and "authentication failed" in r.stderr, "a refused AUTH exits 1 quoting the server",
                     r.detail())
        # the server's certificate is verified
        t3 = Tern(tmp, "push-noca")
        t3.account_add("alice", ALICE, PASSWORDS[ALICE], imap="localhost:1", extra=["--imap-security", "tls"])
        w3 = Watch(t3, ["--via", "push", "--port", str(server.tls_port)])
        watchers.append(w3)
        line = w3.wait_err(lambda l: "certificate" in l.lower(), 10)
        checks.check(line is not None and w3.wait_err(lambda l: "watching" in l, 0.5) is None,
                     "without the CA file the self-signed certificate is refused", w3.detail())
        rc3 = w3.stop()
        checks.check(rc3 == 1, "a refused certificate on the first connection exits 1 (no retry loop)",
                     f"exit {rc3}\n{w3.detail()}")
        test_push_first_failure(checks, t)
    finally:
        for w in watchers:
            w.stop(signal.SIGKILL)
        server.close()


def test_push_first_failure(checks, t):
    """--via push whose first connection fails exits 1 with a message, as --help says (issue 10: it
    retried forever): nothing listening on the port, and a peer that does not speak push."""
    (closed_port,) = harness.free_ports(1)
    r = t.run(["watch", "--via", "push", "--port", str(closed_port)], timeout=30)
    checks.check(r.rc == 1 and not r.timed_out and "reconnecting" not in r.stderr
                 and "first connection failed" in r.stderr,
                 "watch --via push on a port where nothing listens: exit 1 with a message, no retry loop", r.detail())
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def smtp_like():
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.sendall(b"220 mail.example.test ESMTP not a push server\r\n")
                    conn.settimeout(5)
                    conn.recv(1024)
                    conn.sendall(b"502 5.5.2 what?\r\n")
                except OSError:
                    pass
    thread = threading.Thread(target=smtp_like, daemon=True)
    thread.start()
    try:
        r = t.run(["watch", "--via", "push", "--port", str(listener.getsockname()[1]), "--security", "none"],
                  timeout=30)
        checks.check(r.rc == 1 and not r.timed_out and "reconnecting" not in r.stderr,
                     "watch --via push against a server that is not a push server (SMTP greeting): exit 1",
                     r.detail())
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    help_text = t.run(["watch", "--help"]).stdout
    checks.check("the first one fails" in help_text and "exits 1" in help_text,
                 "watch --help says a failed first connection exits 1", help_text[-600:])


def test_ternd_push(checks, tmp, tern, tok):
    """Against ternd's own push listener, when this ternd has one."""
    port = harness.free_ports(1)[0]
    d = Daemon("watch-push", imap=True, options=[f"push.listen_plain=127.0.0.1:{port}"])
    try:
        if not start_daemon(checks, d, "ternd serve with a push listener (push.listen_plain) started"):
            return
        if not checks.check(harness.connect_ok(port), "ternd's push listener accepts connections", port):
            return
        t = Tern(tmp, "ternd-push")
        t.account_add("alice", ALICE, PASSWORDS[ALICE], imap=f"localhost:{d.imaps_port}", ca_file=str(d.cert_path),
                      extra=["--imap-security", "tls"])
        w = Watch(t, ["--via", "push", "--port", str(port), "--security", "starttls"])
        try:
            if not checks.check(watching(w), "tern watch --via push against ternd's push listener (STARTTLS)",
                                w.detail()):
                return
            subj = f"ternd push {tok}"
            send(d, b_encode(subj + " é"))
            checks.check(w.wait_out(lambda l: l == new_line("Bob Example <bob@example.test>", subj + " é")) is not None,
                         "ternd pushes a New mail line for a message sent over SMTP", w.detail())
            checks.check(w.stop() == 0, "exit 0", w.detail())
        finally:
            w.stop(signal.SIGKILL)
    finally:
        d.cleanup()


# ---- Dovecot -----------------------------------------------------------------------------------------
def test_dovecot(checks, tmp):
    import test_client_reference as ref
    have = os.path.exists(ref.DOVECOT) and os.path.exists("/usr/lib/dovecot/imap")
    if not checks.check(have, "Dovecot with IMAP installed (Debian dovecot-imapd)", "apt-get install dovecot-imapd"):
        return
    tok = secrets.token_hex(3)
    cert, key = ch.make_cert(tmp / "dovecot-tls")
    os.chmod(tmp, 0o755)
    dv = ref.Dovecot(tmp, cert, key)
    w = None
    try:
        dv.place("dave", "first", mime_message("Old <old@example.test>", "already there"), "cur", 0)
        if not checks.guard("Dovecot starts", dv.start):
            return
        t = Tern(tmp, "dovecot")
        r = t.account_add("dave", "dave@example.test", ref.USERS["dave"], imap=f"localhost:{dv.imaps}",
                          ca_file=str(dv.dir / "cert.pem"), extra=["--imap-security", "tls", "--user", "dave"])
        checks.check(r.rc == 0, "account dave on Dovecot's IMAPS port", r.detail())
        w = Watch(t, ["--json"])
        if not checks.check(watching(w), "tern watch --via idle against Dovecot is watching", w.detail()):
            return
        subj = f"Grüße from Dovecot {tok}"
        dv.place("dave", "new1", mime_message(f"{b_encode('Zoë')} <zoe@example.test>", b_encode(subj)), "new", 1)
        line = w.wait_out(lambda l: subj in l, 45)
        ev = json.loads(line) if line else {}
        checks.check(ev.get("from") == "Zoë <zoe@example.test>" and ev.get("subject") == subj and ev.get("uid", 0) > 1,
                     "a message placed in the maildir is reported through IDLE, decoded", w.detail())
        checks.check(w.count("already there") == 0, "the message already there before is not reported", w.detail())
        checks.check(w.stop() == 0, "exit 0 on SIGTERM", w.detail())
    finally:
        if w is not None:
            w.stop(signal.SIGKILL)
        dv.stop()


def run(checks):
    if not ch.tern_built(checks):
        return
    tmp = Path(tempfile.mkdtemp(prefix="tern-watch-"))
    try:
        checks.guard("ternd tests ran to the end", test_ternd, checks, tmp)
        checks.guard("push tests ran to the end", test_push, checks, tmp)
        checks.guard("Dovecot tests ran to the end", test_dovecot, checks, tmp)
    finally:
        if os.environ.get("TERN_E2E_KEEP") == "1":
            checks.note(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.main_guard(run)
