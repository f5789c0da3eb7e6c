#!/usr/bin/env python3
"""Smoke test of the big-mailbox bench's tools (bench/gen_mail.py, bench/big_client.py), not the bench.

`make bench` (stage big) relies on them for hours of measurements; this keeps them from rotting in
`make check` at a tiny size. What is checked:
- gen_mail.py is deterministic (the same seed writes the same files twice) and prints its hit counts;
- `ternd mail import` of its Maildir into a running ternd (Daemon(imap=True));
- big_client.py against that ternd: exit 0, no errors, every figure present and positive, RSS figures
  with --rss-pid, and --rss-only (the memory figure alone);
- big_client.py reports a wrong answer: told the wrong SUBJECT hit count, it exits 1 and says why.
"""

import filecmp
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import ALICE, REPO_ROOT, Daemon, run_ternd, start_daemon  # noqa: E402

COUNT = 400
GEN = REPO_ROOT / "bench" / "gen_mail.py"
CLIENT = REPO_ROOT / "bench" / "big_client.py"
FIGURES = ["login_select", "status", "fetch_flags", "fetch_envelope", "search_subject", "search_body",
           "fetch_last_body", "noop_max", "noop_median", "search_body_under_noop"]


def client(d, hits, extra=()):
    return subprocess.run([sys.executable, str(CLIENT), "--port", str(d.imap_port), "--user", ALICE,
                           "--password", d.passwords[ALICE], "--messages", str(COUNT),
                           "--subject-hits", str(hits["subject_quarterly"]),
                           "--body-hits", str(hits["body_xylophone"]), *extra],
                          capture_output=True, timeout=300)


def run(checks):
    with Daemon("bench-big", imap=True) as d, tempfile.TemporaryDirectory(prefix="tern-bench-big-") as t:
        tmp = Path(t)
        outs = []
        for name in ("a", "b"):
            p = subprocess.run([sys.executable, str(GEN), "--count", str(COUNT), "--seed", "5",
                                "--out", str(tmp / name)], capture_output=True, timeout=300)
            outs.append(p)
        hits = json.loads(outs[0].stdout or b"{}")
        same = filecmp.dircmp(tmp / "a" / "cur", tmp / "b" / "cur")
        checks.check(all(p.returncode == 0 for p in outs) and hits.get("messages") == COUNT and
                     len(list((tmp / "a" / "cur").iterdir())) == COUNT and not same.left_only and
                     not same.right_only and not same.diff_files and
                     outs[0].stdout == outs[1].stdout,
                     f"gen_mail.py wrote {COUNT} messages, the same bytes twice for one seed", hits)
        if not start_daemon(checks, d):
            return
        p = run_ternd(["mail", "import", ALICE, tmp / "a", "--json", "--data-dir", d.data_dir], check=False)
        checks.check(p.returncode == 0 and json.loads(p.stdout or b"{}").get("imported") == COUNT,
                     f"ternd mail import of the generated Maildir: {COUNT} messages", p.stderr)
        p = client(d, hits, ["--rss-pid", str(d.pid), "--rss-sessions", "2"])
        figures = json.loads(p.stdout or b"{}")
        checks.check(p.returncode == 0 and figures.get("errors") == [],
                     "big_client.py against ternd: exit 0, every answer right", p.stdout + p.stderr)
        checks.check(all(isinstance(figures.get(k), float) and figures[k] > 0 for k in FIGURES) and
                     figures.get("noops", 0) >= 1 and "rss_per_session_per_message_bytes" in figures,
                     "every figure present and positive, RSS per session per message reported",
                     figures)
        p = client(d, hits, ["--rss-pid", str(d.pid), "--rss-sessions", "3", "--rss-only"])
        figures = json.loads(p.stdout or b"{}")
        checks.check(p.returncode == 0 and figures.get("errors") == [] and
                     figures.get("rss_after_kib", 0) >= figures.get("rss_before_kib", 1) > 0 and
                     "rss_per_session_per_message_bytes" in figures,
                     "big_client.py --rss-only: RssAnon before and after 3 more selected sessions", figures)
        wrong = dict(hits, subject_quarterly=hits["subject_quarterly"] + 1)
        p = client(d, wrong)
        figures = json.loads(p.stdout or b"{}")
        checks.check(p.returncode == 1 and any("SUBJECT" in e for e in figures.get("errors", [])),
                     "big_client.py reports a wrong SUBJECT hit count (exit 1)", p.stdout + p.stderr)


if __name__ == "__main__":
    harness.main_guard(run)
