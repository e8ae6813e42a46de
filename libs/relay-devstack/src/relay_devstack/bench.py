"""Benchmarks: run `bench/*.py` and keep one result per scenario in bench/results.json.

    python -m relay_devstack.bench bench --out bench/results.json
        [--only fanout,interactive] [--script-args "--scenario wake"] [--table]

`make bench` runs every script; `make bench BENCH=fanout BENCH_ARGS="--scenario
wake"` runs one (with its own options); `--table` only prints the table of
what the file holds. Either way the end is a summary table of every scenario
in the file: its name, the figures its targets name, each target, and whether
it was met.

The results file is a JSON list, one object per scenario: `scenario` (its
name), its figures, `targets` ({figure: "< 100"}), `targets_met` ({figure:
bool}), `met` (all of them), `script` and `measured_at` (UTC).

Why merged by scenario name: a benchmark takes minutes and is often run alone,
or one scenario of it; a run replaces only the entries it measured, so the
file holds the latest figures of every scenario and `measured_at` says how
old each one is. A failed script changes nothing in the file.

Why targets are strings (`< 100`, `<= 16`, `>= 10000`, `== 0`, `1..16`,
inclusive): the file then says what each figure was held to, readably, and
one function (`judge`) checks them for every script, on the figures as
reported, so anyone can re-check the verdict from the file.

Why the merge holds a lock and replaces the file: two benchmarks run by hand
at once must not lose each other's entries, and an interrupted write must not
leave half a file.

The contract for a bench script: it defines `main()`, runs as `python
bench/NAME.py` from the repository root, starts what it needs itself, and
hands its scenario objects to `report()`: under this runner (which sets
`RELAY_BENCH_RESULT`) they go to that file and the runner merges them; run by
hand, `report()` merges them into the results file itself. A script not using
`report()` may print its list (or one object) as the last line of stdout. A
script that exits non-zero, or reports no scenario, fails `make bench`; a
missed target does not (the verdict is in the table and the file).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import operator
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay_devstack.stack import Stack

from relay_devstack.console import complain, say

__all__ = [
    "RESULT_ENV",
    "check",
    "judge",
    "load_results",
    "merge_results",
    "report",
    "stop_stack",
    "summary_table",
]

RESULT_ENV = "RELAY_BENCH_RESULT"
HAS_MAIN = re.compile(r"^(async\s+)?def main\(", re.MULTILINE)
_COMPARE = re.compile(r"^\s*(<=|>=|==|<|>)\s*(\S+)\s*$")
_RANGE = re.compile(r"^\s*(\S+?)\s*\.\.\s*(\S+)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}

Result = dict[str, Any]


# ------------------------------------------------------------------- verdicts


def _number(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"bad target {spec!r}: {text!r} is not a number") from None


def _test(spec: str) -> Callable[[float], bool]:
    if (span := _RANGE.match(spec)) is not None:
        low, high = _number(span.group(1), spec), _number(span.group(2), spec)
        return lambda v: low <= v <= high
    if (cmp := _COMPARE.match(spec)) is not None:
        op, limit = _OPS[cmp.group(1)], _number(cmp.group(2), spec)
        return lambda v: op(v, limit)
    raise ValueError(f"bad target {spec!r}: expected '<op> <number>' or '<low>..<high>'")


def check(value: Any, spec: str) -> bool:
    """Whether a figure meets a target; a missing, non-numeric or NaN figure does not."""
    test = _test(spec)  # a malformed target is an error even without a figure
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return False
    return test(value)


def judge(result: Result, targets: Mapping[str, str]) -> Result:
    """Add `targets`, `targets_met` (each against the figure of that name) and `met`."""
    if not targets:
        raise ValueError(f"scenario {result.get('scenario')!r} has no targets")
    met = {figure: check(result.get(figure), spec) for figure, spec in targets.items()}
    result.update(targets=dict(targets), targets_met=met, met=all(met.values()))
    return result


# ---------------------------------------------------------------- the file


def scenarios_of(reported: Any) -> list[Result]:
    """The scenario objects in what a script reported (a list, or one object)."""
    items = reported if isinstance(reported, list) else [reported]
    return [r for r in items if isinstance(r, dict) and isinstance(r.get("scenario"), str)]


def load_results(path: Path) -> list[Result]:
    """The file's scenario objects ([] when absent); an unreadable file is an error."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): fix or remove it") from None
    if isinstance(data, dict) and isinstance(data.get("results"), dict):
        # The runner's first format, {"generated_at", "results": {script: run}}: keep
        # the scenarios it recorded.
        return [r for run in data["results"].values() for r in scenarios_of(run.get("result"))]
    if not isinstance(data, list):
        raise ValueError(f"{path} is not a JSON list of scenarios: fix or remove it")
    return scenarios_of(data)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def merge_results(path: Path, new: list[Result]) -> list[Result]:
    """Replace the file's entries of the same scenario names (in place), append the rest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        merged = load_results(path)
        index = {r["scenario"]: i for i, r in enumerate(merged)}
        for result in new:
            if result["scenario"] in index:
                merged[index[result["scenario"]]] = result
            else:
                index[result["scenario"]] = len(merged)
                merged.append(result)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as tmp:
            tmp.write(json.dumps(merged, indent=2) + "\n")
        os.replace(tmp.name, path)
    return merged


def stamp(result: Result, script: str) -> Result:
    """The result with `script` and `measured_at` (unless it has them)."""
    out = dict(result)
    out.setdefault("script", script)
    out.setdefault("measured_at", datetime.now(UTC).isoformat(timespec="seconds"))
    return out


def stop_stack(stack: Stack, *, keep: bool) -> None:
    """A bench's stack stopped; its folder (logs, data) kept and named with
    `--keep`, else removed."""
    stack.stop()
    if keep:
        sys.stdout.write(f"stack folder: {stack.config.data_dir}\n")
    else:
        shutil.rmtree(stack.config.data_dir, ignore_errors=True)


def report(results: list[Result], *, script: str, results_file: Path, write: bool = True) -> None:
    """How a bench script hands over its scenario objects: see the module docstring."""
    stamped = [stamp(r, script) for r in results]
    say(summary_table(stamped))
    handover = os.environ.get(RESULT_ENV)
    if handover:
        Path(handover).write_text(json.dumps(stamped, indent=2) + "\n")
    elif write:
        merge_results(results_file, stamped)
        say(f"merged into {results_file}")


# ---------------------------------------------------------------- the table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))[:40]
    return str(value)


def _rows(result: Result) -> list[list[str]]:
    met = result.get("met")
    head = [str(result.get("scenario")), "yes" if met is True else "NO" if met is False else "?"]
    when = str(result.get("measured_at", "-"))[:16].replace("T", " ")
    targets = result.get("targets")
    if not isinstance(targets, dict) or not targets:
        return [[*head, "-", "-", "-", when]]
    verdicts = result.get("targets_met")
    verdicts = verdicts if isinstance(verdicts, dict) else {}
    rows = []
    for i, (figure, spec) in enumerate(targets.items()):
        target = _cell(spec) + (" (missed)" if verdicts.get(figure) is False else "")
        lead, tail = (head, when) if i == 0 else (["", ""], "")
        rows.append([*lead, figure, _cell(result.get(figure)), target, tail])
    return rows


def summary_table(results: list[Result]) -> str:
    """Every scenario: met, then one line per target (figure, value, target)."""
    header = ["scenario", "met", "figure", "value", "target", "measured (UTC)"]
    rows = [row for r in results for row in _rows(r)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    aligns = [str.ljust, str.ljust, str.ljust, str.rjust, str.ljust, str.ljust]
    lines = [
        "  ".join(align(v, w) for align, v, w in zip(aligns, row, widths, strict=True))
        for row in [header, *rows]
    ]
    met = sum(1 for r in results if r.get("met") is True)
    lines.append(f"{len(results)} scenarios: {met} met, {len(results) - met} not met")
    return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------- the runner


def bench_scripts(folder: Path, only: list[str] | None = None) -> list[Path]:
    """The scripts with a `main()`, or those of them named in `only` (unknown: error)."""
    found = sorted(p for p in folder.glob("*.py") if HAS_MAIN.search(p.read_text()))
    if not only:
        return found
    unknown = sorted(set(only) - {p.stem for p in found})
    if unknown:
        names = ", ".join(p.stem for p in found) or "none"
        raise ValueError(f"no bench script {', '.join(unknown)} in {folder}/ (there are: {names})")
    return [p for p in found if p.stem in only]


@dataclass
class Outcome:
    ok: bool
    error: str = ""
    seconds: float = 0.0
    scenarios: list[Result] = field(default_factory=list)


def _run(argv: list[str], env: dict[str, str], timeout_s: float) -> tuple[int | None, str]:
    """Run it with its stdout shown as it comes: its exit code (None: timed out), last line."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    last = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            last = line if line.strip() else last
        code = proc.wait()
    finally:
        timer.cancel()
    return (None if killed.is_set() else code), last


