"""Helpers for the end-to-end tests of the `tern` command-line client (issue 4).

- `Tern`: runs the client with its own $TERN_HOME (and HOME/XDG dirs inside the test's temp dir, so a
  test never touches a real user's mail), with helpers for `account add`, `list --json`, `show`, the
  `.eml` files under HOME/mail and the temporary files under HOME/tmp.
- `Result`: what one run gave (exit status, stdout, stderr, wall time, peak memory when measured).
- JSON helpers that accept the output shapes the spec allows (an array, an object holding an array, or
  one object per line), and `count_field` for the new/skipped counts of `tern fetch --json`.
- `make_cert`: a self-signed certificate for "localhost" (and 127.0.0.1) with openssl.
- `crlf`, `header_section`, `has_header`: byte helpers for comparing stored copies.

Pure Python 3 standard library; the client binary is $TERN_BUILD/tern.
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import harness

TERN = harness.BUILD_DIR / "tern"
TIME_BIN = "/usr/bin/time"


class Result:
    """One run of tern."""

    def __init__(self, argv, rc, out, err, elapsed, maxrss_kb=None, timed_out=False):
        self.argv = argv
        self.rc = rc
        self.out = out or b""
        self.err = err or b""
        self.elapsed = elapsed
        self.maxrss_kb = maxrss_kb
        self.timed_out = timed_out

    @property
    def stdout(self):
        return self.out.decode("utf-8", errors="replace")

    @property
    def stderr(self):
        return self.err.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.stdout)

    def detail(self, limit=1500):
        """A description for a failed check."""
        args = " ".join(str(a) for a in self.argv[1:])
        text = (f"tern {args}\nexit {self.rc}{' (timed out)' if self.timed_out else ''} "
                f"after {self.elapsed:.1f}s\n")
        if self.out:
            text += "stdout: " + self.stdout[:limit] + "\n"
        if self.err:
            text += "stderr: " + self.stderr[:limit] + "\n"
        return text

    def __repr__(self):
        return self.detail()


def parse_time_v(text):
    """Maximum resident set size (KiB) from `/usr/bin/time -v` output, or None."""
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
    return int(m.group(1)) if m else None


class Tern:
    """The tern client with its own home directory."""

    def __init__(self, root, name="home", tz="UTC"):
        self.root = Path(root)
        self.home = self.root / name
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "TERN_HOME": str(self.home),
            "HOME": str(self.root / (name + "-userhome")),
            "XDG_CONFIG_HOME": str(self.root / (name + "-xdg-config")),
            "XDG_DATA_HOME": str(self.root / (name + "-xdg-data")),
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
            "TZ": tz,
            "TERM": "dumb",
        })
        self.env.pop("NO_COLOR", None)
        self.env["NO_COLOR"] = "1"

    def argv(self, args):
        return [str(TERN)] + [str(a) for a in args]

    def run(self, args, input_bytes=None, timeout=60, measure=False):
        """Runs tern ARGS; with measure, under /usr/bin/time -v (peak RSS in result.maxrss_kb)."""
        argv = self.argv(args)
        full = argv
        time_file = None
        if measure and os.access(TIME_BIN, os.X_OK):
            fd, time_file = tempfile.mkstemp(prefix="tern-time-", dir=self.root)
            os.close(fd)
            full = [TIME_BIN, "-v", "-o", time_file] + argv
        start = time.monotonic()
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                                start_new_session=True)
        peak = [0]
        timed_out = False
        if measure and time_file is None:
            # No /usr/bin/time: poll VmHWM while it runs.
            import threading

            def poll():
                while proc.poll() is None:
                    v = proc_kb(proc.pid, "VmHWM")
                    if v:
                        peak[0] = max(peak[0], v)
                    time.sleep(0.02)
            threading.Thread(target=poll, daemon=True).start()
        try:
            out, err = proc.communicate(input=input_bytes, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            out, err = proc.communicate()
        elapsed = time.monotonic() - start
        maxrss = None
        if time_file is not None:
            try:
                maxrss = parse_time_v(Path(time_file).read_text(errors="replace"))
            finally:
                os.unlink(time_file)
        elif measure:
            maxrss = peak[0] or None
        rc = None if timed_out else proc.returncode
        return Result(argv, rc, out, err, elapsed, maxrss, timed_out)

    def popen(self, args, **kwargs):
        opts = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        opts.update(kwargs)
        return subprocess.Popen(self.argv(args), env=self.env, **opts)

    # ---- accounts ----------------------------------------------------------------------------
    def account_add(self, name, address, password=None, smtp=None, pop3=None, imap=None, ca_file=None,
                    extra=()):
        args = ["account", "add", name, "--address", address]
        if smtp:
            args += ["--smtp", smtp]
        if pop3:
            args += ["--pop3", pop3]
        if imap:
            args += ["--imap", imap]
        if ca_file:
            args += ["--ca-file", ca_file]
        args += list(extra)
        if password is not None:
            args += ["--password-stdin"]
            return self.run(args, input_bytes=(password + "\n").encode())
        return self.run(args)

    # ---- the local store ---------------------------------------------------------------------
    def list_json(self, *args):
        """`tern list --json ARGS` as a list of dicts; raises with the run's detail on failure."""
        r = self.run(["list", "--json"] + list(args))
        if r.rc != 0:
            raise RuntimeError(r.detail())
        return parse_messages(r.stdout)

    def search_json(self, query):
        """`tern search TERM... --json`: the query's terms as separate arguments, as typed in a shell
        (one argument with a space is one phrase)."""
        terms = query.split() if isinstance(query, str) else list(query)
        r = self.run(["search"] + terms + ["--json"])
        if r.rc != 0:
            raise RuntimeError(r.detail())
        return parse_messages(r.stdout)

    def raw(self, msg_id):
        r = self.run(["show", str(msg_id), "--raw"])
        if r.rc != 0:
            raise RuntimeError(r.detail())
        return r.out

    def eml_files(self):
        base = self.home / "mail"
        if not base.exists():
            return []
        return sorted(p for p in base.rglob("*.eml") if p.is_file())

    def tmp_files(self):
        base = self.home / "tmp"
        if not base.exists():
            return []
        return sorted(p for p in base.rglob("*") if p.is_file())


