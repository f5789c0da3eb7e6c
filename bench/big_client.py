#!/usr/bin/env python3
"""bench/big_client.py: one timed pass of the big-mailbox IMAP commands against a server (ternd or Dovecot).

usage: big_client.py --port P --user U --password W --messages N [--subject-hits S] [--body-hits B]
                     [--rss-pid PID] [--rss-sessions K] [--drop-caches]

Prints one JSON object: seconds for LOGIN+SELECT (connect, greeting, LOGIN, SELECT INBOX), STATUS INBOX
(from a second session, logged in, nothing selected), FETCH 1:* (FLAGS), FETCH 1:* (UID RFC822.SIZE
ENVELOPE), UID SEARCH SUBJECT quarterly, SEARCH BODY xylophone, UID FETCH of the last message's BODY.PEEK[];
then the worst and median NOOP round trip of the second session while the first runs another SEARCH BODY;
then, with --rss-pid, the growth of the anonymous resident memory (RssAnon summed over PID and its
descendants: ternd itself, or Dovecot's master with its imap processes) when K more sessions (default 5)
each LOGIN and SELECT INBOX, per session and per message. That growth means something only in a process
that has not served heavier work before (a long-lived one reuses the heap it freed): --rss-only measures
just that, after one warm-up session, for a freshly started server. Each answer is checked (EXISTS N, N FETCH lines,
the search hit counts the generator printed, the body's length equal to RFC822.SIZE); a wrong answer is
reported in "errors" and makes the exit status 1.

With --drop-caches (root only) the page cache is dropped (echo 3 > /proc/sys/vm/drop_caches) before the
LOGIN+SELECT and again before the SEARCH BODY under which the NOOPs are timed; "caches" in the output
says whether that worked.

Why Python: the figures are milliseconds to seconds, and the client does per response only a recv() into
a list and a look at the tail for the tagged line (no per-line parsing), so its cost is a few percent of
the smallest figure at 10,000 messages (FETCH FLAGS: ~1 MB of response); the NOOP probe is a 20-byte
round trip that Python times to well under 0.1 ms. Standard library only.
"""

import argparse
import json
import os
import re
import socket
import statistics
import sys
import threading
import time

CHUNK = 1 << 20


