"""Shared machinery for tern's end-to-end tests.

What it gives a test file:
- `Checks`: a tiny TAP-like reporter; `check(condition, description)` prints `ok N - description` or
  `not ok N - description` (with `# detail` lines after a failure) and counts; `finish()` prints the plan
  and returns the exit status (1 if anything failed).
- `Daemon`: a real `ternd` in a temporary data directory: `ternd init`, users alice@example.test and
  bob@example.test with known passwords, an alias ally@example.test -> alice, random free loopback ports
  for the three SMTP listeners (MX, submission, submissions) and the two POP3 listeners (pop3 with STLS,
  pop3s), so that no daemon ever binds a default port, `ternd serve` in the foreground with its
  stderr captured to a file, readiness by polling connect() on every port, SIGTERM stop with the exit
  status returned, kill -9 and restart for crash tests, and `mail list --json` / `mail cat` helpers.
- `RawSMTP`: a line-exact SMTP client over a raw socket (optionally TLS) for hostile input, where
  smtplib would be too polite.
- `RawPOP3`: the same for POP3 (status lines, multi-line responses, STLS, SASL), where poplib would be.
- IMAP: `Daemon(imap=True)` also gives the daemon free ports for imap.listen (STARTTLS) and
  imap.listen_tls (IMAPS) as `imap_port` / `imaps_port` (without it both keys are set empty, IMAP off,
  so parallel daemons never compete for the default ports; push.listen is likewise off unless a test's
  options set it); `RawIMAP` is a byte-exact IMAP client (tagged commands, literals, untagged
  responses) for hostile input and IDLE, where imaplib would be too polite.

Pure Python 3 standard library. The build directory is $TERN_BUILD, or `build` under the repository root
found from this file's location.
"""

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("TERN_BUILD", REPO_ROOT / "build"))
if not BUILD_DIR.is_absolute():
    BUILD_DIR = REPO_ROOT / BUILD_DIR
TERND = BUILD_DIR / "ternd"

DOMAIN = "example.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"
ALICE_ALIAS = "ally@example.test"
PASSWORDS = {ALICE: "alice-Secret-1", BOB: "bob-Secret-2"}

# Every socket the tests open gets this timeout unless a test says otherwise.
SOCKET_TIMEOUT = 10.0


