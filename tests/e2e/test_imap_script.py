#!/usr/bin/env python3
"""End-to-end: ternd's IMAP server held to RFC 3501 and its extensions by scripted sessions (issue 5).

Every tests/e2e/imap_scripts/*.imap is run against a fresh ternd (Daemon(imap=True)) over real sockets on
loopback by the runner in imap_script.py (the script format is described there). Each S group of a script
is one check; after each script ternd must still be running and exit 0 on SIGTERM.

The scripts are written against the RFCs, not against what ternd does today; they were validated against
Dovecot 2.3 (Debian) where Dovecot follows the RFC (a `!dovecot-deviates` line marks where it does not).

  python3 tests/e2e/test_imap_script.py                    every script against ternd (what `make check` runs)
  python3 tests/e2e/test_imap_script.py select fetch       only select.imap and fetch.imap
  python3 tests/e2e/test_imap_script.py --dovecot [NAMES]  the scripts against a private Dovecot (needs root)
  python3 tests/e2e/test_imap_script.py --both [NAMES]     against both
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import imap_script  # noqa: E402


def scripts(names):
    all_scripts = sorted(imap_script.SCRIPT_DIR.glob("*.imap"))
    if not names:
        return all_scripts
    picked = []
    for n in names:
        p = imap_script.SCRIPT_DIR / (n if n.endswith(".imap") else n + ".imap")
        if not p.exists():
            raise SystemExit(f"no script {p}")
        picked.append(p)
    return picked


def main():
    args = sys.argv[1:]
    servers = ["ternd"]
    if "--dovecot" in args:
        servers = ["dovecot"]
    if "--both" in args:
        servers = ["ternd", "dovecot"]
    names = [a for a in args if not a.startswith("--")]
    paths = scripts(names)

    def run(checks):
        summary = {}
        for server in servers:
            dovecot = None
            if server == "dovecot":
                ok, why = imap_script.DovecotServer.available()
                if not ok:
                    checks.skip("the scripts against Dovecot", why, documented="dovecot-unavailable")
                    continue
                try:
                    dovecot = imap_script.DovecotServer()
                except Exception as exc:  # noqa: BLE001
                    checks.check(False, "Dovecot starts", str(exc))
                    continue
            try:
                for path in paths:
                    before = checks.failed
                    try:
                        imap_script.run_script(checks, path, server, dovecot)
                    except imap_script.ScriptError as exc:
                        checks.check(False, f"{path.stem}: the script parses", str(exc))
                    summary[(server, path.stem)] = checks.failed - before
            finally:
                if dovecot is not None:
                    dovecot.stop()
        for (server, name), failed in summary.items():
            checks.note(f"{server:8} {name:24} {'pass' if failed == 0 else f'FAIL ({failed} failed)'}")

    name = "test_imap_script" + ("" if servers == ["ternd"] else " (" + "+".join(servers) + ")")
    checks = harness.Checks(name)
    try:
        run(checks)
    except Exception:  # noqa: BLE001
        import traceback
        checks.check(False, f"{name} ran to the end", traceback.format_exc())
    sys.exit(checks.finish())


if __name__ == "__main__":
    main()
