#!/usr/bin/env python3
"""End-to-end: RFC 5267 contexts (CONTEXT=SEARCH, CONTEXT=SORT) where the order of responses matters,
against a real ternd on loopback with two raw IMAP sessions (the scripted sessions in
imap_scripts/context_*.imap cover the rest; their groups accept untagged responses in any order).

- A context that counts sequence numbers gets REMOVEFROM for an expunged message BEFORE the EXPUNGE
  (RFC 5267 4.3.4: the number must still be valid), ADDTO for a new message AFTER its EXISTS (4.3.3), and
  nothing about an expunge during FETCH/STORE/SEARCH by sequence number (RFC 3501 7.4.1 keeps the EXPUNGE
  back, and so the REMOVEFROM).
- Updates come during IDLE.
- A context on SUBJECT (its new messages are read on the workers, in batches): the ADDTOs name
  exactly the matching ones; CANCELUPDATE and a closed connection while the files are read.
- A client model: session 1 keeps an MSN SEARCH context, a UID SEARCH context, a UID SORT (SIZE)
  context, a UID SORT (SUBJECT) context and an MSN text search (the last two read files) and applies every ADDTO/REMOVEFROM/EXPUNGE/EXISTS in the order they come (4.3.2) while session 2
  changes flags, appends and expunges at random (seeded); at each checkpoint the model must equal a fresh
  SEARCH/SORT. This fails on any wrong position, order or sequence number.
"""

import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, Daemon, RawIMAP, imap_tagged_ok, start_daemon  # noqa: E402

PASSWORD = harness.PASSWORDS[ALICE]
ROUNDS = 40


def session(d):
    s = RawIMAP(d.imap_port, timeout=20)
    tagged, _ = s.login(ALICE, PASSWORD)
    if not imap_tagged_ok(tagged):
        raise harness.IMAPError(f"login: {tagged}")
    tagged, _ = s.command("SELECT INBOX")
    if not imap_tagged_ok(tagged):
        raise harness.IMAPError(f"select: {tagged}")
    return s


def append(s, size, flags=""):
    body = ("x" * 70 + "\r\n") * size
    msg = f"Subject: ctx {size}\r\n\r\n{body}".encode()
    return s.command(f"APPEND INBOX ({flags}) {{{len(msg)}+}}\r\n".encode() + msg)


def expand(text):
    """A sequence set in its written order (ranges ascending, RFC 5267 3.2)."""
    out = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


UPDATE_RE = re.compile(rb'^\* ESEARCH \(TAG "([^"]+)"\)( UID)?((?: (?:ADDTO|REMOVEFROM) \([^)]*\))+)$')
ITEM_RE = re.compile(rb" (ADDTO|REMOVEFROM) \(([^)]*)\)")


def parse_update(line):
    """(tag, [(kind, [(pos, [ids])])]) of an ESEARCH update line, or None."""
    m = UPDATE_RE.match(line)
    if not m:
        return None
    items = []
    for kind, payload in ITEM_RE.findall(m.group(3)):
        toks = payload.decode().split()
        pairs = [(int(toks[i]), expand(toks[i + 1])) for i in range(0, len(toks), 2)]
        items.append((kind.decode(), pairs))
    return m.group(1).decode(), items