class Checks:
    """TAP-like reporter: one `ok`/`not ok` line per check, counted."""

    def __init__(self, name):
        self.name = name
        self.count = 0
        self.failed = 0
        print(f"# {name}", flush=True)

    def check(self, condition, description, detail=None):
        """Reports one check; returns the condition so callers can branch on it."""
        self.count += 1
        if condition:
            print(f"ok {self.count} - {description}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.count} - {description}", flush=True)
            if detail is not None:
                for line in str(detail).splitlines() or [""]:
                    print(f"#   {line}", flush=True)
        return bool(condition)

    def skip(self, description, reason, documented=None):
        """Reports a check that could not be made here, as a TAP `# SKIP`.

        tests/run-all counts a skip as a FAILURE unless it is documented: `documented` names a key
        listed in tests/SKIPS.md (which says why such a skip is legitimate), and the line then reads
        `ok N - description # SKIP documented:KEY reason`. A check that merely did not work is a
        failure: use check(False, ...), never skip."""
        self.count += 1
        marker = f"documented:{documented} " if documented else ""
        print(f"ok {self.count} - {description} # SKIP {marker}{reason}", flush=True)

    def note(self, text):
        for line in str(text).splitlines():
            print(f"# {line}", flush=True)

    def guard(self, description, func, *args, **kwargs):
        """Runs func; an exception becomes a failed check instead of ending the file."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of a test step is a failed check
            self.check(False, description, f"{type(exc).__name__}: {exc}")
            return None

    def finish(self):
        print(f"1..{self.count}", flush=True)
        print(f"# {self.name}: {self.count - self.failed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0


def free_ports(count):
    """Returns count distinct loopback TCP ports that were free a moment ago."""
    holders = []
    ports = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            holders.append(s)
            if port not in ports:
                ports.append(port)
    finally:
        for s in holders:
            s.close()
    return ports


def run_ternd(args, input_bytes=None, timeout=60, check=True):
    """Runs `ternd ARGS`; returns the CompletedProcess (stdout/stderr as bytes)."""
    proc = subprocess.run([str(TERND)] + [str(a) for a in args], input=input_bytes,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ternd {' '.join(map(str, args))} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc


def connect_ok(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Daemon:
    """A ternd in a temp data dir with alice, bob and alias ally -> alice."""

    def __init__(self, name="e2e", options=None, users=None, keep=None, imap=False):
        if not TERND.exists():
            raise RuntimeError(f"{TERND} not found: build first (ninja -C {BUILD_DIR})")
        self.name = name
        self.options = list(options or [])
        self.passwords = dict(PASSWORDS)
        if users:
            self.passwords.update(users)
        self.keep = os.environ.get("TERN_E2E_KEEP") == "1" if keep is None else keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"tern-{name}-"))
        self.data_dir = self.tmp / "data"
        self.stderr_path = self.tmp / "ternd.stderr"
        self.stderr_file = None
        self.proc = None
        (self.mx_port, self.submission_port, self.submissions_port,
         self.pop3_port, self.pop3s_port) = free_ports(5)
        # IMAP is off by default (empty imap.listen / imap.listen_tls); only a test that asks gets ports.
        self.imap = bool(imap)
        self.imap_port = self.imaps_port = None
        if self.imap:
            taken = {self.mx_port, self.submission_port, self.submissions_port, self.pop3_port, self.pop3s_port}
            fresh = [p for p in free_ports(7) if p not in taken]
            self.imap_port, self.imaps_port = fresh[0], fresh[1]
        self.cert_path = self.data_dir / "tls" / "cert.pem"
        self._init()

    # ---- setup -------------------------------------------------------------------------------
    def _init(self):
        run_ternd(["init", "--data-dir", self.data_dir, "--domain", DOMAIN, "--hostname", "localhost"])
        for address, password in self.passwords.items():
            run_ternd(["user", "add", address, "--data-dir", self.data_dir, "--password-stdin"],
                      input_bytes=(password + "\n").encode())
        run_ternd(["user", "alias", "add", ALICE_ALIAS, ALICE, "--data-dir", self.data_dir])

    def serve_args(self):
        args = [str(TERND), "serve", "--data-dir", str(self.data_dir),
                "-o", f"smtp.listen=127.0.0.1:{self.mx_port}",
                "-o", f"smtp.submission=127.0.0.1:{self.submission_port}",
                "-o", f"smtp.submissions=127.0.0.1:{self.submissions_port}",
                "-o", f"pop3.listen=127.0.0.1:{self.pop3_port}",
                "-o", f"pop3.listen_tls=127.0.0.1:{self.pop3s_port}"]
        if self.imap:
            args += ["-o", f"imap.listen=127.0.0.1:{self.imap_port}",
                     "-o", f"imap.listen_tls=127.0.0.1:{self.imaps_port}"]
        else:
            # IMAP listens on 127.0.0.1:2143/2993 by default: tests that do not ask for it turn it
            # off, so daemons of tests running side by side never compete for those ports.
            args += ["-o", "imap.listen=", "-o", "imap.listen_tls="]
        # The push service listens on 127.0.0.1:5050 by default: off unless the test sets it.
        if not any(o.split("=", 1)[0].strip() == "push.listen" for o in self.options):
            args += ["-o", "push.listen="]
        for opt in self.options:
            args += ["-o", opt]
        return args

    def start(self, ready_timeout=20.0):
        """Starts `ternd serve` and waits until every listener accepts connections."""
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.serve_args(), stdin=subprocess.DEVNULL,
                                     stdout=self.stderr_file, stderr=self.stderr_file)
        deadline = time.monotonic() + ready_timeout
        pending = set(self.listen_ports())
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ternd serve exited {self.proc.returncode} during start-up:\n"
                                   + self.stderr_tail())
            if time.monotonic() > deadline:
                raise RuntimeError(f"ternd serve not ready after {ready_timeout}s on ports {pending}:\n"
                                   + self.stderr_tail())
            pending = {p for p in pending if not connect_ok(p)}
            if pending:
                time.sleep(0.05)
        return self

    def listen_ports(self):
        """The ports start() waits for: all five, except listeners the options disable (`key=`)."""
        ports = {"smtp.listen": self.mx_port, "smtp.submission": self.submission_port,
                 "smtp.submissions": self.submissions_port, "pop3.listen": self.pop3_port,
                 "pop3.listen_tls": self.pop3s_port}
        if self.imap:
            ports.update({"imap.listen": self.imap_port, "imap.listen_tls": self.imaps_port})
        for opt in self.options:
            key, _, value = opt.partition("=")
            if key.strip() in ports and not value.strip():
                del ports[key.strip()]
        return list(ports.values())

    def stop(self, timeout=15.0):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_stderr()
                self.proc = None
                return None
        status = self.proc.returncode
        self._close_stderr()
        self.proc = None
        return status

    def kill9(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self._close_stderr()
            self.proc = None

    def _close_stderr(self):
        if self.stderr_file is not None:
            self.stderr_file.close()
            self.stderr_file = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def cleanup(self):
        if self.proc is not None:
            self.kill9()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # ---- inspection --------------------------------------------------------------------------
    def stderr_text(self):
        try:
            return self.stderr_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines=20):
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def proc_status(self, field):
        """A field of /proc/PID/status in KiB (VmRSS, VmHWM), or None."""
        if not self.alive():
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def mail_list(self, user, mailbox=None):
        args = ["mail", "list", user, "--data-dir", self.data_dir, "--json"]
        if mailbox:
            args += ["--mailbox", mailbox]
        out = run_ternd(args).stdout
        return json.loads(out.decode() or "[]")

    def mail_cat(self, user, uid, mailbox=None):
        args = ["mail", "cat", user, str(uid), "--data-dir", self.data_dir]
        if mailbox:
            args += ["--mailbox", mailbox]
        return run_ternd(args).stdout

    def mail_count(self, user):
        return len(self.mail_list(user))

    def find_message(self, user, message_id, timeout=3.0):
        """The `mail list` entry whose Message-ID is message_id (brackets optional), or None.

        Polls briefly: 250 means durable, but let a slow reader see it."""
        want = message_id.strip("<>")
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.mail_list(user):
                if str(entry.get("message_id") or "").strip().strip("<>") == want:
                    return entry
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    # ---- client helpers ----------------------------------------------------------------------
    def client_tls_context(self):
        """Trusts only this daemon's self-signed certificate, hostname verified."""
        ctx = ssl.create_default_context(cafile=str(self.cert_path))
        ctx.check_hostname = True
        return ctx


