"""Scripted IMAP sessions: a small runner for the RFC 3501 conformance scripts (issue 5).

A script (tests/e2e/imap_scripts/*.imap) is a sequence of lines; each is sent to or checked against a real
server over real sockets: a ternd (Daemon(imap=True)) or a private Dovecot (to validate a script's
expectations against a mature server; see DovecotServer).

Lines
  # comment                         ignored (also blank lines)
  C: text / C2: text                send `text` CRLF on connection 1 / 2 (C: is C1:). `${var}` is replaced.
                                    Inline helpers in C lines:
                                      {{lit:TEXT}}   a synchronizing literal {n} CRLF TEXT; the runner waits
                                                     for the server's "+" before sending TEXT (if the server
                                                     answers anything else, the rest of the command is not
                                                     sent and that answer goes to the next S lines)
                                      {{lit+:TEXT}}  a non-synchronizing literal {n+} (LITERAL+, RFC 7888)
                                      {{b64:TEXT}}   TEXT base64-encoded (for SASL)
                                    TEXT takes Python escapes (\\r\\n, \\0, \\x01); TEXT = @NAME is a block
                                    defined with !define (CRLF lines, ending in CRLF).
  S: pattern / S2: pattern          one expected server response on connection 1 / 2.
  S+ text                           continues the previous S pattern on a new line (CRLF): the content of
                                    a literal the server sends ({n} CRLF bytes) is matched this way.
  S~ regex                          one expected response as a Python regular expression (full match).
  S= expunged N N ...               the EXPUNGE responses of this group, applied in the order they come,
                                    must remove exactly the messages that had these sequence numbers before
                                    (any order the RFC allows: 5,3,2 or 2,2,3 for 2,3,5).

Consecutive S lines of one connection form a group, checked as one: untagged responses (`*`) may come in
any order (RFC 3501 7: the server may send them in any order), a tagged or continuation response ends the
group and must come last. A group without a tagged line ends when every untagged line has been seen (IDLE).
Every response that arrives must be expected, or allowed by an !allow pattern; so a missing response, an
unexpected one and a wrong one are all failures. The pseudo-response `<closed>` stands for the server
closing the connection.

Patterns
  - Text is compared exactly (case-sensitive), except: the flag lists of FLAGS (...) and
    PERMANENTFLAGS (...) are compared as sets (system flags case-insensitively); the items of a STATUS
    response in any order; the mailbox name of LIST/LSUB/STATUS as atom, quoted string or literal alike.
  - `...` matches any text (also across the CRLF of a literal).
  - {{regex}} is a Python regular expression; {{=name:regex}} also stores what it matched in ${name}.
  - {{has:A B}} at a position: the rest of the line holds the space-separated tokens A and B (in any order);
    {{lacks:A}}: it does not. Both match no text themselves (follow them with `...`).
  - A status response `TAG OK|NO|BAD|BYE|PREAUTH [CODE] text`: the text after the code is free-form (it
    is not compared); the [CODE] is compared if the pattern has one (and then it must be there); without a
    code in the pattern any code is accepted.
  - ${name} is the value of a variable (regex-escaped); ${name+1} adds to a number. Predefined: alice,
    alice_pass, bob, bob_pass (the server's test users), domain.

Directives
  !title TEXT                       what the script is about
  !only ternd|dovecot REASON        run the script on one server only
  !option KEY=VALUE                 a ternd configuration option (-o) for this script
  !allow [Cn] PATTERN               untagged responses matching PATTERN may come anywhere (on Cn, or all);
                                    `!allow ~ REGEX` for a regular expression. Always allowed: * OK [CLOSED]
  !connect Cn [tls]                 open Cn and check the greeting is `* OK` (implicit at first use: a C line
                                    first reads the greeting, an S line first matches it)
  !login Cn [alice|bob]             LOGIN as that user (default alice), tagged OK required
  !select Cn MAILBOX                SELECT, tagged OK required
  !starttls Cn                      STARTTLS (tagged OK, nothing after it in plaintext), then the TLS handshake
  !close Cn                         close the socket
  !define NAME  + `| text` lines    a block (a message), lines joined with CRLF and ending in CRLF
  !include FILE                     the lines and blocks of FILE (in imap_scripts/, e.g. messages.inc)
  !deliver USER @NAME|file:PATH     deliver a message over SMTP (ternd) or the LDA (Dovecot)
  !send Cn PYEXPR                   send raw bytes: a Python expression giving bytes/str (no CRLF added;
                                    a refused or reset send is not an error)
  !quiet Cn SECONDS                 check that nothing arrives on Cn for SECONDS
  !closed Cn [SECONDS]              check that the server closes Cn
  !serving                          check that a new connection can LOGIN and NOOP (the server survived)
  !sleep SECONDS
  !set NAME VALUE
  !timeout SECONDS                  read timeout of the following groups (default 10)
  !dovecot-deviates REASON          the next check is known to fail on Dovecot, which deviates from the
                                    RFC here: on Dovecot a failure is reported as a TODO, not a failure
  !dovecot-deviates-begin REASON    the same for every check up to !dovecot-deviates-end

Each check prints `ok N - SCRIPT:LINE ...` with what it checks; a failure prints the expected lines and every
response that actually arrived.
"""

