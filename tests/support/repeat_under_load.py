"""Run a test file several times in a row while other processes keep every core busy; count passes and failures.

A suite that passes only on an idle machine fails by chance in CI. This is how the real-Airflow tests are
checked for that (``make stress-airflow``):

    .venv/bin/python tests/support/repeat_under_load.py --runs 10 tests/test_airflow_standalone.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def burn() -> None:
    """One core at 100% until killed."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--burners", type=int, default=os.cpu_count(), help="busy processes (default: one per core)")
    parser.add_argument("--log-dir", type=Path, default=REPO / "data" / "stress")
    parser.add_argument("pytest_args", nargs="+", help="test files and pytest options")
    args = parser.parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.burners)]
    for process in burners:
        process.start()
    print(f"{args.burners} busy processes started (pids {', '.join(str(p.pid) for p in burners)}) on "
          f"{os.cpu_count()} cores", flush=True)
    outcomes = []
    try:
        for run in range(1, args.runs + 1):
            log = args.log_dir / f"run-{run:02d}.log"
            started = time.monotonic()
            with open(log, "w") as out:
                code = subprocess.call([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                                        *args.pytest_args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            outcomes.append(code == 0)
            print(f"run {run}/{args.runs}: {'passed' if code == 0 else f'FAILED (exit {code})'} in "
                  f"{time.monotonic() - started:.0f} s, log {log}", flush=True)
    finally:
        for process in burners:
            process.kill()
    print(f"under load: {sum(outcomes)} of {len(outcomes)} runs passed, {outcomes.count(False)} failed")
    return 0 if all(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
