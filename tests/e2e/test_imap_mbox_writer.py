#!/usr/bin/env python3
"""End-to-end: IMAP mailbox management is a job of the store's one writer (issue 11, "One writer").

CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE are committed by the committer thread, not on
the event loop; a session waits for its answer while every other session keeps being served.
Against a real ternd on loopback, with Python's sqlite3 as the other process:

- a SQLite write lock held by another process (BEGIN IMMEDIATE, 3 s): CREATE, then a pipelined
  LIST, SUBSCRIBE and RENAME, wait for it while another session's NOOPs are answered at once (the
  loop is not frozen); once the lock is released all of them complete OK, in order (the pipelined
  commands ran after the CREATE), instead of the old NO [INUSE]; a client that disconnects while
  its CREATE waits leaves ternd running and the mailbox created;
- DELETE of a mailbox of 2,048 messages (hard-linked copies, a file each) under the same kind of
  lock: another session's NOOP latency stays small throughout, the DELETE completes OK once the
  lock is gone, its rows and every one of its files are gone, and LIST no longer shows it;
- a crash between a DELETE's commit and its unlinks (the rows deleted by hand while ternd is
  stopped, the files left): the start-up sweep removes the orphan files.
"""

import sqlite3
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (ALICE, BOB, PASSWORDS, Daemon, RawIMAP, imap_tagged_ok,  # noqa: E402
                     main_guard, start_daemon)

HOLD = 3.0  # seconds the other process holds the write lock
MSG = (b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: big\r\n"
       b"Message-ID: <big-1@remote.test>\r\n\r\nOne of many.\r\n")


def login(d, user=ALICE):
    r = RawIMAP(d.imap_port)
    tagged, _ = r.login(user, PASSWORDS[user])
    assert imap_tagged_ok(tagged), tagged
    return r


class WriteLock:
    """Another process's write lock on ternd's database (python's sqlite3, BEGIN IMMEDIATE)."""

    def __init__(self, d):
        self.db = sqlite3.connect(str(d.data_dir / "tern.db"), isolation_level=None, timeout=10)

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        self.at = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.db.execute("ROLLBACK")
        self.db.close()
        return False


class NoopProbe:
    """Another session sending NOOP in a loop; records each round trip."""

    def __init__(self, d):
        self.r = login(d, BOB)
        self.times = []
        self.failed = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            tagged, _ = self.r.command("NOOP")
            if not imap_tagged_ok(tagged):
                self.failed = tagged
                return
            self.times.append(time.monotonic() - t)
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.r.close()
        return False

    def worst(self):
        return max(self.times) if self.times else float("inf")


def paths_of(d, mailbox):
    db = sqlite3.connect(f"file:{d.data_dir / 'tern.db'}?mode=ro", uri=True, timeout=10)
    try:
        return [row[0] for row in db.execute(
            "SELECT m.path FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
            "JOIN accounts a ON a.id = b.account_id WHERE b.name = ? AND a.address = ?",
            (mailbox, ALICE))]
    finally:
        db.close()


def check_lock(checks, d):
    a = login(d)
    gone = login(d)
    try:
        with NoopProbe(d) as probe, WriteLock(d) as lock:
            # A client that leaves while its CREATE waits: the job still completes.
            gone.send(b"g1 CREATE Locked/Orphan\r\n")
            time.sleep(0.2)
            gone.close()
            # Pipelined: the LIST must run after the CREATE has completed.
            a.send(b'c1 CREATE Locked/Box\r\nc2 LIST "" Locked/Box\r\n'
                   b"c3 SUBSCRIBE Locked/Box\r\nc4 RENAME Locked/Box Locked/Moved\r\n")
            time.sleep(HOLD)
            waited = time.monotonic() - lock.at
            early = a.pending_data(wait=0.1)
            if early and early is not a.buf:
                a.buf += early  # read on as usual
        checks.check(not early, f"CREATE waits for the write lock ({waited:.1f}s): no early answer (old code: NO [INUSE] after 100 ms)",
                     early)
        checks.check(probe.failed is None and len(probe.times) >= 10 and probe.worst() < 1.0,
                     f"another session's {len(probe.times)} NOOPs meanwhile: worst {probe.worst():.3f}s (< 1 s, loop not frozen)",
                     probe.failed)
        tagged, _ = a.read_until_tagged("c1")
        checks.check(imap_tagged_ok(tagged), "after the lock is released CREATE completes OK", tagged)
        tagged, untagged = a.read_until_tagged("c2")
        checks.check(imap_tagged_ok(tagged) and any(b"Locked/Box" in u for u in untagged),
                     "the pipelined LIST ran after the CREATE and sees Locked/Box", untagged)
        tagged, _ = a.read_until_tagged("c3")
        checks.check(imap_tagged_ok(tagged), "the pipelined SUBSCRIBE completes OK", tagged)
        tagged, _ = a.read_until_tagged("c4")
        checks.check(imap_tagged_ok(tagged), "the pipelined RENAME completes OK", tagged)
        tagged, untagged = a.command('LSUB "" "Locked/*"')
        checks.check(imap_tagged_ok(tagged) and any(b"Locked/Moved" in u for u in untagged)
                     and not any(b"Locked/Box" in u for u in untagged),
                     "LSUB: the subscription followed the rename", untagged)
        tagged, untagged = a.command('LIST "" Locked/Orphan')
        checks.check(d.alive() and imap_tagged_ok(tagged) and len(untagged) == 1,
                     "the CREATE of a client that left while it waited completed too", untagged)
    finally:
        a.close()