import base64
import codecs
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import harness

SCRIPT_DIR = Path(__file__).resolve().parent / "imap_scripts"
DEFAULT_TIMEOUT = 10.0
CLOSED = "<closed>"
STATUS_WORDS = ("OK", "NO", "BAD", "BYE", "PREAUTH")
SYSTEM_FLAGS = {f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent",
                                       "\\*")}


class ScriptError(Exception):
    """A malformed script (a bug in the script, not in the server)."""


class Abort(Exception):
    """The script cannot go on (connection lost, a required step failed)."""


class MissingVariable(Abort):
    """A ${name} whose capture failed earlier (that failure is already reported)."""


# ---- parsing -----------------------------------------------------------------------------------------
LINE_RE = re.compile(r"^(C|S)(\d*)(:|\+|~|=)(?: (.*)|)$")


class Line:
    def __init__(self, no, kind, conn, op, text):
        self.no = no
        self.kind = kind      # "C", "S", "!"
        self.conn = conn      # "C1", "C2", ...
        self.op = op          # ":" "+" "~" "=" for C/S; directive name for "!"
        self.text = text


def parse_script(path):
    """Returns (lines, blocks) for a script file."""
    lines, blocks = [], {}
    raw = Path(path).read_text().split("\n")
    i = 0
    while i < len(raw):
        no, text = i + 1, raw[i].rstrip("\r")
        i += 1
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if text.startswith("!"):
            name, _, rest = text[1:].partition(" ")
            if name == "include":
                inc_lines, inc_blocks = parse_script(Path(path).parent / rest.strip())
                lines += inc_lines
                blocks.update(inc_blocks)
                continue
            if name == "define":
                block = []
                while i < len(raw) and raw[i].startswith("|"):
                    block.append(raw[i][2:] if raw[i].startswith("| ") else raw[i][1:])
                    i += 1
                blocks[rest.strip()] = ("".join(l + "\r\n" for l in block)).encode()
                continue
            lines.append(Line(no, "!", None, name, rest.strip()))
            continue
        m = LINE_RE.match(text)
        if not m:
            raise ScriptError(f"{Path(path).name}:{no}: cannot parse line {text!r}")
        kind, num, op, body = m.group(1), m.group(2) or "1", m.group(3), m.group(4) or ""
        if kind == "C" and op not in (":",):
            raise ScriptError(f"{Path(path).name}:{no}: C lines are 'C: text' or 'C2: text'")
        lines.append(Line(no, kind, "C" + num, op, body))
    return lines, blocks


# ---- patterns ----------------------------------------------------------------------------------------
FLAGLIST_RE = re.compile(r"((?:PERMANENT)?FLAGS) \(([^()]*)\)", re.I)


STATUS_RE = re.compile(r"^(\* STATUS .*? \()(.*)\)$", re.S)


def normalize_status(text):
    """The items of a STATUS response sorted by name (RFC 3501 does not fix their order)."""
    m = STATUS_RE.match(text)
    if not m or "..." in m.group(2):
        return text
    pairs = re.findall(r"(\S+) (\{\{.*?\}\}|\S+)", m.group(2))
    if " ".join(f"{k} {v}" for k, v in pairs) != m.group(2).strip():
        return text
    pairs.sort(key=lambda kv: kv[0].upper())
    return m.group(1) + " ".join(f"{k} {v}" for k, v in pairs) + ")"


def canon_flag(tok):
    return SYSTEM_FLAGS.get(tok.lower(), tok)


def normalize_flags(text):
    """FLAGS (...) and PERMANENTFLAGS (...) with their flags sorted (system flags in canonical case)."""
    def sort(m):
        body = m.group(2)
        if "..." in body or "{{" in body:
            return m.group(0)
        toks = sorted((canon_flag(t) for t in body.split()), key=str.lower)
        return f"{m.group(1)} ({' '.join(toks)})"
    return FLAGLIST_RE.sub(sort, text)


MAILBOX_RE = re.compile(r'^(\* (?:LIST|LSUB) \([^)]*\) (?:"(?:[^"\\]|\\.)"|NIL) |\* STATUS )'
                        r'(?:"((?:[^"\\]|\\.)*)"|\{\d+\+?\}\r\n([^\r\n]*?))(?=$| \()', re.S)
ATOM_SAFE = re.compile(r'[^(){ \x00-\x1f\x7f%*"\\]+')


