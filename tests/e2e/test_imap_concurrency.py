#!/usr/bin/env python3
"""End-to-end: IMAP semantics under concurrency against a real ternd (issue 10, section 2).

Every response of every session is read by a strict parser (below): a line that does not follow the
RFC 3501 grammar (ENVELOPE NIL, BODYSTRUCTURE NIL, a section NIL, an unknown item, a NUL inside a
literal) is a protocol error, and every test requires zero of them.

- FETCH of a message another session expunged (RFC 2180 4.1, RFC 5530): valid data for every item
  or a tagged NO [EXPUNGEISSUED], never NIL structures;
- STORE on a message another session expunged (RFC 2180 4.2): not a silent OK;
- two sessions changing flags of the same messages: no session ever reports a state older than one
  it reported (with CONDSTORE: MODSEQ never goes back, one MODSEQ is one set of flags), and after
  NOOP each view equals the store;
- a NUL byte delivered over SMTP is sent as 0x80 inside IMAP literals, sizes unchanged;
- a stress run: N sessions doing FETCH/STORE/EXPUNGE/APPEND/COPY at once on one mailbox, each
  session's view (UIDs by sequence number, flags) compared with a fresh session at checkpoints, plain,
  with CONDSTORE and with QRESYNC (VANISHED instead of EXPUNGE).
"""

import collections
import os
import random
import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, Daemon, RawIMAP  # noqa: E402

SENDER = "sender@remote.test"
STRESS_SECONDS = float(os.environ.get("TERN_STRESS_SECONDS", "20"))
STRESS_SESSIONS = 6


# ---- a strict parser of server responses -------------------------------------------------------------

class ProtocolError(Exception):
    pass


ATOM_CHARS = set(range(0x21, 0x7f)) - set(b'(){ %*"\\]')


