#!/usr/bin/env python3
"""bench/gen_mail.py: a deterministic Maildir of realistic, varied messages for the big-mailbox bench.

usage: gen_mail.py --count N --out MAILDIR [--seed S] [--mbox FILE]

Writes N messages into MAILDIR/cur (the same seed always gives the same bytes): senders and recipients
from a few hundred names and domains, subjects from word lists (with replies, forwards and some RFC 2047
encoded-words), a Date: spread over ten years, CRLF line ends, sizes from a few hundred bytes to ~200 KiB
(most 1-8 KiB, a long tail), about one in five multipart/alternative or multipart/mixed with a base64
attachment, and Maildir flags (:2,S for most, some R/F/D, a few T) as a mail client leaves them. Each
file's mtime is its Date:, which Dovecot and `ternd mail import` take as the internal date.

Search targets the bench relies on, with known counts printed on stdout as JSON:
- the word "quarterly" in the Subject of about 1 message in 200 (`UID SEARCH SUBJECT quarterly`);
- the word "xylophone" in the text body of about 1 message in 500 (`SEARCH BODY xylophone`), placed at
  a random depth so a body search has to read the text.
With --mbox FILE the same messages are also written as an mboxrd file (LF line ends, >From escaped).
"""

import argparse
import base64
import email.utils
import json
import os
import random
import sys
import time

FIRST = ("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil "
         "Trent Victor Walter Yuki Zoe Amir Beatriz Chen Dmitri Elif Fatima Goran Hana Ines Jonas Kofi "
         "Lena Mateo Nora Oskar Priya Quentin Rosa Sven Tariq Ulla Vera Wen Ximena Yusuf Zora").split()
LAST = ("Smith Jones Garcia Muller Rossi Dubois Novak Tanaka Kim Silva Ivanova Nielsen Kowalski Haddad "
        "Okafor Larsen Moreau Costa Fischer Weber Ortiz Nakamura Popescu Horvat Berg").split()
DOMAINS = ("example.com example.org example.net mail.test lists.test corp.test university.test "
           "shop.test bank.test news.test").split()
WORDS = ("meeting notes project update budget review draft proposal schedule report release plan "
         "invoice contract travel lunch dinner team weekly monthly design server outage backup "
         "deadline feedback question answer photo trip family party garden book film music code "
         "patch bug fix test build deploy migration database network security password account "
         "order shipping delivery receipt payment holiday conference talk slides agenda minutes").split()
BODY_WORDS = WORDS + ("the a of and to in is that it for on with as was at by this be from or have "
                      "an are not but which they were we all one would there their will when who "
                      "more if out so up about into than them can only other new some could time "
                      "these two may then do first any my now such like our over man me even most "
                      "made after also did many before must through back years where much your way "
                      "well down should because each just those people how too little state good "
                      "very make world still own see men work long get here between both life being "
                      "under never day same another know while last might us great old year off come "
                      "since against go came right used take three").split()


def name_addr(rng):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return first, last, f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"


def subject(rng, i):
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 7))]
    if rng.random() < 0.005:
        words.insert(rng.randint(0, len(words)), "quarterly")
    text = " ".join(words).capitalize()
    r = rng.random()
    if r < 0.25:
        text = "Re: " + text
    elif r < 0.30:
        text = "Fwd: " + text
    if rng.random() < 0.05:
        # An RFC 2047 encoded-word with a non-ASCII character, as many clients send.
        text = "=?UTF-8?B?" + base64.b64encode(("Caf\u00e9 " + text).encode()).decode() + "?="
    return text + f" #{i}", "quarterly" in words


def paragraph(rng, n):
    out, line = [], []
    for _ in range(n):
        line.append(rng.choice(BODY_WORDS))
        if len(line) >= rng.randint(8, 13):
            out.append(" ".join(line))
            line = []
    if line:
        out.append(" ".join(line))
    return out


def text_body(rng, size, needle):
    lines, total = [], 0
    while total < size:
        p = paragraph(rng, rng.randint(20, 80))
        lines += p + [""]
        total += sum(len(x) + 2 for x in p) + 2
    if needle:
        k = rng.randrange(len(lines))
        lines[k] = (lines[k] + " xylophone").strip()
    return "\r\n".join(lines) + "\r\n"


def body_size(rng):
    r = rng.random()
    if r < 0.70:
        return rng.randint(300, 4000)
    if r < 0.95:
        return rng.randint(4000, 30000)
    return rng.randint(30000, 200000)


def message(rng, i, date):
    ff, fl, faddr = name_addr(rng)
    tf, tl, taddr = name_addr(rng)
    needle = rng.random() < 0.002
    subj, quarterly = subject(rng, i)
    head = [f"Return-Path: <{faddr}>",
            f"From: {ff} {fl} <{faddr}>",
            f"To: {tf} {tl} <{taddr}>"]
    if rng.random() < 0.3:
        cf, cl, caddr = name_addr(rng)
        head.append(f"Cc: {cf} {cl} <{caddr}>")
    head += [f"Subject: {subj}",
             f"Date: {email.utils.formatdate(date)}",
             f"Message-ID: <{i}.{rng.getrandbits(48):012x}@{faddr.split('@')[1]}>",
             "MIME-Version: 1.0"]
    size = body_size(rng)
    kind = rng.random()
    if kind < 0.80:
        head.append("Content-Type: text/plain; charset=utf-8")
        body = text_body(rng, size, needle)
    else:
        boundary = f"=_bench_{i}_{rng.getrandbits(32):08x}"
        text = text_body(rng, min(size, 6000), needle)
        parts = [f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}"]
        if kind < 0.90:
            head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
            html = "<html><body><p>" + text.replace("\r\n\r\n", "</p><p>") + "</p></body></html>\r\n"
            parts.append(f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}")
        else:
            head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
            blob = rng.getrandbits(8 * max(64, size)).to_bytes(max(64, size), "little")
            b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
            parts.append(f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                         f'Content-Disposition: attachment; filename="file{i}.bin"\r\n'
                         f"Content-Transfer-Encoding: base64\r\n\r\n{b64}")
        body = "".join(parts) + f"--{boundary}--\r\n"
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode(), needle, quarterly


def flags(rng):
    r = rng.random()
    f = ""
    if r < 0.03:
        f += "D"
    if rng.random() < 0.05:
        f += "F"
    if rng.random() < 0.15:
        f += "R"
    if rng.random() < 0.85:
        f += "S"
    if rng.random() < 0.01:
        f += "T"
    return "".join(sorted(f))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--mbox")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(a.out, sub), exist_ok=True)
    mbox = open(a.mbox, "wb") if a.mbox else None
    start = 1_450_000_000  # 2015-12
    step = (10 * 365 * 86400) // max(1, a.count)
    needles = subjects = total = 0
    for i in range(1, a.count + 1):
        date = start + i * step + rng.randint(0, max(1, step))
        data, needle, subj = message(rng, i, date)
        needles += needle
        subjects += subj
        total += len(data)
        name = f"{date}.M{i}P1.bench:2,{flags(rng)}"
        path = os.path.join(a.out, "cur", name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (date, date))
        if mbox:
            mbox.write(b"From bench@gen " + time.asctime(time.gmtime(date)).encode() + b"\n")
            for line in data.replace(b"\r\n", b"\n").split(b"\n")[:-1]:
                if line.lstrip(b">").startswith(b"From "):
                    line = b">" + line
                mbox.write(line + b"\n")
            mbox.write(b"\n")
    if mbox:
        mbox.close()
    json.dump({"messages": a.count, "bytes": total, "subject_quarterly": subjects,
               "body_xylophone": needles}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