def normalize_mailbox(text):
    """The mailbox name of a LIST/LSUB/STATUS response as an atom when it can be one: "INBOX", {5} INBOX and
    INBOX are the same name (RFC 3501 9: mailbox = astring)."""
    m = MAILBOX_RE.match(text)
    if not m:
        return text
    name = m.group(2) if m.group(2) is not None else m.group(3)
    if m.group(2) is not None:
        name = re.sub(r'\\(.)', r'\1', name)
    if not ATOM_SAFE.fullmatch(name):
        return text
    return m.group(1) + name + text[m.end():]


def _has(tokens, negate):
    parts = []
    for tok in tokens.split():
        t = re.escape(tok)
        look = rf"(?=.*?(?<![^\s(\[]){t}(?![^\s)\]]))"
        parts.append(("(?!" + look[3:]) if negate else look)
    return "".join(parts)


def compile_body(src, variables):
    """A pattern body (no status-response handling) -> regex source."""
    out = []
    pos = 0
    while pos < len(src):
        if src.startswith("{{", pos):
            end = src.find("}}", pos + 2)
            # A regex may itself hold "}}" (e.g. {2}}); take the last "}}" before the next "{{".
            while end >= 0 and src.startswith("}", end + 2):
                end += 1
            if end < 0:
                raise ScriptError(f"unclosed {{{{ in pattern {src!r}")
            inner = src[pos + 2:end]
            pos = end + 2
            if inner.startswith("has:"):
                out.append(_has(inner[4:], False))
            elif inner.startswith("lacks:"):
                out.append(_has(inner[6:], True))
            elif inner.startswith("="):
                name, _, rx = inner[1:].partition(":")
                out.append(f"(?P<{name}>{rx})")
            else:
                out.append(f"(?:{inner})")
        elif src.startswith("...", pos):
            out.append(".*?")
            pos += 3
        elif src.startswith("${", pos):
            end = src.find("}", pos)
            out.append(re.escape(expand_var(src[pos + 2:end], variables)))
            pos = end + 1
        else:
            nxt = [p for p in (src.find("{{", pos), src.find("...", pos), src.find("${", pos)) if p >= 0]
            stop = min(nxt) if nxt else len(src)
            out.append(re.escape(src[pos:stop]))
            pos = stop
    return "".join(out)


def split_code(rest):
    """'[CODE ...] text' -> ('[CODE ...]', 'text'); brackets inside {{ }} are skipped."""
    if not rest.startswith("["):
        return None, rest
    depth, i = 0, 0
    while i < len(rest):
        if rest.startswith("{{", i):
            j = rest.find("}}", i)
            i = j + 2 if j >= 0 else len(rest)
            continue
        c = rest[i]
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return rest[:i + 1], rest[i + 1:].lstrip()
        i += 1
    return None, rest


class Pattern:
    def __init__(self, line, src, regex_mode, variables):
        self.line = line
        self.src = src
        self.regex_mode = regex_mode
        if regex_mode:
            body = re.sub(r"\$\{([^}]+)\}", lambda m: re.escape(expand_var(m.group(1), variables)), src)
            self.final = not (body.startswith("\\*") or body.startswith("^\\*"))
        else:
            src = normalize_status(normalize_mailbox(normalize_flags(src)))
            words = src.split(" ", 2)
            self.final = not src.startswith("*")
            if len(words) >= 2 and words[1].upper() in STATUS_WORDS:
                head = compile_body(words[0] + " " + words[1], variables)
                code, _ = split_code(words[2] if len(words) > 2 else "")
                if code is not None:
                    body = head + " " + compile_body(code, variables) + r"(?: .*)?"
                else:
                    body = head + r"(?: \[[^\]]*\])?(?: .*)?"
            else:
                body = compile_body(src, variables)
        try:
            self.regex = re.compile(body, re.S)
        except re.error as exc:
            raise ScriptError(f"line {line}: bad pattern {src!r}: {exc}") from exc

    def match(self, actual):
        return self.regex.fullmatch(normalize_status(normalize_mailbox(normalize_flags(actual))))


def expand_var(expr, variables):
    m = re.fullmatch(r"(\w+)([+-]\d+)?", expr.strip())
    if not m:
        raise ScriptError(f"bad variable ${{{expr}}}")
    if m.group(1) not in variables:
        raise MissingVariable(f"${{{m.group(1)}}} was never set (the check that captures it failed)")
    value = variables[m.group(1)]
    if m.group(2):
        value = str(int(value) + int(m.group(2)))
    return str(value)


def substitute(text, variables):
    return re.sub(r"\$\{([^}]+)\}", lambda m: expand_var(m.group(1), variables), text)


def unescape(text):
    return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape").encode("latin-1")