class Parser:
    """Parses one response line (literals inlined as the RawIMAP reader returns them)."""

    def __init__(self, data):
        self.b = data
        self.i = 0

    def fail(self, why):
        raise ProtocolError(f"{why} at byte {self.i}: {self.b[:300]!r}")

    def peek(self):
        return self.b[self.i] if self.i < len(self.b) else None

    def expect(self, s):
        if not self.b.startswith(s, self.i):
            self.fail(f"expected {s!r}")
        self.i += len(s)

    def end(self):
        if self.i != len(self.b):
            self.fail("trailing bytes")

    def sp(self):
        self.expect(b" ")

    def number(self):
        m = re.compile(rb"\d+").match(self.b, self.i)
        if not m:
            self.fail("expected a number")
        self.i = m.end()
        return int(m.group())

    def atom(self):
        start = self.i
        while self.i < len(self.b) and self.b[self.i] in ATOM_CHARS and self.b[self.i] != ord("["):
            self.i += 1
        if self.i == start:
            self.fail("expected an atom")
        return self.b[start:self.i].decode()

    def quoted(self):
        self.expect(b'"')
        out = bytearray()
        while True:
            c = self.peek()
            if c is None or c in (0, 0x0a, 0x0d):
                self.fail("bad byte in a quoted string")
            self.i += 1
            if c == ord('"'):
                return bytes(out)
            if c == ord("\\"):
                e = self.peek()
                if e not in (ord('"'), ord("\\")):
                    self.fail("bad escape in a quoted string")
                self.i += 1
                c = e
            out.append(c)

    def literal(self):
        self.expect(b"{")
        n = self.number()
        self.expect(b"}\r\n")
        data = self.b[self.i:self.i + n]
        if len(data) != n:
            self.fail("short literal")
        if b"\x00" in data:
            self.fail("NUL inside a literal (RFC 3501 4.3)")
        self.i += n
        return data

    def string(self):
        c = self.peek()
        if c == ord('"'):
            return self.quoted()
        if c == ord("{"):
            return self.literal()
        self.fail("expected a string")

    def nstring(self):
        if self.b.startswith(b"NIL", self.i):
            self.i += 3
            return None
        return self.string()

    def value(self):
        """Any value (for envelopes and body structures): nstring, number, list."""
        c = self.peek()
        if c == ord("("):
            return self.list_(self.value)
        if c in (ord('"'), ord("{")):
            return self.string()
        if self.b.startswith(b"NIL", self.i):
            self.i += 3
            return None
        if c is not None and 0x30 <= c <= 0x39:
            return self.number()
        self.fail("expected a value")

    def list_(self, item):
        self.expect(b"(")
        out = []
        while self.peek() != ord(")"):
            if out:
                self.sp()
            out.append(item())
        self.i += 1
        return out

    def flag(self):
        if self.peek() == ord("\\"):
            self.i += 1
            if self.peek() == ord("*"):
                self.i += 1
                return "\\*"
            return "\\" + self.atom()
        return self.atom()

    def address(self):
        a = self.list_(self.value)
        if len(a) != 4 or any(x is not None and not isinstance(x, bytes) for x in a):
            self.fail("bad address")
        return a

    def envelope(self):
        self.expect(b"(")
        fields = []
        for k in range(10):
            if k:
                self.sp()
            if k in (2, 3, 4, 5, 6, 7):  # from sender reply-to to cc bcc: NIL or address list
                if self.peek() == ord("("):
                    fields.append(self.list_(self.address))
                else:
                    self.expect(b"NIL")
                    fields.append(None)
            else:
                fields.append(self.nstring())
        self.expect(b")")
        return fields

    def body(self):
        if self.peek() != ord("("):
            self.fail("BODY/BODYSTRUCTURE must be a list")
        b = self.list_(self.value)
        if not b:
            self.fail("empty body structure")
        return b

    def section_name(self):
        """BODY[...]<n> after the word BODY (or BINARY): returns the whole name."""
        start = self.i
        self.expect(b"[")
        depth = 1
        while depth:
            c = self.peek()
            if c is None or c in (0x0d, 0x0a):
                self.fail("unterminated section")
            self.i += 1
            if c == ord("["):
                depth += 1
            elif c == ord("]"):
                depth -= 1
        if self.peek() == ord("<"):
            self.i += 1
            self.number()
            self.expect(b">")
        return self.b[start:self.i].decode(errors="replace")

    def response_code(self):
        """After a status word: the [CODE ...] text if there is one (the rest is free text)."""
        if self.peek() != ord(" "):
            return None
        self.sp()
        if self.peek() != ord("["):
            return None
        end = self.b.find(b"]", self.i)
        if end < 0:
            self.fail("unterminated response code")
        return self.b[self.i + 1:end].decode(errors="replace")

    def fetch_atts(self):
        atts = {}
        self.expect(b"(")
        first = True
        while self.peek() != ord(")"):
            if not first:
                self.sp()
            first = False
            name = self.atom()
            if name in ("BODY", "BINARY") and self.peek() == ord("["):
                name += self.section_name()
                self.sp()
                data = self.string() if name.startswith("BODY") else self.nstring()
                atts[name] = data
                continue
            self.sp()
            if name == "UID" or name == "RFC822.SIZE":
                atts[name] = self.number()
            elif name == "FLAGS":
                atts[name] = self.list_(self.flag)
            elif name == "MODSEQ":
                self.expect(b"(")
                atts[name] = self.number()
                self.expect(b")")
            elif name == "INTERNALDATE":
                d = self.quoted()
                if not re.fullmatch(rb"[ \d]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}", d):
                    self.fail("bad INTERNALDATE")
                atts[name] = d
            elif name == "ENVELOPE":
                atts[name] = self.envelope()
            elif name in ("BODY", "BODYSTRUCTURE"):
                atts[name] = self.body()
            elif name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                atts[name] = self.string()
            else:
                self.fail(f"unknown FETCH item {name}")
        self.i += 1
        return atts


