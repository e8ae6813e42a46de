"""The benchmark runner and results file (`relay_devstack.bench`), with synthetic
results and tiny synthetic bench scripts: the real benchmarks take minutes."""

from __future__ import annotations

import json
import math
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from relay_devstack.bench import (
    RESULT_ENV,
    check,
    judge,
    load_results,
    main,
    merge_results,
    report,
    summary_table,
)


def scenario(name: str, **figures: Any) -> dict[str, Any]:
    return judge({"scenario": name, "p99_ms": 10.0, **figures}, {"p99_ms": "< 50"})


def write_script(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def run_main(*argv: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return int(exited.value.code or 0)


# ------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("value", "spec", "met"),
    [
        (49.9, "< 50", True),
        (50, "< 50", False),
        (16, "<= 16", True),
        (10_000, ">= 10000", True),
        (9_999, ">= 10000", False),
        (0, "== 0", True),
        (1, "== 0", False),
        (3, "1..16", True),
        (0, "1..16", False),
        (17, "1..16", False),
        (0.5, "> 0.25", True),
        (math.nan, "< 50", False),
        (None, "< 50", False),
        ("12", "< 50", False),
        (True, ">= 1", False),
    ],
)
def test_check_a_figure_against_its_target(value: Any, spec: str, met: bool) -> None:
    assert check(value, spec) is met


@pytest.mark.parametrize("spec", ["50", "< fifty", "~ 3", "1..x", ""])
def test_a_malformed_target_is_an_error(spec: str) -> None:
    with pytest.raises(ValueError, match="bad target"):
        check(1.0, spec)


def test_judge_records_each_target_and_the_verdict() -> None:
    result = judge(
        {"scenario": "s", "latency_p99_ms": 120.0, "subscribers": 10_000},
        {"latency_p99_ms": "< 100", "subscribers": ">= 10000", "absent": "== 0"},
    )
    assert result["targets"] == {"latency_p99_ms": "< 100", "subscribers": ">= 10000",
                                 "absent": "== 0"}  # fmt: skip
    assert result["targets_met"] == {"latency_p99_ms": False, "subscribers": True, "absent": False}
    assert result["met"] is False
    assert judge({"scenario": "ok", "x": 1}, {"x": "== 1"})["met"] is True
    with pytest.raises(ValueError, match="no targets"):
        judge({"scenario": "none"}, {})


# ------------------------------------------------------------------- the file


def test_merge_replaces_entries_by_name_in_place_and_appends_new_ones(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    merge_results(out, [scenario("a", run=1), scenario("b", run=1), scenario("c", run=1)])
    merged = merge_results(out, [scenario("b", run=2), scenario("d", run=2)])
    assert [(r["scenario"], r["run"]) for r in merged] == [("a", 1), ("b", 2), ("c", 1), ("d", 2)]
    assert load_results(out) == merged
    assert isinstance(json.loads(out.read_text()), list)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left


def test_concurrent_merges_lose_no_entry(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    threads = [
        threading.Thread(target=merge_results, args=(out, [scenario(f"s{i}")])) for i in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["scenario"] for r in load_results(out)) == sorted(f"s{i}" for i in range(16))


def test_the_runners_old_format_keeps_its_scenarios(tmp_path: Path) -> None:
    """The runner used to write {"generated_at", "results": {script: run}} over the
    scripts' list; a file in that shape is read, not thrown away."""
    out = tmp_path / "results.json"
    old = {
        "generated_at": "2026-11-26T10:00:00+00:00",
        "results": {
            "fanout": {"ok": True, "result": None},
            "interactive": {"ok": True, "result": [scenario("i1"), scenario("i2")]},
        },
    }
    out.write_text(json.dumps(old))
    merged = merge_results(out, [scenario("f1")])
    assert [r["scenario"] for r in merged] == ["i1", "i2", "f1"]


@pytest.mark.parametrize("text", ["{not json", '{"scenario": "x"}', "42"])
def test_an_unreadable_results_file_is_an_error_and_left_alone(tmp_path: Path, text: str) -> None:
    out = tmp_path / "results.json"
    out.write_text(text)
    with pytest.raises(ValueError, match=r"results\.json"):
        merge_results(out, [scenario("a")])
    assert out.read_text() == text
    assert run_main(str(tmp_path), "--out", str(out)) == 2  # before running any benchmark


def test_summary_table_shows_every_target_and_verdict() -> None:
    fast = judge({"scenario": "fast", "latency_p99_ms": 12.5, "redis_connections": 3},
                 {"latency_p99_ms": "< 100", "redis_connections": "1..16"})  # fmt: skip
    slow = judge({"scenario": "slow", "latency_p99_ms": 250.0}, {"latency_p99_ms": "< 100"})
    slow["measured_at"] = "2026-11-27T09:15:00+00:00"
    legacy = {"scenario": "legacy", "added_ttft_p99_ms": 30.1,
              "targets": {"added_ttft_p99_ms": 50.0}, "met": True}  # fmt: skip
    lines = summary_table([fast, slow, legacy]).splitlines()
    assert lines[0].split() == ["scenario", "met", "figure", "value", "target", "measured", "(UTC)"]
    assert lines[1].split() == ["fast", "yes", "latency_p99_ms", "12.5", "<", "100", "-"]
    assert lines[2].split() == ["redis_connections", "3", "1..16"]
    assert lines[3].split() == ["slow", "NO", "latency_p99_ms", "250.0", "<", "100", "(missed)",
                                "2026-11-27", "09:15"]  # fmt: skip
    assert lines[4].split() == ["legacy", "yes", "added_ttft_p99_ms", "30.1", "50.0", "-"]
    assert lines[-1] == "3 scenarios: 2 met, 1 not met"


def test_report_by_hand_merges_into_the_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(RESULT_ENV, raising=False)
    out = tmp_path / "results.json"
    merge_results(out, [scenario("other")])
    report([scenario("mine")], script="fake", results_file=out)
    entries = load_results(out)
    assert [r["scenario"] for r in entries] == ["other", "mine"]
    assert entries[1]["script"] == "fake" and entries[1]["measured_at"].endswith("+00:00")
    assert "mine" in capsys.readouterr().out
    report([scenario("not-written")], script="fake", results_file=out, write=False)
    assert [r["scenario"] for r in load_results(out)] == ["other", "mine"]


def test_report_under_the_runner_hands_over_and_leaves_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handover, out = tmp_path / "handover.json", tmp_path / "results.json"
    monkeypatch.setenv(RESULT_ENV, str(handover))
    report([scenario("mine")], script="fake", results_file=out)
    assert not out.exists()
    assert [r["scenario"] for r in json.loads(handover.read_text())] == ["mine"]


# ------------------------------------------------------------------ the runner

REPORTING = """
    import sys
    from pathlib import Path
    from relay_devstack.bench import judge, report

    def main() -> None:
        name = sys.argv[1] if len(sys.argv) > 1 else "{name}"
        result = judge({{"scenario": name, "p99_ms": 7.0}}, {{"p99_ms": "< 50"}})
        report([result], script="{name}", results_file=Path("never-written.json"))

    if __name__ == "__main__":
        main()
"""


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bench"
    folder.mkdir()
    write_script(folder, "alpha", REPORTING.format(name="alpha"))
    write_script(folder, "beta", """
        import json
        def main():
            print("progress...")
            print(json.dumps([{"scenario": "beta@1", "x": 1, "targets": {"x": "== 1"},
                               "targets_met": {"x": True}, "met": True}]))
        main()
    """)  # fmt: skip
    write_script(folder, "helpers", "X = 1\n")  # no main(): not a benchmark
    return folder


def test_running_one_script_updates_only_its_entries(
    bench_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = bench_dir / "results.json"
    merge_results(out, [scenario("beta@1", stale=True), scenario("alpha", stale=True)])
    assert run_main(str(bench_dir), "--out", str(out), "--only", "alpha") == 0
    entries = {r["scenario"]: r for r in load_results(out)}
    assert list(entries) == ["beta@1", "alpha"]
    assert entries["beta@1"]["stale"] is True
    assert "stale" not in entries["alpha"] and entries["alpha"]["script"] == "alpha"
    assert not (bench_dir.parent / "never-written.json").exists()
    table = capsys.readouterr().out.split(f"{out}:")[-1]
    assert "alpha" in table and "beta@1" in table and "2 scenarios: 2 met" in table


def test_every_script_runs_and_its_last_stdout_line_counts(bench_dir: Path) -> None:
    out = bench_dir / "results.json"
    assert run_main(str(bench_dir), "--out", str(out)) == 0
    entries = load_results(out)
    assert [(r["scenario"], r["script"]) for r in entries] == [("alpha", "alpha"),
                                                             ("beta@1", "beta")]  # fmt: skip


def test_script_args_reach_the_script(bench_dir: Path) -> None:
    out = bench_dir / "results.json"
    argv = ["--out", str(out), "--only", "alpha", "--script-args", "alpha@custom"]
    assert run_main(str(bench_dir), *argv) == 0
    assert [r["scenario"] for r in load_results(out)] == ["alpha@custom"]


def test_regression_a_script_without_a_result_was_recorded_as_null(
    bench_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fanout.py wrote its own file but handed nothing over: `make bench` recorded
    `"result": null` as a success and overwrote the file. Now it fails, file untouched."""
    write_script(bench_dir, "silent", "def main():\n    print('done')\n\nmain()\n")
    out = bench_dir / "results.json"
    merge_results(out, [scenario("kept")])
    before = out.read_text()
    assert run_main(str(bench_dir), "--out", str(out), "--only", "silent") == 1
    assert out.read_text() == before
    assert "silent (reported no scenario" in capsys.readouterr().err


def test_a_failing_or_hung_script_fails_the_run(bench_dir: Path) -> None:
    write_script(bench_dir, "crash", "def main():\n    raise SystemExit(3)\n\nmain()\n")
    write_script(bench_dir, "hang", "import time\ndef main():\n    time.sleep(60)\n\nmain()\n")
    out = bench_dir / "results.json"
    argv = ["--out", str(out), "--only", "crash,hang,alpha", "--timeout-s", "2"]
    assert run_main(str(bench_dir), *argv) == 1
    assert [r["scenario"] for r in load_results(out)] == ["alpha"]  # the others changed nothing


def test_an_unknown_script_name_is_refused(
    bench_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(str(bench_dir), "--out", str(bench_dir / "r.json"), "--only", "nope") == 2
    assert "no bench script nope" in capsys.readouterr().err