class Model:
    """What a client holds for its contexts, updated from responses in the order they come."""

    def __init__(self):
        self.ctx = {}  # tag -> (uid?, list in context order)
        self.exists = 0
        self.problems = []
        self.updates = 0

    def apply(self, lines):
        for line in lines:
            m = re.match(rb"^\* (\d+) (EXISTS|EXPUNGE)$", line)
            if m and m.group(2) == b"EXISTS":
                self.exists = int(m.group(1))
                continue
            if m:
                n = int(m.group(1))
                self.exists -= 1
                for tag, (uid, lst) in self.ctx.items():
                    if uid:
                        continue
                    if n in lst:
                        self.problems.append(f"{tag}: EXPUNGE {n} of a member with no REMOVEFROM before it")
                    self.ctx[tag] = (uid, [x - 1 if x > n else x for x in lst if x != n])
                continue
            up = parse_update(line)
            if up is None:
                continue
            tag, items = up
            self.updates += 1
            uid, lst = self.ctx[tag]
            for kind, pairs in items:
                for pos, ids in pairs:
                    for k, i in enumerate(ids):
                        if kind == "REMOVEFROM":
                            if i not in lst:
                                self.problems.append(f"{tag}: REMOVEFROM {i} not in {lst}")
                                continue
                            if pos and lst[pos - 1] != i:
                                self.problems.append(f"{tag}: REMOVEFROM ({pos} {i}) but {lst[pos - 1:pos]} is there")
                            lst.remove(i)
                        else:
                            if not uid and i > self.exists:
                                self.problems.append(f"{tag}: ADDTO {i} before its EXISTS ({self.exists})")
                            if pos:
                                lst.insert(pos - 1 + k, i)
                            else:
                                lst.append(i)
                                lst.sort()


def ids_of(untagged):
    """The result of a search's own ESEARCH (not an update of a context that came along)."""
    for line in untagged:
        if parse_update(line) is not None:
            continue
        m = re.match(rb"^\* ESEARCH \(TAG \"[^\"]+\"\)(?: UID)?(?: ALL (\S+))?", line)
        if m:
            return expand(m.group(1).decode()) if m.group(1) else []
    return None


def test_order(checks, d):
    a, b = session(d), session(d)
    try:
        for size in (1, 2, 3):
            append(b, size)
        a.command("NOOP")
        tagged, _ = a.command("SEARCH RETURN (UPDATE) ALL", tag="ctx1")
        checks.check(imap_tagged_ok(tagged), "SEARCH RETURN (UPDATE) ALL keeps a context", tagged)
        # An expunge while session 1 runs FETCH by sequence number: neither EXPUNGE nor REMOVEFROM.
        b.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.command("EXPUNGE")
        tagged, untagged = a.command("FETCH 1:* (FLAGS)")
        checks.check(imap_tagged_ok(tagged) and not any(b"EXPUNGE" in u or b"REMOVEFROM" in u for u in untagged),
                     "during FETCH (sequence numbers) no EXPUNGE and no REMOVEFROM (RFC 3501 7.4.1)", untagged)
        tagged, untagged = a.command("NOOP")
        rm = [i for i, u in enumerate(untagged) if u == b'* ESEARCH (TAG "ctx1") REMOVEFROM (0 2)']
        ex = [i for i, u in enumerate(untagged) if u == b"* 2 EXPUNGE"]
        checks.check(len(rm) == 1 and len(ex) == 1 and rm[0] < ex[0],
                     "at NOOP: REMOVEFROM (0 2) comes before * 2 EXPUNGE (RFC 5267 4.3.4)", untagged)
        tagged, _ = append(b, 1)
        tagged, untagged = a.command("NOOP")
        exi = [i for i, u in enumerate(untagged) if re.match(rb"^\* \d+ EXISTS$", u)]
        add = [i for i, u in enumerate(untagged) if u.startswith(b'* ESEARCH (TAG "ctx1") ADDTO (0 ')]
        checks.check(len(exi) == 1 and len(add) == 1 and exi[0] < add[0]
                     and untagged[add[0]].endswith(b" " + untagged[exi[0]].split()[1] + b")"),
                     "an appended message: ADDTO (0 n) after * n EXISTS (RFC 5267 4.3.3)", untagged)
        # Updates during IDLE.
        tagged, _ = a.command("SEARCH RETURN (UPDATE) UNSEEN", tag="ctx2")
        a.send(b"i1 IDLE\r\n")
        cont = a.response()
        b.command("STORE 1 +FLAGS (\\Seen)")
        got, deadline = [], time.monotonic() + 10
        while time.monotonic() < deadline and not any(b"ctx2" in g for g in got):
            got.append(a.response())
        a.send(b"DONE\r\n")
        tagged, rest = a.read_until_tagged("i1")
        checks.check(cont.startswith(b"+") and b'* ESEARCH (TAG "ctx2") REMOVEFROM (0 1)' in got + rest,
                     "during IDLE: another session's STORE \\Seen gives REMOVEFROM (0 1) at once", got + rest)
    finally:
        a.close()
        b.close()