def unique_id(tag):
    return f"{tag}.{os.getpid()}.{time.monotonic_ns()}@e2e.test"


def make_message(sender, recipients, subject, message_id, body_lines=None, body=None):
    """A CRLF message (bytes) ending in CRLF, with the headers a test can look up."""
    if isinstance(recipients, str):
        recipients = [recipients]
    head = (f"From: <{sender}>\r\n"
            f"To: {', '.join('<' + r + '>' for r in recipients)}\r\n"
            f"Subject: {subject}\r\n"
            f"Date: Mon, 24 Nov 2025 12:00:00 +0000\r\n"
            f"Message-ID: <{message_id}>\r\n"
            f"MIME-Version: 1.0\r\n").encode()
    if body is None:
        body = "".join(line + "\r\n" for line in (body_lines or ["Hello from the tern e2e tests."])).encode()
    return head + b"\r\n" + body


def stored_matches(stored, sender, sent):
    """Checks stored == 'Return-Path: <sender>' + 'Received: ...' trace headers + sent, exactly.

    Returns (ok, reason)."""
    if stored is None:
        return False, "no stored message"
    if not stored.endswith(sent):
        # Find where they diverge, for the failure message.
        n = min(len(stored), len(sent))
        for i in range(1, n + 1):
            if stored[-i] != sent[-i]:
                return False, (f"stored bytes do not end with the sent bytes (first difference {i} bytes "
                               f"from the end: stored {stored[-i - 20:len(stored) - i + 20]!r} vs "
                               f"sent {sent[-i - 20:len(sent) - i + 20]!r}; stored {len(stored)} bytes, "
                               f"sent {len(sent)})")
        return False, f"stored is shorter than sent ({len(stored)} < {len(sent)})"
    prefix = stored[:len(stored) - len(sent)]
    expected_rp = b"Return-Path: <" + sender.encode() + b">\r\n"
    if not prefix.startswith(expected_rp):
        return False, f"prefix does not start with {expected_rp!r}: {prefix[:120]!r}"
    if b"\r\nReceived: " not in prefix and not prefix.startswith(b"Received: "):
        return False, f"no Received: header in the prepended trace: {prefix!r}"
    if not prefix.endswith(b"\r\n") or b"\r\n\r\n" in prefix:
        return False, f"prepended trace is not a run of header lines: {prefix!r}"
    return True, "ok"