def parse_response(line, tag=None):
    """Returns a tuple describing the response; raises ProtocolError when it breaks the grammar."""
    p = Parser(line)
    if line.startswith(b"+ ") or line == b"+":
        return ("cont",)
    if tag is not None and line.startswith(tag.encode() + b" "):
        p.i = len(tag) + 1
        status = p.atom()
        if status not in ("OK", "NO", "BAD"):
            p.fail("bad tagged status")
        return ("tagged", status, p.response_code())
    p.expect(b"* ")
    if p.peek() is not None and 0x30 <= p.peek() <= 0x39:
        n = p.number()
        p.sp()
        what = p.atom()
        if what in ("EXISTS", "RECENT", "EXPUNGE"):
            p.end()
            return (what, n)
        if what == "FETCH":
            p.sp()
            atts = p.fetch_atts()
            p.end()
            return ("FETCH", n, atts)
        p.fail(f"unknown numbered response {what}")
    word = p.atom()
    if word in ("OK", "NO", "BAD", "BYE"):
        return (word, p.response_code())
    if word == "FLAGS":
        p.sp()
        p.list_(p.flag)
        p.end()
        return ("FLAGS",)
    if word == "VANISHED":
        p.sp()
        earlier = line.startswith(b"(EARLIER) ", p.i)
        if earlier:
            p.i += len(b"(EARLIER) ")
        uids = []
        while True:
            lo = p.number()
            hi = lo
            if p.peek() == ord(":"):
                p.i += 1
                hi = p.number()
            if lo == 0 or hi == 0:
                p.fail("UID 0 in VANISHED")
            uids.extend(range(min(lo, hi), max(lo, hi) + 1))
            if p.peek() != ord(","):
                break
            p.i += 1
        p.end()
        return ("VANISHED", earlier, uids)
    if word == "SEARCH":
        nums = []
        while p.peek() == ord(" "):
            p.sp()
            if p.peek() == ord("("):
                break
            nums.append(p.number())
        return ("SEARCH", nums)
    if word in ("CAPABILITY", "ENABLED"):
        return (word,)
    p.fail(f"unknown response {word}")


# ---- a client that keeps its view of the mailbox -----------------------------------------------------