def test_model(checks, d):
    a, b = session(d), session(d)
    rng = random.Random(5267)
    model = Model()
    try:
        for i in range(6):
            append(b, rng.randint(1, 6), "\\Seen" if i % 3 == 0 else "")
        tagged, untagged = a.command("NOOP")
        model.apply(untagged)
        tagged, untagged = a.command("SEARCH RETURN (ALL UPDATE) UNSEEN", tag="m1")
        model.ctx["m1"] = (False, ids_of(untagged))
        tagged, untagged = a.command("UID SEARCH RETURN (ALL UPDATE) FLAGGED", tag="m2")
        model.ctx["m2"] = (True, ids_of(untagged))
        tagged, untagged = a.command("UID SORT RETURN (ALL UPDATE) (REVERSE SIZE) UTF-8 UNSEEN", tag="m3")
        model.ctx["m3"] = (True, ids_of(untagged))
        # Two that read the files on the workers: a sort by a header field, a text search.
        tagged, untagged = a.command("UID SORT RETURN (ALL UPDATE) (SUBJECT) UTF-8 FLAGGED", tag="m4")
        model.ctx["m4"] = (True, ids_of(untagged))
        tagged, untagged = a.command('SEARCH RETURN (ALL UPDATE) UNSEEN SUBJECT "ctx 3"', tag="m5")
        model.ctx["m5"] = (False, ids_of(untagged))
        checks.check(all(v[1] is not None for v in model.ctx.values()),
                     "five contexts kept: SEARCH UNSEEN, UID SEARCH FLAGGED, UID SORT (REVERSE SIZE) UNSEEN, "
                     "UID SORT (SUBJECT) FLAGGED, SEARCH UNSEEN SUBJECT", model.ctx)
        mismatches = []
        for r in range(ROUNDS):
            _, lines = b.command("SEARCH ALL")
            n = len(lines[0].split()) - 2 if lines else 0
            op = rng.choice(["flag", "flag", "flag", "append", "expunge"])
            if op == "append" or n < 3:
                append(b, rng.randint(1, 6), rng.choice(["", "\\Seen", "\\Flagged"]))
            elif op == "flag":
                seqs = ",".join(str(rng.randint(1, n)) for _ in range(rng.randint(1, 3)))
                flag = rng.choice(["\\Seen", "\\Flagged"])
                b.command(f"STORE {seqs} {rng.choice('+-')}FLAGS ({flag})")
            else:
                b.command(f"STORE {rng.randint(1, n)} +FLAGS.SILENT (\\Deleted)")
                b.command("EXPUNGE")
            # Sometimes session 1 runs a FETCH first (updates about flags may come, expunges wait).
            cmd = "FETCH 1:* (UID)" if r % 4 == 1 and model.exists > 0 else "NOOP"
            tagged, untagged = a.command(cmd)
            model.apply(untagged)
            if cmd != "NOOP":
                continue
            for tag, query in (("m1", "SEARCH RETURN (ALL) UNSEEN"), ("m2", "UID SEARCH RETURN (ALL) FLAGGED"),
                               ("m3", "UID SORT RETURN (ALL) (REVERSE SIZE) UTF-8 UNSEEN"),
                               ("m4", "UID SORT RETURN (ALL) (SUBJECT) UTF-8 FLAGGED"),
                               ("m5", 'SEARCH RETURN (ALL) UNSEEN SUBJECT "ctx 3"')):
                _, fresh = a.command(query)
                model.apply(fresh)
                want = ids_of(fresh)
                # m4 and m5 are updated once the workers have read the files: allow them time.
                deadline = time.monotonic() + (10 if tag in ("m4", "m5") else 0)
                while model.ctx[tag][1] != want and time.monotonic() < deadline:
                    time.sleep(0.05)
                    _, more = a.command("NOOP")
                    model.apply(more)
                if model.ctx[tag][1] != want:
                    mismatches.append(f"round {r} {tag}: model {model.ctx[tag][1]} server {want}")
        checks.check(not mismatches and not model.problems and model.updates >= ROUNDS // 2,
                     f"{ROUNDS} random rounds ({model.updates} updates): every context, updated by "
                     "ADDTO/REMOVEFROM/EXPUNGE in order, equals a fresh search",
                     (mismatches + model.problems)[:10])
        tagged, _ = a.command('CANCELUPDATE "m1" "m2" "m3" "m4" "m5"')
        checks.check(imap_tagged_ok(tagged), "CANCELUPDATE of the five", tagged)
    finally:
        a.close()
        b.close()


