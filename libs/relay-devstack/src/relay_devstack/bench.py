"""`python -m relay_devstack.bench bench --out bench/results.json` (`make bench`).

Runs every `bench/*.py` that defines `main()`, one subprocess each, and
collects the results into one JSON file keyed by script name.

The contract for a bench script: it runs as `python bench/NAME.py` from the
repository root, starts what it needs itself (a `relay_devstack.Stack`, for
instance), and reports its figures as a JSON object either written to the
file named by `RELAY_BENCH_RESULT` or printed as the last line of stdout.
A script that exits non-zero is recorded as failed and fails `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay_devstack.console import complain, say

HAS_MAIN = re.compile(r"^(async\s+)?def main\(", re.MULTILINE)


def bench_scripts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if HAS_MAIN.search(p.read_text()))


def _parse(result_file: Path, stdout: str) -> Any:
    if result_file.exists() and result_file.stat().st_size:
        return json.loads(result_file.read_text())
    lines = stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def run_script(script: Path, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        env = {**os.environ, "RELAY_BENCH_RESULT": str(result_file)}
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, str(script)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout_s:.0f}s"}
        elapsed = round(time.monotonic() - started, 2)
        sys.stderr.write(done.stderr)
        return {
            "ok": done.returncode == 0,
            "exit_code": done.returncode,
            "seconds": elapsed,
            "result": _parse(result_file, done.stdout),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="relay-bench")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout-s", type=float, default=1800)
    args = parser.parse_args(argv)
    scripts = bench_scripts(args.folder)
    if not scripts:
        say(f"no bench scripts (python files with a main()) in {args.folder}/")
    results: dict[str, Any] = {}
    for script in scripts:
        say(f"bench: {script} ...")
        results[script.stem] = run_script(script, args.timeout_s)
        say(f"bench: {script.stem} {'ok' if results[script.stem]['ok'] else 'FAILED'}")
    report = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"results in {args.out}")
    failed = [name for name, r in results.items() if not r["ok"]]
    if failed:
        complain(f"bench failed: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