class View:
    """One IMAP session on INBOX that tracks what the server told it: UIDs by sequence number, flags
    and MODSEQ per UID. Records protocol errors and views that went back in time."""

    def __init__(self, d, name, condstore=False, shared=None, qresync=False):
        self.name = name
        self.condstore = condstore
        self.imap = RawIMAP(d.imap_port, timeout=60)
        self.uids = []           # sequence number n -> uids[n - 1] (None until a FETCH says)
        self.flags = {}          # uid -> frozenset of flags (without \Recent)
        self.modseq = {}         # uid -> last MODSEQ reported
        self.errors = []         # protocol errors and impossible updates
        self.rollbacks = []      # a state older than one already reported
        self.shared = shared if shared is not None else {}  # (uid, modseq) -> flags, all sessions
        self.lock = threading.Lock()
        self.transcript = collections.deque(maxlen=60)  # the last lines, for failure reports
        self.history = {}  # uid -> the FLAGS lines about it, each with the command it came in
        self.lastcmd = b""
        tagged, _ = self.imap.login(ALICE, d.passwords[ALICE])
        if " OK" not in tagged:
            raise RuntimeError(f"{name}: LOGIN answered {tagged}")
        self.qresync = qresync
        if qresync:
            self.cmd("ENABLE QRESYNC")
        elif condstore:
            self.cmd("ENABLE CONDSTORE")
        status = self.cmd("SELECT INBOX")
        if status[1] != "OK":
            raise RuntimeError(f"{name}: SELECT answered {status}")

    def cmd(self, text):
        """Sends a command, applies every response to the view; returns ("tagged", status, code)."""
        tag = self.imap.next_tag()
        if isinstance(text, str):
            text = text.encode()
        self.imap.send(tag.encode() + b" " + text + b"\r\n")
        self.transcript.append(b"C: " + tag.encode() + b" " + text[:80])
        self.lastcmd = tag.encode() + b" " + text[:40]
        while True:
            line = self.imap.response()
            self.transcript.append(line[:150])
            try:
                r = parse_response(line, tag)
            except ProtocolError as exc:
                self.errors.append(f"{self.name}: {text[:60]!r}: {exc}")
                continue
            if r[0] == "tagged":
                if r[1] == "BAD":
                    self.errors.append(f"{self.name}: {text[:60]!r} answered BAD: {line[:200]!r}")
                self.last_tagged = line
                break
            self.apply(r, line)
        if any(u is None for u in self.uids):
            first = self.uids.index(None) + 1
            self.cmd(f"FETCH {first}:* (UID FLAGS)")
        return r

    def apply(self, r, line):
        kind = r[0]
        if kind == "EXISTS":
            if r[1] < len(self.uids):
                self.errors.append(f"{self.name}: EXISTS {r[1]} below {len(self.uids)}")
            self.uids.extend([None] * (r[1] - len(self.uids)))
        elif kind == "VANISHED":
            if not self.qresync or r[1]:
                self.errors.append(f"{self.name}: unexpected {line[:100]!r}")
                return
            for uid in r[2]:
                if uid not in self.uids and None in self.uids:
                    # Announced by EXISTS, its UID not fetched yet. UIDs ascend with the
                    # sequence numbers, so it is one of the unknown slots between the known
                    # UIDs below and above it (which one does not matter: they are alike).
                    # A flag update may have named a later one already, so not just any None.
                    lo = max((i for i, u in enumerate(self.uids) if u is not None and u < uid),
                             default=-1)
                    hi = min((i for i, u in enumerate(self.uids) if u is not None and u > uid),
                             default=len(self.uids))
                    gap = [i for i in range(lo + 1, hi) if self.uids[i] is None]
                    if not gap:
                        self.errors.append(f"{self.name}: VANISHED {uid}: no unknown message "
                                           f"between its neighbours in the view")
                        continue
                    del self.uids[gap[-1]]
                    continue
                if uid not in self.uids:
                    self.errors.append(f"{self.name}: VANISHED {uid}, not in the view")
                    continue
                self.uids.remove(uid)
                self.flags.pop(uid, None)
                self.modseq.pop(uid, None)
        elif kind == "EXPUNGE" and self.qresync:
            self.errors.append(f"{self.name}: EXPUNGE with QRESYNC enabled: {line[:100]!r}")
        elif kind == "EXPUNGE":
            n = r[1]
            if not 1 <= n <= len(self.uids):
                self.errors.append(f"{self.name}: EXPUNGE {n} of {len(self.uids)}")
                return
            uid = self.uids.pop(n - 1)
            self.flags.pop(uid, None)
            self.modseq.pop(uid, None)
        elif kind == "FETCH":
            n, atts = r[1], r[2]
            if not 1 <= n <= len(self.uids):
                self.errors.append(f"{self.name}: FETCH for {n} of {len(self.uids)}: {line[:120]!r}")
                return
            uid = atts.get("UID")
            if uid is not None:
                if self.uids[n - 1] not in (None, uid):
                    self.errors.append(f"{self.name}: sequence {n} is UID {self.uids[n - 1]}, "
                                       f"FETCH says {uid}")
                self.uids[n - 1] = uid
            uid = self.uids[n - 1]
            if uid is None or "FLAGS" not in atts:
                return
            flags = frozenset(f for f in atts["FLAGS"] if f.lower() != "\\recent")
            ms = atts.get("MODSEQ")
            if ms is not None:
                old = self.modseq.get(uid, 0)
                if ms < old:
                    self.rollbacks.append(f"{self.name}: UID {uid} MODSEQ {ms} after {old}")
                with self.lock:
                    seen = self.shared.setdefault((uid, ms), flags)
                if seen != flags:
                    self.rollbacks.append(f"{self.name}: UID {uid} MODSEQ {ms} reported as "
                                          f"{sorted(flags)}, elsewhere {sorted(seen)}")
                self.modseq[uid] = max(old, ms)
            self.flags[uid] = flags
            self.history.setdefault(uid, []).append(b"%s @ %s" % (line[:90], self.lastcmd))

    def close(self):
        try:
            self.imap.command("LOGOUT")
        except Exception:  # noqa: BLE001 - closing only
            pass
        self.imap.close()


def store_state(d):
    """The store's truth as a fresh session sees it: ([uids], {uid: flags})."""
    v = View(d, "reference")
    v.cmd("FETCH 1:* (UID FLAGS)") if v.uids else None
    uids, flags = list(v.uids), dict(v.flags)
    errors = v.errors
    v.close()
    return uids, flags, errors


