#!/usr/bin/env python3
"""End-to-end: IMAP CATENATE (RFC 4469) with large URL parts, against a real ternd on loopback.

What is checked (raw sockets, byte-exact):
- a message built from a TEXT literal, a 3 MB message named by URL and a part of it named by
  URL;SECTION is stored byte for byte in that order, with APPENDUID;
- the parts are copied off the loop: a second session's NOOP is answered while a CATENATE of
  4 x 3 MB is assembled;
- URL parts past the message size limit give NO [TOOBIG] and nothing is appended;
- a URL naming another user's message (imap://bob%40...@host/INBOX/;UID=1) is NO [BADURL]; the
  same form with the user's own name works.
"""

import random
import re
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ALICE, BOB, Daemon, RawIMAP, imap_tagged_ok, main_guard, start_daemon  # noqa: E402


def login(d, user=ALICE):
    r = RawIMAP(d.imap_port, timeout=120)
    tagged, _ = r.login(user, d.passwords[user])
    assert imap_tagged_ok(tagged), tagged
    return r


def status(r, mailbox="Drafts"):
    _, untagged = r.command(f"STATUS {mailbox} (MESSAGES)")
    m = re.search(rb"MESSAGES (\d+)", b"".join(untagged))
    return int(m.group(1)) if m else None


def run(c):
    rng = random.Random(4469)
    line = lambda i: ("%07d " % i + "".join(rng.choice("abcdefghij ") for _ in range(70)) + "\r\n").encode()
    body = b"".join(line(i) for i in range(3 * 1024 * 1024 // 80))
    part2 = b"second part\r\n"
    source = (b"From: a@example.test\r\nSubject: big source\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
              + body + b"\r\n--B\r\nContent-Type: text/plain\r\n\r\n" + part2 + b"\r\n--B--\r\n")
    with Daemon("catenate", imap=True, options=["smtp.max_message_size=10000000"]) as d:
        if not start_daemon(c, d):
            return
        r = login(d)
        tagged, _ = r.command(b"APPEND INBOX {%d+}\r\n" % len(source) + source)
        uid = re.search(r"APPENDUID (\d+) (\d+)", tagged)
        c.check(uid is not None, f"the {len(source)}-byte source message is appended", tagged)
        if uid is None:
            return
        uv, uid = uid.group(1), uid.group(2)
        head = b"From: me@example.test\r\nSubject: forward\r\n\r\n"
        tag = r.next_tag()
        r.send(tag.encode() + b" APPEND Drafts CATENATE (TEXT {%d+}\r\n" % len(head) + head +
               f' URL "/INBOX;UIDVALIDITY={uv}/;UID={uid}" URL "/INBOX/;UID={uid}/;SECTION=2")\r\n'.encode())
        tagged, _ = r.read_until_tagged(tag)
        m = re.search(r"APPENDUID \d+ (\d+)", tagged)
        c.check(m is not None, "CATENATE of TEXT + a 3 MB URL + a URL;SECTION: OK [APPENDUID]", tagged)
        if m:
            r.command("EXAMINE Drafts")
            _, untagged = r.command(f"UID FETCH {m.group(1)} BODY.PEEK[]")
            got = b"".join(untagged)
            want = head + source + part2
            c.check(b"{%d}\r\n" % len(want) in got and want in got,
                    "the parts are stored byte for byte, in order", f"{len(got)} vs {len(want)}")
            r.command("UNSELECT")

        before = status(r)
        slow = login(d)
        tag = "big1"
        url = f' URL "/INBOX/;UID={uid}"'.encode()
        slow.send(tag.encode() + b" APPEND Drafts CATENATE (" + url.strip() + url + url + b")\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        tagged, _ = r.command("NOOP")
        took = time.monotonic() - t0
        c.check(imap_tagged_ok(tagged) and took < 2.0,
                f"another session's NOOP is answered while 9 MB of URL parts are copied ({took:.2f} s)", tagged)
        tagged, _ = slow.read_until_tagged(tag)
        c.check(imap_tagged_ok(tagged), "the 9 MB CATENATE completes", tagged)
        tag = "big2"
        slow.send(tag.encode() + b" APPEND Drafts CATENATE (" + url.strip() + url + url + url + b")\r\n")
        tagged, _ = slow.read_until_tagged(tag)
        c.check("NO [TOOBIG]" in tagged, "URL parts over the 10 MB limit: NO [TOOBIG]", tagged)
        c.check(status(r) == before + 1, "and only the message that fitted was appended")
        slow.close()

        b = login(d, BOB)
        b.command(b"APPEND INBOX {%d+}\r\n" % len(head) + head)
        b.close()
        bob_user, alice_user = BOB.replace("@", "%40"), ALICE.replace("@", "%40")
        tagged, _ = r.command(f'APPEND Drafts CATENATE (URL "imap://{bob_user}@localhost/INBOX/;UID=1")')
        c.check("NO [BADURL" in tagged, "a URL naming another user's message: NO [BADURL]", tagged)
        tagged, _ = r.command(f'APPEND Drafts CATENATE (URL "imap://{alice_user}@localhost/INBOX/;UID={uid}/;SECTION=2")')
        c.check(imap_tagged_ok(tagged), "the same absolute URL form naming the user's own message: OK", tagged)
        r.close()
        c.check(d.stop() == 0, "ternd exits 0 on SIGTERM")


if __name__ == "__main__":
    main_guard(run)