class SMTPError(Exception):
    pass


class RawSMTP:
    """A byte-exact SMTP client on a raw socket. Replies are (code, [lines])."""

    def __init__(self, port, host="127.0.0.1", timeout=SOCKET_TIMEOUT, tls_context=None,
                 server_hostname="localhost", source_address=None, read_banner=True, rcvbuf=None):
        if rcvbuf is None:
            self.sock = socket.create_connection((host, port), timeout=timeout, source_address=source_address)
        else:
            # A small receive buffer must be set before connect() to limit the TCP window.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            if source_address is not None:
                self.sock.bind(source_address)
            self.sock.connect((host, port))
        if tls_context is not None:
            self.sock = tls_context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = b""
        self.banner = self.reply() if read_banner else None

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise SMTPError("reply line too long")
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """Reads one (possibly multi-line) reply."""
        lines = []
        while True:
            line = self.line()
            if len(line) < 3 or not line[:3].isdigit():
                raise SMTPError(f"malformed reply line {line!r}")
            lines.append(line.decode(errors="replace"))
            if len(line) == 3 or line[3:4] == b" ":
                return int(line[:3]), lines
            if line[3:4] != b"-":
                raise SMTPError(f"malformed reply line {line!r}")

    def cmd(self, command):
        """Sends one command line (CRLF added) and reads its reply."""
        if isinstance(command, str):
            command = command.encode()
        self.send(command + b"\r\n")
        return self.reply()

    def ehlo(self, name="client.e2e.test"):
        code, lines = self.cmd(f"EHLO {name}")
        if code != 250:
            raise SMTPError(f"EHLO refused: {code} {lines}")
        return [l[4:] for l in lines[1:]]

    def auth_plain(self, user, password):
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return self.cmd(f"AUTH PLAIN {token}")

    def starttls(self, context, server_hostname="localhost"):
        code, lines = self.cmd("STARTTLS")
        if code != 220:
            raise SMTPError(f"STARTTLS refused: {code} {lines}")
        if self.buf:
            raise SMTPError(f"plaintext bytes after the 220 of STARTTLS: {self.buf!r}")
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return code

    def pending_data(self, wait=0.3):
        """Bytes that arrive within `wait` seconds without us asking (b'' if none; None if closed)."""
        if self.buf:
            return self.buf
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
            return chunk if chunk else None
        except (socket.timeout, ssl.SSLWantReadError):
            return b""
        finally:
            self.sock.settimeout(old)

    def wait_closed(self, timeout=5.0):
        """True if the server closes the connection (EOF or reset) within timeout."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
            except socket.timeout:
                continue
            except (ConnectionError, ssl.SSLError, OSError):
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class POP3Error(Exception):
    pass


def pop3_ok(status):
    """True if a POP3 status line (str or bytes) is +OK."""
    if isinstance(status, bytes):
        status = status.decode(errors="replace")
    return isinstance(status, str) and (status == "+OK" or status.startswith("+OK "))


class RawPOP3(RawSMTP):
    """A byte-exact POP3 client on a raw socket (optionally TLS). Status lines are str ("+OK ...",
    "-ERR ...", or "+ ..." for a SASL continuation); multi-line bodies are lists of bytes lines."""

    def reply(self):
        """Reads one status line."""
        line = self.line()
        text = line.decode(errors="replace")
        if not (text.startswith("+OK") or text.startswith("-ERR") or text.startswith("+ ") or text == "+"):
            raise POP3Error(f"malformed status line {line!r}")
        return text

    @property
    def greeting(self):
        return self.banner

    def multi_raw(self):
        """The lines of a multi-line response up to the terminating ".", as sent (still dot-stuffed).

        Reads in bulk (a 50 MB RETR is fine): looks for CRLF "." CRLF only in the newly read bytes."""
        data = bytearray(self.buf)
        self.buf = b""
        scanned = 0
        while True:
            if data[:3] == b".\r\n":
                self.buf = bytes(data[3:])
                return []
            i = data.find(b"\r\n.\r\n", max(0, scanned - 4))
            if i >= 0:
                body = bytes(data[:i])
                self.buf = bytes(data[i + 5:])
                return body.split(b"\r\n")
            scanned = len(data)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                self.buf = bytes(data)
                raise ConnectionError("connection closed by server")
            data += chunk

    def multi(self):
        """The lines of a multi-line response, dot-unstuffed."""
        return [l[1:] if l.startswith(b".") else l for l in self.multi_raw()]

    def cmd_multi(self, command):
        """(status, lines) for a command with a multi-line answer; lines is None after -ERR."""
        status = self.cmd(command)
        return status, (self.multi() if pop3_ok(status) else None)

    def login(self, user, password):
        """USER/PASS; returns the status of PASS (or of USER if that failed)."""
        status = self.cmd(f"USER {user}")
        if not pop3_ok(status):
            return status
        return self.cmd(f"PASS {password}")

    def auth_plain(self, user, password, initial=True):
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        if initial:
            return self.cmd(f"AUTH PLAIN {token}")
        status = self.cmd("AUTH PLAIN")
        if not status.startswith("+ ") and status != "+":
            return status
        return self.cmd(token)

    def auth_login(self, user, password):
        status = self.cmd("AUTH LOGIN")
        for value in (user, password):
            if not status.startswith("+ ") and status != "+":
                return status
            status = self.cmd(base64.b64encode(value.encode()).decode())
        return status

    def capa(self):
        """CAPA lines as upper-case str, or None after -ERR."""
        status, lines = self.cmd_multi("CAPA")
        return None if lines is None else [l.decode(errors="replace").upper() for l in lines]

    def stls(self, context, server_hostname="localhost"):
        status = self.cmd("STLS")
        if not pop3_ok(status):
            raise POP3Error(f"STLS refused: {status}")
        if self.buf:
            raise POP3Error(f"plaintext bytes after the +OK of STLS: {self.buf!r}")
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return status


class IMAPError(Exception):
    pass


class RawIMAP(RawSMTP):
    """A byte-exact IMAP client on a raw socket (optionally TLS).

    `greeting` is the first line (str). `command(text)` sends "<tag> text" and returns
    (tagged line as str, [untagged/continuation lines as bytes, literals inlined]). Lines are returned
    without CRLF; a literal {n} is read exactly and kept inside its line."""

    def __init__(self, port, host="127.0.0.1", timeout=SOCKET_TIMEOUT, tls_context=None,
                 server_hostname="localhost", read_banner=True, source_address=None):
        self.counter = 0
        super().__init__(port, host=host, timeout=timeout, tls_context=tls_context,
                         server_hostname=server_hostname, read_banner=False,
                         source_address=source_address)
        self.greeting = self.line().decode(errors="replace") if read_banner else None
        self.banner = self.greeting

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, max_line=1 << 24):
        """One server response line (bytes) with any literals it announces read in full."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                if len(self.buf) > max_line:
                    raise IMAPError("response line too long")
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            out += line
            if line.endswith(b"}") and b"{" in line:
                num = line[line.rfind(b"{") + 1:-1]
                if num.isdigit():
                    out += b"\r\n" + self._take(int(num))
                    continue
            return out

    def next_tag(self):
        self.counter += 1
        return f"t{self.counter}"

    def read_until_tagged(self, tag):
        untagged = []
        while True:
            line = self.response()
            if line.startswith(tag.encode() + b" "):
                return line.decode(errors="replace"), untagged
            untagged.append(line)

    def command(self, text, tag=None):
        tag = tag or self.next_tag()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.read_until_tagged(tag)

    def login(self, user, password):
        return self.command(f'LOGIN "{user}" "{password}"')

    def authenticate_plain(self, user, password):
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return self.command(f"AUTHENTICATE PLAIN {token}")

    def starttls(self, context, server_hostname="localhost"):
        tagged, _ = self.command("STARTTLS")
        if " OK" not in tagged[:12]:
            raise IMAPError(f"STARTTLS refused: {tagged}")
        if self.buf:
            raise IMAPError(f"plaintext bytes after the OK of STARTTLS: {self.buf!r}")
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return tagged