def compare_views(checks, d, views, what):
    for v in views:
        v.cmd("NOOP")
    uids, flags, errors = store_state(d)
    for v in views:
        same_uids = v.uids == uids
        bad = [u for u in uids if v.flags.get(u) != flags.get(u)]
        checks.check(same_uids and not bad and not errors,
                     f"{what}: {v.name}'s view after NOOP equals a fresh SELECT ({len(uids)} messages)",
                     f"uids equal: {same_uids}; flags differ for {bad[:10]}: "
                     + "; ".join(f"{u}: view {sorted(v.flags.get(u, []))} store {sorted(flags.get(u, []))}"
                                 for u in bad[:5]) + f"; {errors[:3]}\nwhat {v.name} was told of UID "
                     f"{bad[0] if bad else ''}:\n" + "\n".join(map(repr, v.history.get(bad[0], [])[-12:]) if bad else []))


def deliver(d, n, tag, body=None):
    for i in range(n):
        mid = harness.unique_id(f"{tag}{i}")
        msg = harness.make_message(SENDER, ALICE, f"{tag} {i}", mid,
                                   body_lines=[f"message {i} of {tag}", "second line"])
        if body is not None:
            msg = msg.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body
        code = harness.deliver_raw(d.mx_port, SENDER, ALICE, msg)
        if code != 250:
            raise RuntimeError(f"SMTP answered {code}")


def expunge_first(d):
    """Another session sets \\Deleted on message 1 and expunges it."""
    other = View(d, "expunger")
    other.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    r = other.cmd("EXPUNGE")
    other.close()
    return r


# ---- the tests ---------------------------------------------------------------------------------------