def run_script(script: Path, timeout_s: float, script_args: Sequence[str] = ()) -> Outcome:
    """One script under the runner's contract: its outcome and scenario objects."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        env = {**os.environ, RESULT_ENV: str(result_file)}
        started = time.monotonic()
        code, last = _run([sys.executable, str(script), *script_args], env, timeout_s)
        seconds = round(time.monotonic() - started, 1)
        if code is None:
            return Outcome(False, f"timed out after {timeout_s:.0f} s", seconds)
        if code != 0:
            return Outcome(False, f"exit code {code}", seconds)
        text = result_file.read_text() if result_file.exists() else last
        try:
            scenarios = scenarios_of(json.loads(text))
        except ValueError:
            scenarios = []
    if not scenarios:
        return Outcome(False, f"reported no scenario (see {__name__}'s contract)", seconds)
    return Outcome(True, "", seconds, scenarios)


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="relay-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the bench scripts are")
    parser.add_argument("--out", type=Path, required=True, help="the results file")
    parser.add_argument("--only", default="", help="comma-separated script names (file stems)")
    parser.add_argument("--script-args", default="", help="options for every script run")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--table", action="store_true", help="only print the results table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    try:
        load_results(args.out)  # an unreadable results file fails now, not after a benchmark
        only = [name for name in args.only.replace(",", " ").split() if name]
        scripts = [] if args.table else bench_scripts(args.folder, only)
    except ValueError as exc:
        complain(str(exc))
        sys.exit(2)
    if not scripts and not args.table:
        say(f"no bench scripts (python files with a main()) in {args.folder}/")
    failed: list[str] = []
    for script in scripts:
        say(f"bench: {script} ...")
        outcome = run_script(script, args.timeout_s, shlex.split(args.script_args))
        if outcome.ok:
            merge_results(args.out, [stamp(r, script.stem) for r in outcome.scenarios])
            say(f"bench: {script.stem} ok in {outcome.seconds} s")
        else:
            failed.append(f"{script.stem} ({outcome.error})")
            complain(f"bench: {script.stem} FAILED: {outcome.error}; its entries are unchanged")
    say(f"\n{args.out}:")
    say(summary_table(load_results(args.out)))
    if failed:
        complain(f"bench failed: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