# ---- servers -----------------------------------------------------------------------------------------
class TerndServer:
    """A fresh ternd (Daemon(imap=True)) per script."""

    name = "ternd"

    def __init__(self, script_name, options):
        self.daemon = harness.Daemon("imapscript", imap=True, options=options)
        self.daemon.start()
        self.port = self.daemon.imap_port
        self.tls_port = self.daemon.imaps_port
        self.variables = {"alice": harness.ALICE, "alice_pass": harness.PASSWORDS[harness.ALICE],
                          "bob": harness.BOB, "bob_pass": harness.PASSWORDS[harness.BOB],
                          "domain": harness.DOMAIN}

    def tls_context(self):
        return self.daemon.client_tls_context()

    def deliver(self, user, message):
        code = harness.deliver_raw(self.daemon.mx_port, "sender@remote.test", user, message)
        return code == 250, f"SMTP answered {code}"

    def alive(self):
        return self.daemon.alive()

    def diagnostics(self):
        return "ternd stderr (tail):\n" + self.daemon.stderr_tail(15)

    def finish(self):
        """(ok, detail): ternd still running, then stopped with SIGTERM."""
        alive = self.daemon.alive()
        status = self.daemon.stop()
        self.daemon.cleanup()
        return alive and status == 0, f"alive={alive} exit status {status}"


DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
DOVECOT_PASSWORD = "dove-Secret-1"