def test_text_reads(checks, d):
    """A text context reads new messages on the workers: the updates come once read, and a context
    cancelled, or a session closed, while its files are being read leaves nothing behind."""
    a, b = session(d), session(d)
    try:
        tagged, _ = a.command("UID SEARCH RETURN (UPDATE) SUBJECT needle", tag="tx1")
        checks.check(imap_tagged_ok(tagged), "UID SEARCH RETURN (UPDATE) SUBJECT needle keeps a context", tagged)
        want = []
        for i in range(40):
            subject = "needle" if i % 3 == 0 else "hay"
            body = f"Subject: {subject} {i}\r\n\r\nbody {i}\r\n".encode()
            tagged, untagged = b.command(f"APPEND INBOX {{{len(body)}+}}\r\n".encode() + body)
            m = re.search(r"APPENDUID \d+ (\d+)", tagged)
            if m and subject == "needle":
                want.append(int(m.group(1)))
        got, deadline = [], time.monotonic() + 20
        while time.monotonic() < deadline and sorted(got) != want:
            _, untagged = a.command("NOOP")
            for u in untagged:
                up = parse_update(u)
                if up and up[0] == "tx1":
                    for kind, pairs in up[1]:
                        for _, ids in pairs:
                            got.extend(ids if kind == "ADDTO" else [])
            time.sleep(0.1)
        checks.check(sorted(got) == want,
                     f"40 appended messages (two batches of files): ADDTO names exactly the {len(want)} needles",
                     (got, want))
        # Cancelled while reading: more mail, then NOOP and CANCELUPDATE in one write.
        for i in range(40):
            body = f"Subject: needle late {i}\r\n\r\nx\r\n".encode()
            b.command(f"APPEND INBOX {{{len(body)}+}}\r\n".encode() + body)
        a.send(b'n1 NOOP\r\nc1 CANCELUPDATE "tx1"\r\n')
        tagged, untagged = a.read_until_tagged("c1")
        checks.check(imap_tagged_ok(tagged), "CANCELUPDATE while the context's files are read: OK", tagged)
        tagged, untagged = a.command("NOOP")
        time.sleep(0.5)
        tagged, untagged = a.command("NOOP")
        checks.check(imap_tagged_ok(tagged) and not any(b"tx1" in u for u in untagged),
                     "... and no update for it afterwards", untagged)
        # Closed while reading.
        c = session(d)
        c.command("SEARCH RETURN (UPDATE) BODY late", tag="tx2")
        for i in range(40):
            body = f"Subject: gone {i}\r\n\r\nlate\r\n".encode()
            b.command(f"APPEND INBOX {{{len(body)}+}}\r\n".encode() + body)
        c.send(b"n2 NOOP\r\n")
        c.close()
        time.sleep(1)
        e = session(d)
        tagged, _ = e.command("NOOP")
        checks.check(imap_tagged_ok(tagged) and d.proc.poll() is None,
                     "a session closed while its context's files are read: ternd serves on", tagged)
        e.close()
    finally:
        a.close()
        b.close()


def run(checks):
    with Daemon("imap-context", imap=True) as d:
        if not start_daemon(checks, d):
            return
        test_order(checks, d)
        test_model(checks, d)
        test_text_reads(checks, d)


if __name__ == "__main__":
    harness.main_guard(run)