def test_fetch_expunged(checks):
    with Daemon("imapconc-fetch", imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        deliver(d, 3, "fx")
        a = View(d, "A")
        checks.check(len(a.uids) == 3, "A selected INBOX with 3 messages")
        expunge_first(d)
        items = "(UID FLAGS ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[] BODY.PEEK[HEADER.FIELDS (SUBJECT)] " \
                "BODY.PEEK[1] RFC822.SIZE INTERNALDATE)"
        for cmd in (f"FETCH 1 {items}", f"FETCH 1:3 {items}", f"UID FETCH 1:* {items}"):
            before = len(a.errors)
            r = a.cmd(cmd)
            ok = r[1] == "OK" or (r[1] == "NO" and r[2] == "EXPUNGEISSUED")
            checks.check(ok and len(a.errors) == before,
                         f"{cmd.split(' (')[0]} of a message another session expunged: every response "
                         f"parses (no NIL structure), tagged OK or NO [EXPUNGEISSUED] (got {r[1]} {r[2]})",
                         "\n".join(a.errors[before:][:5]))
        r = a.cmd("UID FETCH 2:3 (UID ENVELOPE)")
        checks.check(r[1] == "OK", "the messages still there are fetched with OK")
        a.cmd("NOOP")
        checks.check(len(a.uids) == 2, "NOOP then tells A of the expunge")
        a.close()


def test_store_expunged(checks):
    with Daemon("imapconc-store", imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        deliver(d, 2, "sx")
        a = View(d, "A")
        expunge_first(d)
        r = a.cmd("STORE 1 +FLAGS (\\Flagged $NewKeyword)")
        checks.check(r[1] == "NO" and not a.errors,
                     f"STORE on a message another session expunged is not a silent OK: NO "
                     f"(RFC 2180 4.2.1) (got {r[1]} {r[2]})", "\n".join(a.errors[:5]))
        r = a.cmd("STORE 1:2 +FLAGS ($Other)")
        checks.check(r[1] == "NO" and r[2] == "EXPUNGEISSUED",
                     f"STORE on 1:2 (1 expunged): NO [EXPUNGEISSUED] (got {r[1]} {r[2]})")
        a.cmd("NOOP")
        uids, flags, _ = store_state(d)
        checks.check(uids == a.uids and "$Other" in flags.get(uids[0], ()),
                     "the message still there got the change; A's view equals the store after NOOP",
                     f"store {uids} {flags}, view {a.uids} {a.flags}")
        a.close()


def flag_race(checks, d, condstore, rounds):
    shared = {}
    a = View(d, "A", condstore, shared)
    b = View(d, "B", condstore, shared)
    errors = []

    def loop(v, flag):
        try:
            for i in range(rounds):
                v.cmd(f"STORE 1:3 {'+' if i % 2 == 0 else '-'}FLAGS ({flag})")
                if i % 10 == 0:
                    v.cmd("NOOP")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{v.name}: {exc}")

    ta = threading.Thread(target=loop, args=(a, "\\Flagged"))
    tb = threading.Thread(target=loop, args=(b, "\\Seen"))
    ta.start(), tb.start()
    ta.join(), tb.join()
    what = f"flag race{' with CONDSTORE' if condstore else ''}, {rounds} STOREs each"
    checks.check(not errors and not a.errors and not b.errors, f"{what}: every response parses",
                 "\n".join((errors + a.errors + b.errors)[:5]))
    if condstore:
        rb = a.rollbacks + b.rollbacks
        checks.check(not rb, f"{what}: no session reports a MODSEQ older than one it reported, and "
                     f"one MODSEQ is one set of flags ({len(shared)} (UID, MODSEQ) pairs seen)",
                     "\n".join(rb[:8]))
    compare_views(checks, d, [a, b], what)
    a.close()
    b.close()


def test_flag_race(checks):
    with Daemon("imapconc-flags", imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        deliver(d, 3, "fr")
        flag_race(checks, d, True, 300)
        flag_race(checks, d, False, 300)


def test_nul(checks):
    with Daemon("imapconc-nul", imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        body = b"before\x00after\r\nline two\r\n"
        deliver(d, 1, "nul", body=body)
        a = View(d, "A")
        tag = a.imap.next_tag()
        tagged, lines = a.imap.command("FETCH 1 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[1] "
                                       "BODY.PEEK[TEXT]<3.6>)", tag=tag)
        errors = []
        atts = {}
        for line in lines:
            try:
                r = parse_response(line, tag)
                if r[0] == "FETCH":
                    atts = r[2]
            except ProtocolError as exc:
                errors.append(str(exc))
        checks.check(tagged.startswith(f"{tag} OK") and not errors and atts,
                     "FETCH of a message with a NUL byte: no NUL inside any literal (RFC 3501 4.3)",
                     "\n".join(errors[:3]))
        whole = atts.get("BODY[]", b"")
        checks.check(atts.get("BODY[TEXT]") == body.replace(b"\x00", b"\x80"),
                     "BODY[TEXT] has 0x80 where the NUL was (as Dovecot), nothing else changed",
                     repr(atts.get("BODY[TEXT]")))
        checks.check(atts.get("BODY[1]") == body.replace(b"\x00", b"\x80"), "BODY[1] the same")
        checks.check(atts.get("BODY[TEXT]<3>") == b"ore\x80af", "a partial across it: same offsets",
                     repr(atts.get("BODY[TEXT]<3>")))
        checks.check(len(whole) == atts.get("RFC822.SIZE"), "BODY[] is exactly RFC822.SIZE bytes",
                     f"{len(whole)} vs {atts.get('RFC822.SIZE')}")
        a.close()


STRESS_MESSAGE = (b"From: stress@remote.test\r\nTo: alice@example.test\r\nSubject: stress\r\n"
                  b"Message-ID: <%d.stress@remote.test>\r\n\r\nstress body\r\n")
FLAGS = ["\\Flagged", "\\Seen", "\\Answered", "\\Draft", "$Label1", "$Label2"]


def stress_worker(v, rng, stop, barrier, errors):
    counter = 0
    try:
        while True:
            if stop.is_set():
                return
            if barrier.n_waiting or getattr(barrier, "want", False):
                barrier.wait()   # a checkpoint: the main thread compares the views
                barrier.wait()
                continue
            n = len(v.uids)
            op = rng.random()
            if n == 0 or op < 0.12:
                counter += 1
                msg = STRESS_MESSAGE % (rng.randrange(1 << 30) * 100 + counter)
                v.cmd(b"APPEND INBOX {%d+}\r\n" % len(msg) + msg)
                continue
            lo = rng.randint(1, n)
            hi = min(n, lo + rng.randint(0, 4))
            seq = f"{lo}:{hi}" if hi > lo else f"{lo}"
            if op < 0.40:
                r = v.cmd(f"FETCH {seq} (UID FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE "
                          f"BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.20>)")
                if r[1] == "NO" and r[2] != "EXPUNGEISSUED":
                    errors.append(f"{v.name}: FETCH answered {r}")
            elif op < 0.70:
                sign = rng.choice("+-")
                flags = " ".join(rng.sample(FLAGS, rng.randint(1, 2)))
                r = v.cmd(f"STORE {seq} {sign}FLAGS ({flags})")
                if r[1] == "NO" and r[2] != "EXPUNGEISSUED":
                    errors.append(f"{v.name}: STORE answered {r}")
            elif op < 0.82 and n > 10:
                v.cmd(f"STORE {seq} +FLAGS (\\Deleted)")
                v.cmd("EXPUNGE" if rng.random() < 0.5 else "NOOP")
            elif op < 0.90 and n < 80:
                r = v.cmd(f"COPY {seq} INBOX")
                # NO [EXPUNGEISSUED]: another session expunged some of them, nothing copied.
                if r[1] != "OK" and not (r[1] == "NO" and r[2] == "EXPUNGEISSUED"):
                    errors.append(f"{v.name}: COPY {seq} answered {r} (view {n}); last lines:\n"
                                  + "\n".join(map(repr, list(v.transcript)[-12:])))
            else:
                v.cmd("NOOP")
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{v.name}: {type(exc).__name__}: {exc}")
        stop.set()
        try:
            barrier.abort()
        except Exception:  # noqa: BLE001
            pass


def stress(checks, d, condstore, qresync=False):
    what = "stress" + (" with QRESYNC" if qresync else " with CONDSTORE" if condstore else "")
    shared = {}
    views = [View(d, f"S{i}", condstore, shared, qresync) for i in range(STRESS_SESSIONS)]
    stop = threading.Event()
    barrier = threading.Barrier(STRESS_SESSIONS + 1)
    errors = []
    threads = [threading.Thread(target=stress_worker,
                                args=(v, random.Random(i * 7919 + condstore + 2 * qresync), stop, barrier, errors))
               for i, v in enumerate(views)]
    for t in threads:
        t.start()
    end = time.monotonic() + STRESS_SECONDS
    checkpoints = 0
    while time.monotonic() < end and not stop.is_set():
        time.sleep(min(STRESS_SECONDS / 4, max(0.0, end - time.monotonic())))
        if stop.is_set():
            break
        barrier.want = True
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            break
        barrier.want = False
        checkpoints += 1
        compare_views(checks, d, views, f"{what}, checkpoint {checkpoints}")
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            break
    stop.set()
    barrier.want = False
    for t in threads:
        t.join(timeout=120)
    perr = [e for v in views for e in v.errors]
    checks.check(not errors and not perr,
                 f"{what}: {STRESS_SESSIONS} sessions, {STRESS_SECONDS:.0f} s, zero protocol errors, no BAD, "
                 f"FETCH/STORE/COPY only OK or NO [EXPUNGEISSUED]", "\n".join((errors + perr)[:10]))
    if condstore:
        rb = [e for v in views for e in v.rollbacks]
        checks.check(not rb, f"{what}: no view ever went back (MODSEQ order, one MODSEQ one state)",
                     "\n".join(rb[:8]))
    checks.check(checkpoints >= 2, f"{what}: {checkpoints} checkpoints were reached")
    compare_views(checks, d, views, f"{what}, at the end")
    for v in views:
        v.close()


def test_stress(checks):
    with Daemon("imapconc-stress", imap=True) as d:
        if not harness.start_daemon(checks, d):
            return
        deliver(d, 20, "st")
        stress(checks, d, False)
        stress(checks, d, True)
        stress(checks, d, True, qresync=True)
        checks.check(d.alive(), "ternd still runs")


def run(checks):
    for test in (test_fetch_expunged, test_store_expunged, test_nul, test_flag_race, test_stress):
        checks.guard(f"{test.__name__} ran", test, checks)


if __name__ == "__main__":
    harness.main_guard(run)