def fill(checks, d, a, mailbox, count):
    """mailbox gets count messages: one APPEND, then COPY 1:* into itself until there are enough."""
    a.send(f"f1 APPEND {mailbox} {{{len(MSG)}}}\r\n".encode())
    a.response()
    a.send(MSG + b"\r\n")
    tagged, _ = a.read_until_tagged("f1")
    checks.check(imap_tagged_ok(tagged), f"APPEND to {mailbox}", tagged)
    tagged, _ = a.command(f"SELECT {mailbox}")
    n = 1
    while n < count:
        tagged, _ = a.command(f"COPY 1:{min(n, count - n)} {mailbox}")
        if not imap_tagged_ok(tagged):
            break
        n += min(n, count - n)
    a.command("UNSELECT")
    return n


def check_delete(checks, d):
    a = login(d)
    try:
        a.command("CREATE Big")
        n = fill(checks, d, a, "Big", 2048)
        paths = paths_of(d, "Big")
        present = [p for p in paths if (d.data_dir / p).exists()]
        checks.check(n == 2048 and len(paths) == 2048 and len(present) == 2048,
                     f"Big holds {len(paths)} messages, each with its own file ({len(present)} on disk)")
        with NoopProbe(d) as probe:
            with WriteLock(d):
                a.send(b"d1 DELETE Big\r\n")
                time.sleep(HOLD)
                early = a.pending_data(wait=0.1)
                if early and early is not a.buf:
                    a.buf += early
            t = time.monotonic()
            tagged, _ = a.read_until_tagged("d1")
            took = time.monotonic() - t
            time.sleep(0.3)
        checks.check(not early, "DELETE waits for the write lock rather than answering NO [INUSE]", early)
        checks.check(imap_tagged_ok(tagged),
                     f"DELETE of 2,048 messages completes OK {took:.2f}s after the lock is released", tagged)
        checks.check(probe.failed is None and len(probe.times) >= 10 and probe.worst() < 1.0,
                     f"another session's {len(probe.times)} NOOPs during the DELETE: worst {probe.worst():.3f}s (< 1 s)",
                     probe.failed)
        left = [p for p in paths if (d.data_dir / p).exists()]
        checks.check(not left and not paths_of(d, "Big"),
                     f"after the DELETE no row and none of the {len(paths)} files is left", left[:5])
        tagged, untagged = a.command('LIST "" Big')
        checks.check(imap_tagged_ok(tagged) and not untagged, "LIST no longer shows Big", untagged)
    finally:
        a.close()


def check_sweep(checks, d):
    """A crash between a DELETE's commit and its unlinks leaves files without rows: the sweep."""
    a = login(d)
    try:
        a.command("CREATE Crash")
        fill(checks, d, a, "Crash", 64)
    finally:
        a.close()
    paths = paths_of(d, "Crash")
    d.stop()
    db = sqlite3.connect(str(d.data_dir / "tern.db"), isolation_level=None, timeout=10)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("DELETE FROM mailboxes WHERE name = 'Crash'")
    db.close()
    present = [p for p in paths if (d.data_dir / p).exists()]
    checks.check(len(paths) == 64 and len(present) == 64,
                 f"committed DELETE without its unlinks: {len(present)} orphan files of 64")
    if not start_daemon(checks, d, "ternd restarts over the orphans"):
        return
    left = [p for p in paths if (d.data_dir / p).exists()]
    checks.check(not left, "the start-up sweep removed every orphan file of the deleted mailbox", left[:5])


def run(checks):
    with Daemon("imap-mbox-writer", imap=True) as d:
        if not start_daemon(checks, d):
            return
        check_lock(checks, d)
        check_delete(checks, d)
        check_sweep(checks, d)


if __name__ == "__main__":
    main_guard(run)