class Session:
    def __init__(self, port, host="127.0.0.1", timeout=600):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.n = 0
        self.tail = b""
        greeting = self.sock.recv(4096)
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting {greeting!r}")

    def command(self, text):
        """Sends a command, reads to its tagged answer; returns (seconds, response bytes, status)."""
        self.n += 1
        tag = b"b%d" % self.n
        start = time.perf_counter()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        return self.read_tagged(tag, start)

    def read_tagged(self, tag, start):
        chunks = []
        marker = b"\r\n" + tag + b" "
        tail = b"\r\n"
        while True:
            data = self.sock.recv(CHUNK)
            if not data:
                raise RuntimeError("connection closed")
            chunks.append(data)
            # The tagged line is the last thing the server sends: look only at the end.
            if data.endswith(b"\r\n"):
                window = (tail + data)[-(len(data) + len(tail)):]
                last = window.rfind(b"\r\n", 0, len(window) - 2)
                if last >= 0 and window.startswith(marker, last):
                    elapsed = time.perf_counter() - start
                    resp = b"".join(chunks)
                    full = b"\r\n" + resp
                    status = full[full.rfind(marker) + len(marker):].split(b" ", 1)[0].decode()
                    return elapsed, resp, status
            tail = (tail + data)[-256:]

    def close(self):
        try:
            self.sock.sendall(b"z LOGOUT\r\n")
        except OSError:
            pass
        self.sock.close()


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def rss_anon_tree(pid):
    """RssAnon (KiB) of pid and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def login_select(a, errors):
    start = time.perf_counter()
    s = Session(a.port)
    _, _, st = s.command(f"LOGIN {quote(a.user)} {quote(a.password)}")
    if st != "OK":
        raise RuntimeError(f"LOGIN {st}")
    _, resp, st = s.command("SELECT INBOX")
    elapsed = time.perf_counter() - start
    m = re.search(rb"\* (\d+) EXISTS", resp)
    if st != "OK" or not m or int(m.group(1)) != a.messages:
        errors.append(f"SELECT: {st}, EXISTS {m.group(1) if m else None} (want {a.messages})")
    return s, elapsed


def search_count(resp):
    for line in resp.split(b"\r\n"):
        if line.startswith(b"* SEARCH"):
            return len(line.split()) - 2
    return -1


def noop_probe(a, first, second, errors):
    """Worst and median NOOP round trip on second while first runs SEARCH BODY."""
    done = threading.Event()
    result = {}

    def searcher():
        first.n += 1
        tag = b"b%d" % first.n
        start = time.perf_counter()
        first.sock.sendall(tag + b" SEARCH BODY xylophone\r\n")
        try:
            result["t"], result["resp"], result["st"] = first.read_tagged(tag, start)
        except Exception as exc:  # noqa: BLE001
            result["error"] = str(exc)
        done.set()

    t = threading.Thread(target=searcher)
    t.start()
    times = []
    while not done.is_set():
        elapsed, _, st = second.command("NOOP")
        if st != "OK":
            errors.append(f"NOOP during SEARCH: {st}")
            break
        times.append(elapsed)
        time.sleep(0.001)
    t.join()
    if "error" in result:
        errors.append("SEARCH BODY under NOOPs: " + result["error"])
    elif a.body_hits >= 0 and search_count(result["resp"]) != a.body_hits:
        errors.append(f"SEARCH BODY under NOOPs: {search_count(result['resp'])} hits, want {a.body_hits}")
    return {"noop_max": max(times) if times else None,
            "noop_median": statistics.median(times) if times else None,
            "noops": len(times), "search_body_under_noop": result.get("t")}


def rss_sessions(a, errors, out):
    """Opens --rss-sessions more sessions, each LOGIN + SELECT INBOX, and reports the RssAnon growth."""
    before = rss_anon_tree(a.rss_pid)
    extra = []
    for _ in range(a.rss_sessions):
        s, _ = login_select(a, errors)
        extra.append(s)
    time.sleep(0.5)
    after = rss_anon_tree(a.rss_pid)
    out["rss_before_kib"], out["rss_after_kib"] = before, after
    out["rss_per_session_kib"] = (after - before) / a.rss_sessions
    out["rss_per_session_per_message_bytes"] = (after - before) * 1024 / a.rss_sessions / a.messages
    for s in extra:
        s.close()


def rss_only(a, errors, out):
    """The memory figure alone, for a server process that has served nothing else yet (a long-lived
    process reuses the heap its earlier work freed, so its growth would say nothing): one session
    LOGIN + SELECT first (the server's one-off costs: caches, the account), then the others."""
    first, out["login_select"] = login_select(a, errors)
    rss_sessions(a, errors, out)
    first.close()
    out["errors"] = errors
    print(json.dumps(out))
    return 1 if errors else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--subject-hits", type=int, default=-1)
    ap.add_argument("--body-hits", type=int, default=-1)
    ap.add_argument("--rss-pid", type=int)
    ap.add_argument("--rss-sessions", type=int, default=5)
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--rss-only", action="store_true")
    a = ap.parse_args()
    errors, out = [], {}
    if a.rss_only:
        return rss_only(a, errors, out)

    out["caches"] = "dropped" if a.drop_caches and drop_caches() else (
        "not dropped (not asked)" if not a.drop_caches else "not dropped (cannot write drop_caches)")
    first, out["login_select"] = login_select(a, errors)
    second = Session(a.port)
    second.command(f"LOGIN {quote(a.user)} {quote(a.password)}")
    out["status"], resp, st = second.command("STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
    if st != "OK" or b"MESSAGES %d" % a.messages not in resp:
        errors.append(f"STATUS: {st} {resp[:200]!r}")

    out["fetch_flags"], resp, st = first.command("FETCH 1:* (FLAGS)")
    if st != "OK" or resp.count(b" FETCH (") != a.messages:
        errors.append(f"FETCH FLAGS: {st}, {resp.count(b' FETCH (')} lines")
    out["fetch_envelope"], resp, st = first.command("FETCH 1:* (UID RFC822.SIZE ENVELOPE)")
    if st != "OK" or resp.count(b" FETCH (") < a.messages:
        errors.append(f"FETCH ENVELOPE: {st}, {resp.count(b' FETCH (')} lines")
    out["search_subject"], resp, st = first.command("UID SEARCH SUBJECT quarterly")
    if st != "OK" or (a.subject_hits >= 0 and search_count(resp) != a.subject_hits):
        errors.append(f"UID SEARCH SUBJECT: {st}, {search_count(resp)} hits, want {a.subject_hits}")
    out["search_body"], resp, st = first.command("SEARCH BODY xylophone")
    if st != "OK" or (a.body_hits >= 0 and search_count(resp) != a.body_hits):
        errors.append(f"SEARCH BODY: {st}, {search_count(resp)} hits, want {a.body_hits}")
    _, resp, st = first.command(f"FETCH {a.messages} (UID RFC822.SIZE)")
    m = re.search(rb"UID (\d+)", resp)
    size = re.search(rb"RFC822\.SIZE (\d+)", resp)
    out["fetch_last_body"], resp, st = first.command(f"UID FETCH {m.group(1).decode() if m else '*'} BODY.PEEK[]")
    lit = re.search(rb"BODY\[\] \{(\d+)\}", resp)
    if st != "OK" or not lit or not size or lit.group(1) != size.group(1):
        errors.append(f"FETCH last body: {st}, literal {lit.group(1) if lit else None}, "
                      f"size {size.group(1) if size else None}")

    if a.drop_caches:
        drop_caches()
    out.update(noop_probe(a, first, second, errors))

    if a.rss_pid:
        rss_sessions(a, errors, out)
    first.close()
    second.close()
    out["errors"] = errors
    print(json.dumps(out))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