def imap_tagged_ok(tagged, tag=None):
    """True if a tagged response line (str) is OK."""
    parts = (tagged or "").split(" ", 2)
    return len(parts) >= 2 and parts[1].upper() == "OK" and (tag is None or parts[0] == tag)


def dot_stuff(message):
    """SMTP transparency (RFC 5321 4.5.2) for a CRLF message ending in CRLF."""
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


def deliver_raw(port, sender, recipients, message, ehlo=True, tls_context=None, auth=None,
                source_address=None, timeout=SOCKET_TIMEOUT):
    """One transaction on a raw socket. Returns the final reply code after the data (or the first refusal)."""
    if isinstance(recipients, str):
        recipients = [recipients]
    with RawSMTP(port, tls_context=tls_context, source_address=source_address, timeout=timeout) as s:
        if ehlo:
            s.ehlo()
        if auth:
            code, _ = s.auth_plain(*auth)
            if code != 235:
                return code
        code, _ = s.cmd(f"MAIL FROM:<{sender}>")
        if code != 250:
            return code
        for r in recipients:
            code, _ = s.cmd(f"RCPT TO:<{r}>")
            if code != 250:
                return code
        code, _ = s.cmd("DATA")
        if code != 354:
            return code
        s.send(dot_stuff(message) + b".\r\n")
        code, _ = s.reply()
        try:
            s.cmd("QUIT")
        except (OSError, SMTPError):
            pass
        return code


def main_guard(run):
    """Runs a test file's run(checks) and exits with its status; a crash is a failed check."""
    name = Path(sys.argv[0]).stem
    checks = Checks(name)
    try:
        run(checks)
    except Exception as exc:  # noqa: BLE001
        import traceback
        checks.check(False, f"{name} ran to the end", traceback.format_exc())
    sys.exit(checks.finish())


def start_daemon(checks, daemon, what=None):
    """Starts daemon as a check; returns True if every listener came up."""
    try:
        daemon.start()
        ok, detail = True, None
    except Exception as exc:  # noqa: BLE001
        ok, detail = False, str(exc)
    checks.check(ok, what or f"ternd serve ({daemon.name}) started and every listener accepts connections",
                 detail)
    return ok