def proc_kb(pid, field):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# ---- JSON shapes ----------------------------------------------------------------------------------
def parse_messages(text):
    """A list of message objects from `list --json` / `search --json`: accepts a JSON array, an object
    with one array member (e.g. {"messages": [...]}), or one JSON object per line."""
    text = text.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(value, dict):
        arrays = [v for v in value.values() if isinstance(v, list)]
        if len(arrays) == 1:
            value = arrays[0]
        elif "id" in value:
            value = [value]
        else:
            raise ValueError(f"no message array in {text[:200]!r}")
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"not a list of objects: {text[:200]!r}")
    return value


def parse_json_any(text):
    """One JSON value, or a list of the values when the output is one JSON value per line."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def count_field(value, names):
    """Sum of the integer members named one of names anywhere in a JSON value (None when absent).

    `tern fetch --json` reports counts of new and skipped messages; they may be at the top level or per
    account/folder, so every occurrence is added up (a total and its parts are not both counted: when the
    top-level object has the field, only that one is used)."""
    if isinstance(value, dict):
        for n in names:
            if n in value and isinstance(value[n], int) and not isinstance(value[n], bool):
                return value[n]
        total = None
        for v in value.values():
            c = count_field(v, names)
            if c is not None:
                total = (total or 0) + c
        return total
    if isinstance(value, list):
        total = None
        for v in value:
            c = count_field(v, names)
            if c is not None:
                total = (total or 0) + c
        return total
    return None


NEW_NAMES = ("new", "downloaded", "fetched")
SKIP_NAMES = ("skipped", "already", "existing")


def fetch_counts(result):
    """(new, skipped) from a `tern fetch --json` run (None for what it does not report)."""
    try:
        value = parse_json_any(result.stdout)
    except (json.JSONDecodeError, ValueError):
        return None, None
    return count_field(value, NEW_NAMES), count_field(value, SKIP_NAMES)


def field_text(value):
    """A list/dict/str JSON field (from, to, flags) as one searchable string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return ", ".join(field_text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(field_text(v) for v in value.values())
    return str(value)


def is_unread(entry):
    flags = entry.get("flags")
    if isinstance(flags, (list, str)):
        return "seen" not in field_text(flags).lower()
    if isinstance(flags, int):
        return not flags & 1
    return None


# ---- bytes ----------------------------------------------------------------------------------------
def crlf(data):
    """Every LF not preceded by CR as CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def header_section(message):
    """The header section of a message (bytes), up to the first empty line."""
    m = re.search(rb"\r?\n\r?\n", message)
    return message[:m.start() + 1] if m else message


def has_header(message, name):
    """True if the header section has a field called name (case-insensitive)."""
    pat = re.compile(rb"(?im)^" + re.escape(name.encode()) + rb"[ \t]*:")
    return bool(pat.search(header_section(message)))


# ---- TLS material ---------------------------------------------------------------------------------
def make_cert(directory, cn="localhost"):
    """A self-signed EC certificate for cn, DNS:localhost and IP:127.0.0.1 -> (cert path, key path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return cert, key


def tern_built(checks):
    """Reports whether the client binary exists (a failed check when it does not)."""
    return checks.check(TERN.exists(), f"the tern client is built ({TERN})",
                        f"build it: ninja -C {harness.BUILD_DIR} tern")


def mentions(text, words):
    """True if text (case-insensitive) contains any of words."""
    low = text.lower()
    return any(w.lower() in low for w in words)