class DovecotServer:
    """A private Dovecot on loopback (own config, own base_dir, maildir owned by nobody), started once per
    run; each script gets fresh users (alice.N@example.test), so fresh mailboxes. Messages are delivered
    with dovecot-lda. Must run as root (as tests/e2e/test_client_reference.py does)."""

    name = "dovecot"

    @staticmethod
    def available():
        if os.geteuid() != 0:
            return False, "needs root (Dovecot is started with its own config and drops to nobody)"
        for p in (DOVECOT, "/usr/lib/dovecot/imap", DOVECOT_LDA):
            if not os.path.exists(p):
                return False, f"{p} missing (apt-get install dovecot-imapd)"
        return True, ""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="tern-imapscript-dovecot-"))
        os.chmod(self.tmp, 0o755)
        d = self.tmp
        self.mail = d / "mail"
        self.mail.mkdir()
        pw = pwd.getpwnam("nobody")
        os.chown(self.mail, pw.pw_uid, pw.pw_gid)
        self.port, self.tls_port = harness.free_ports(2)
        self.cert = d / "cert.pem"
        key = d / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(self.cert), "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conf = d / "dovecot.conf"
        self.conf.write_text(f"""# tern imap_script: a private Dovecot on loopback
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = tern-imapscript-{os.getpid()}
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{key}
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {{
  driver = static
  args = password={DOVECOT_PASSWORD}
}}
userdb {{
  driver = static
  args = uid={pw.pw_uid} gid={pw.pw_gid} home={self.mail}/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
}}
protocol lda {{
  postmaster_address = postmaster@example.test
}}
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
    ssl = yes
  }}
}}
""")
        self.out = open(d / "foreground.log", "wb")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.out)
        deadline = time.monotonic() + 20
        while not (harness.connect_ok(self.port) and harness.connect_ok(self.tls_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dovecot did not start: " + self.logs())
            time.sleep(0.05)
        self.serial = 0
        self.variables = {}

    def new_script(self, script_name):
        self.serial += 1
        n = self.serial
        self.variables = {"alice": f"alice.{n}@example.test", "alice_pass": DOVECOT_PASSWORD,
                          "bob": f"bob.{n}@example.test", "bob_pass": DOVECOT_PASSWORD, "domain": "example.test"}
        return self

    def tls_context(self):
        ctx = ssl.create_default_context(cafile=str(self.cert))
        ctx.check_hostname = True
        return ctx

    def deliver(self, user, message):
        proc = subprocess.run([DOVECOT_LDA, "-c", str(self.conf), "-d", user, "-f", "sender@remote.test"],
                              input=message, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return proc.returncode == 0, f"dovecot-lda exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"

    def alive(self):
        return self.proc.poll() is None

    def logs(self):
        text = ""
        for p in (self.tmp / "foreground.log", self.tmp / "dovecot.log"):
            try:
                text += p.read_text(errors="replace")[-2000:]
            except OSError:
                pass
        return text

    def diagnostics(self):
        return "dovecot log (tail):\n" + self.logs()[-1500:]

    def finish(self):
        return self.alive(), "dovecot running"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        if os.environ.get("TERN_E2E_KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---- connections -------------------------------------------------------------------------------------
class Conn:
    """One IMAP connection: raw bytes out, whole responses (literals inlined) in."""

    def __init__(self, name, port, tls_context=None):
        self.name = name
        sock = socket.create_connection(("127.0.0.1", port), timeout=DEFAULT_TIMEOUT)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""
        self.pending = []     # responses read but not yet given to a check
        self.closed = False
        self.greeted = False
        self.tagno = 0

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return False

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except (ConnectionResetError, ssl.SSLError) as exc:
            if isinstance(exc, ssl.SSLWantReadError):
                raise socket.timeout("timed out") from exc
            chunk = b""
        if not chunk:
            self.closed = True
            raise ConnectionError("closed")
        self.buf += chunk

    def response(self, timeout):
        """One response as str (latin-1, literals inline as {n} CRLF data), CLOSED, or None on timeout."""
        if self.pending:
            return self.pending.pop(0)
        if self.closed:
            return CLOSED
        deadline = time.monotonic() + timeout
        out = b""
        raw = b""
        try:
            while True:
                while b"\r\n" not in self.buf:
                    if len(self.buf) > 1 << 24:
                        raise Abort(f"{self.name}: a response line over 16 MB")
                    self._fill(deadline)
                line, self.buf = self.buf.split(b"\r\n", 1)
                raw += line + b"\r\n"
                out += line
                m = re.search(rb"\{(\d+)\}$", line)
                if m:
                    n = int(m.group(1))
                    while len(self.buf) < n:
                        self._fill(deadline + 30)
                    out += b"\r\n" + self.buf[:n]
                    raw += self.buf[:n]
                    self.buf = self.buf[n:]
                    continue
                return out.decode("latin-1")
        except socket.timeout:
            self.buf = raw + self.buf
            return None
        except ConnectionError:
            if out:
                return out.decode("latin-1")
            return CLOSED

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


# ---- the runner --------------------------------------------------------------------------------------
def short(text, limit=110):
    text = text.replace("\r\n", "\\r\\n")
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Runner:
    """Runs one script against one server, reporting to a harness.Checks."""

    def __init__(self, checks, server, path):
        self.checks = checks
        self.server = server
        self.path = Path(path)
        self.name = self.path.stem
        self.lines, self.blocks = parse_script(path)
        self.variables = dict(server.variables)
        self.conns = {}
        # RFC 7162 3.2.11 / RFC 9051: "* OK [CLOSED]" when a SELECT/EXAMINE closes the previous mailbox.
        self.allow = [(None, Pattern(0, "* OK [CLOSED]", False, {}))]   # (conn or None, Pattern)
        self.timeout = DEFAULT_TIMEOUT
        self.deviates = None
        self.deviates_block = None
        self.failed = 0

    # -- reporting
    def check(self, ok, line_no, what, detail=None):
        label = f"{self.name}:{line_no}: {what}"
        if self.deviates is None and self.deviates_block is not None:
            self.deviates = self.deviates_block
        if self.deviates is not None and self.server.name == "dovecot":
            reason, self.deviates = self.deviates, None
            if not ok:
                self.checks.check(True, f"{label} # TODO Dovecot differs here: {reason}")
                return False
            if self.deviates_block is None:
                self.checks.note(f"{label}: marked as a Dovecot deviation ({reason}) but passed")
        self.deviates = None
        if not ok:
            self.failed += 1
            detail = f"script {self.path.name} line {line_no}\n{detail or ''}"
        return self.checks.check(ok, label, detail)

    # -- connections
    def conn(self, name, line_no, via_s=False, tls=False):
        c = self.conns.get(name)
        if c is None:
            port = self.server.tls_port if tls else self.server.port
            try:
                c = Conn(name, port, self.server.tls_context() if tls else None)
            except OSError as exc:
                raise Abort(f"{name}: cannot connect: {exc}") from exc
            self.conns[name] = c
            if not via_s:
                greeting = c.response(self.timeout)
                c.greeted = True
                if not self.check(greeting is not None and greeting.startswith("* OK"), line_no,
                                  f"{name} greeting is '* OK ...'", f"got {greeting!r}"):
                    raise Abort(f"{name}: no greeting")
        return c

    def command_ok(self, c, line_no, text, what):
        """Sends an internal command; returns the tagged line; untagged responses are dropped."""
        c.tagno += 1
        tag = f"{c.name.lower()}x{c.tagno}"
        c.send(f"{tag} {text}\r\n")
        seen = []
        while True:
            r = c.response(self.timeout)
            if r is None or r == CLOSED:
                self.check(False, line_no, what, f"sent {tag} {text}\ngot {seen} then {r or 'a timeout'}")
                raise Abort(f"{c.name}: {what} failed")
            if r.startswith(tag + " "):
                ok = r.split(" ", 2)[1].upper() == "OK"
                if not self.check(ok, line_no, what, f"sent {tag} {text}\ngot {seen + [r]}"):
                    raise Abort(f"{c.name}: {what} failed")
                return r
            seen.append(short(r, 200))

    # -- C lines
    def expand_client(self, text):
        """Splits a C line into parts: bytes to send, and ('wait',) points after synchronizing literals."""
        text = substitute(text, self.variables)
        parts = []
        pos = 0
        for m in re.finditer(r"\{\{(lit\+?|b64):(.*?)\}\}", text):
            parts.append(text[pos:m.start()].encode("latin-1"))
            kind, content = m.group(1), m.group(2)
            data = self.blocks[content[1:]] if content.startswith("@") else unescape(content)
            if content.startswith("@") and content[1:] not in self.blocks:
                raise ScriptError(f"unknown block {content}")
            if kind == "b64":
                parts.append(base64.b64encode(data))
            elif kind == "lit+":
                parts.append(b"{%d+}\r\n" % len(data) + data)
            else:
                parts.append(b"{%d}\r\n" % len(data))
                parts.append(("wait",))
                parts.append(data)
            pos = m.end()
        parts.append(text[pos:].encode("latin-1") + b"\r\n")
        return parts

    def do_client(self, line):
        c = self.conn(line.conn, line.no)
        if not c.greeted:
            c.greeted = True
        buf = b""
        for part in self.expand_client(line.text):
            if part == ("wait",):
                c.send(buf)
                buf = b""
                r = c.response(self.timeout)
                if r is None or not r.startswith("+"):
                    # The server refused the literal (or said nothing): its answer goes to the next S lines.
                    if r is not None:
                        c.pending.append(r)
                    return
                continue
            buf += part
        if not c.send(buf):
            c.pending.append(CLOSED)

    # -- S groups
    def do_group(self, group):
        conn_name = group[0].conn
        c = self.conn(conn_name, group[0].no, via_s=True)
        first = group[0].no
        expunged = None
        patterns = []
        for line in group:
            if line.op == "=":
                words = line.text.split()
                if words[0] != "expunged":
                    raise ScriptError(f"line {line.no}: unknown S= check {line.text!r}")
                expunged = (line, [int(substitute(w, self.variables)) for w in words[1:]])
            else:
                patterns.append(Pattern(line.no, line.text, line.op == "~", self.variables))
        finals = [p for p in patterns if p.final]
        untagged = [p for p in patterns if not p.final]
        got = []
        matched = {}
        end = None
        timed_out = False
        expunges = []
        while True:
            want_more = finals or any(id(p) not in matched for p in untagged) or (
                expunged and len(expunges) < len(expunged[1]))
            if end is not None or not want_more:
                break
            r = c.response(self.timeout)
            if r is None:
                timed_out = True
                break
            got.append(r)
            if expunged and re.fullmatch(r"\* \d+ EXPUNGE", r):
                expunges.append(int(r.split()[1]))
                continue
            hit = next((p for p in finals if p.match(r)), None)
            if hit is not None:
                end = (hit, r)
                break
            hit = next((p for p in untagged if id(p) not in matched and p.match(r)), None)
            if hit is not None:
                matched[id(hit)] = r
                continue
            if r == CLOSED:
                break
            if not r.startswith("*") and (finals or r.startswith("+")):
                break      # a tagged (or continuation) response that is not the expected one
        # Assignment of untagged responses to patterns (a real matching, not just first-fit).
        responses = [r for r in got if (end is None or r is not end[1])
                     and not (expunged and re.fullmatch(r"\* \d+ EXPUNGE", r))]
        assign = bipartite(untagged, responses)
        unexpected = [r for i, r in enumerate(responses) if i not in assign.values() and not self.allowed(c, r)]
        missing = [p for k, p in enumerate(untagged) if k not in assign]
        problems = []
        if finals and end is None:
            problems.append("the expected tagged/continuation response did not come" + (" (timeout)" if timed_out else ""))
        for p in missing:
            problems.append(f"missing (line {p.line}): {p.src}")
        for r in unexpected:
            problems.append(f"unexpected: {short(r, 300)}")
        if expunged:
            ok, why = check_expunges(expunges, expunged[1])
            if not ok:
                problems.append(f"EXPUNGE responses {expunges}: {why}")
        # Variables captured by {{=name:...}}.
        for k, p in enumerate(untagged):
            if k in assign:
                self.capture(p, responses[assign[k]])
        if end is not None:
            self.capture(end[0], end[1])
        desc = "; ".join(short(l.text, 60) for l in group[:4]) + (f"; ... ({len(group)} lines)" if len(group) > 4 else "")
        detail = None
        if problems:
            detail = ("expected:\n" + "\n".join(f"  {l.no}: S{l.op} {l.text}" for l in group)
                      + "\nactual:\n" + ("\n".join(f"  {short(r, 400)}" for r in got) or "  (nothing)")
                      + "\nproblems:\n" + "\n".join("  " + p for p in problems))
        last = group[-1].no
        self.check(not problems, first if first == last else f"{first}-{last}", f"{conn_name} {desc}", detail)
        if CLOSED in got:
            c.closed = True
            if CLOSED in unexpected:
                raise Abort(f"{conn_name}: the server closed the connection")
        if timed_out and finals and end is None:
            raise Abort(f"{conn_name}: no answer within {self.timeout}s (script stopped)")

    def allowed(self, c, r):
        return any((conn is None or conn == c.name) and p.match(r) for conn, p in self.allow)

    def capture(self, pattern, actual):
        m = pattern.match(actual)
        if m:
            for k, v in m.groupdict().items():
                if v is not None:
                    self.variables[k] = v

    # -- directives
    def do_directive(self, line):
        args = line.text.split()
        name = line.op
        if name in ("title", "only", "option"):
            return
        if name == "allow":
            conn = None
            text = line.text
            if args and re.fullmatch(r"C\d+", args[0]):
                conn, text = args[0], line.text[len(args[0]):].strip()
            regex = text.startswith("~ ")
            self.allow.append((conn, Pattern(line.no, text[2:] if regex else text, regex, self.variables)))
        elif name == "connect":
            self.conn(args[0], line.no, tls="tls" in args[1:])
        elif name == "login":
            c = self.conn(args[0], line.no)
            user = args[1] if len(args) > 1 else "alice"
            self.command_ok(c, line.no, f'LOGIN "{self.variables[user]}" "{self.variables[user + "_pass"]}"',
                            f"{args[0]} LOGIN as {user}")
        elif name == "select":
            c = self.conn(args[0], line.no)
            self.command_ok(c, line.no, f"SELECT {substitute(' '.join(args[1:]), self.variables)}",
                            f"{args[0]} SELECT {' '.join(args[1:])}")
        elif name == "starttls":
            c = self.conn(args[0], line.no)
            self.command_ok(c, line.no, "STARTTLS", f"{args[0]} STARTTLS answered OK")
            if not self.check(not c.buf, line.no, f"{args[0]} no plaintext bytes after the STARTTLS OK", repr(c.buf)):
                raise Abort("plaintext after STARTTLS")
            try:
                c.sock = self.server.tls_context().wrap_socket(c.sock, server_hostname="localhost")
            except (ssl.SSLError, OSError) as exc:
                self.check(False, line.no, f"{args[0]} TLS handshake after STARTTLS", str(exc))
                raise Abort("STARTTLS handshake failed") from exc
        elif name == "close":
            if args[0] in self.conns:
                self.conns.pop(args[0]).close()
        elif name == "deliver":
            user = self.variables[args[0]]
            src = args[1]
            if src.startswith("@"):
                data = self.blocks[src[1:]]
            elif src.startswith("file:"):
                data = (self.path.parent / src[5:]).read_bytes()
            else:
                raise ScriptError(f"line {line.no}: !deliver USER @BLOCK|file:PATH")
            ok, why = self.server.deliver(user, data)
            if not self.check(ok, line.no, f"deliver {src} to {args[0]}", why):
                raise Abort("delivery failed")
        elif name == "send":
            c = self.conn(args[0], line.no)
            expr = line.text[len(args[0]):].strip()
            data = eval(expr, {"__builtins__": {}}, {"v": self.variables})  # noqa: S307 - our own scripts
            if isinstance(data, str):
                data = data.encode("latin-1")
            if not c.send(data):
                c.pending.append(CLOSED)
        elif name == "quiet":
            c = self.conn(args[0], line.no)
            secs = float(args[1]) if len(args) > 1 else 0.5
            r = c.response(secs)
            self.check(r is None, line.no, f"{args[0]} nothing arrives for {secs}s",
                       f"got {short(r or '', 300)!r}")
        elif name == "closed":
            c = self.conn(args[0], line.no)
            secs = float(args[1]) if len(args) > 1 else self.timeout
            got = []
            deadline = time.monotonic() + secs
            r = None
            while time.monotonic() < deadline:
                r = c.response(max(0.05, deadline - time.monotonic()))
                if r is None or r == CLOSED:
                    break
                got.append(r)
            self.check(r == CLOSED, line.no, f"{args[0]} the server closes the connection",
                       f"after {[short(g) for g in got]}: {'timeout' if r is None else r}")
        elif name == "serving":
            ok, detail = True, ""
            try:
                c = Conn("probe", self.server.port)
                g = c.response(self.timeout)
                c.send(f'p1 LOGIN "{self.variables["alice"]}" "{self.variables["alice_pass"]}"\r\np2 NOOP\r\n')
                seen = [g]
                while True:
                    r = c.response(self.timeout)
                    seen.append(r)
                    if r is None or r == CLOSED or r.startswith("p2 "):
                        break
                ok = r is not None and r.startswith("p2 OK")
                detail = str(seen)
                c.close()
            except OSError as exc:
                ok, detail = False, str(exc)
            self.check(ok and self.server.alive(), line.no, "the server still serves a new client (LOGIN, NOOP)",
                       detail)
        elif name == "sleep":
            time.sleep(float(args[0]))
        elif name == "set":
            self.variables[args[0]] = substitute(" ".join(args[1:]), self.variables)
        elif name == "timeout":
            self.timeout = float(args[0])
        elif name == "dovecot-deviates":
            self.deviates = line.text
        elif name == "dovecot-deviates-begin":
            self.deviates_block = line.text
        elif name == "dovecot-deviates-end":
            self.deviates_block = None
        else:
            raise ScriptError(f"line {line.no}: unknown directive !{name}")

    # -- main loop
    def run(self):
        i = 0
        lines = self.lines
        try:
            while i < len(lines):
                line = lines[i]
                if line.kind == "!":
                    self.do_directive(line)
                    i += 1
                elif line.kind == "C":
                    self.do_client(line)
                    i += 1
                else:
                    group = [line]
                    i += 1
                    while i < len(lines) and lines[i].kind == "S" and lines[i].conn == line.conn:
                        if lines[i].op == "+":
                            group[-1] = Line(group[-1].no, "S", group[-1].conn, group[-1].op,
                                             group[-1].text + "\r\n" + lines[i].text)
                        elif self._ends_group(group[-1]):
                            break
                        else:
                            group.append(lines[i])
                        i += 1
                    self.do_group(group)
        except Abort as exc:
            rest = [l for l in lines[i + 1:] if l.kind == "S" or l.op in ("quiet", "closed", "serving")]
            self.check(False, lines[min(i, len(lines) - 1)].no,
                       f"script stopped: {exc}",
                       f"{len(rest)} later checks not run\n{self.server.diagnostics()}")
        finally:
            for c in self.conns.values():
                c.close()
        return self.failed == 0

    def _ends_group(self, line):
        """A tagged or continuation pattern ends a group (the next S line starts a new one)."""
        if line.op == "=":
            return False
        text = line.text
        if line.op == "~":
            return not (text.startswith("\\*") or text.startswith("^\\*"))
        return not text.startswith("*")


def bipartite(patterns, responses):
    """Maximum matching pattern index -> response index (Kuhn's algorithm; the sizes are tiny)."""
    owner = {}

    def try_assign(k, seen):
        for j, r in enumerate(responses):
            if j in seen or not patterns[k].match(r):
                continue
            seen.add(j)
            if j not in owner or try_assign(owner[j], seen):
                owner[j] = k
                return True
        return False

    for k in range(len(patterns)):
        try_assign(k, set())
    return {k: j for j, k in owner.items()}


def check_expunges(seen, wanted):
    """Applies `* n EXPUNGE` responses in order to the messages 1..max; (ok, why)."""
    size = max(wanted + seen + [0]) + len(seen)
    msgs = list(range(1, size + 1))
    removed = []
    for n in seen:
        if n < 1 or n > len(msgs):
            return False, f"* {n} EXPUNGE is out of range at that point"
        removed.append(msgs.pop(n - 1))
    if sorted(removed) != sorted(wanted):
        return False, f"they remove messages {sorted(removed)} (numbered before the EXPUNGE), not {sorted(wanted)}"
    return True, ""


def script_header(path):
    """(title, only, options) from a script's directives."""
    title, only, options = "", None, []
    for line in Path(path).read_text().splitlines():
        if line.startswith("!title "):
            title = line[7:].strip()
        elif line.startswith("!only "):
            words = line[6:].split(None, 1)
            only = (words[0], words[1] if len(words) > 1 else "")
        elif line.startswith("!option "):
            options.append(line[8:].strip())
    return title, only, options


def run_script(checks, path, server_kind="ternd", dovecot=None):
    """Runs one script (a fresh ternd, or a fresh user on the shared Dovecot); returns True if it passed."""
    path = Path(path)
    title, only, options = script_header(path)
    if only and only[0] != server_kind:
        checks.skip(f"{path.stem}: {title}", f"only on {only[0]}: {only[1]}", documented="imap-script-only")
        return True
    checks.note(f"---- {path.name} ({server_kind}): {title}")
    if server_kind == "dovecot":
        server = dovecot.new_script(path.stem)
        if options:
            checks.note(f"ternd options {options} do not apply to Dovecot")
    else:
        try:
            server = TerndServer(path.stem, options)
        except Exception as exc:  # noqa: BLE001
            checks.check(False, f"{path.stem}: ternd starts", str(exc))
            return False
    try:
        runner = Runner(checks, server, path)
        ok = runner.run()
    finally:
        if server_kind == "ternd":
            alive_ok, detail = server.finish()
            if not checks.check(alive_ok, f"{path.stem}: ternd still running after the script and exits 0 on SIGTERM",
                                detail):
                ok = False
    return ok
