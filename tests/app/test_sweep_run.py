"""Running sweeps with the local executor: same numbers whatever the workers or executor,
reruns, retries, thread shares, the folder lock, and interruptions (Ctrl-C, SIGTERM, SIGKILL)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stability.app.sweep.cli import main_collect, main_sweep
from stability.app.sweep.local import SweepTerminated, run_cell
from stability.app.sweep.processes import THREAD_VARS, Outcome
from stability.app.sweep.run import run_sweep
from stability.app.sweep.spec import SweepSpec, load_spec, parse_spec
from stability.errors import UsageError
from stability.runs.lock import lock_run_folder
from tests.stability.runs.test_lock import killed_during_atomic_write

# Tiny Gaussian cells: about a second of work each, most of it drawing the six figures.
TINY = {"runs": 20, "iterations": 3}


def gaussian_spec(**axes) -> SweepSpec:
    return parse_spec(
        {
            "command": "simulate gaussian",
            "options": dict(TINY),
            "axes": axes or {"lam": [0.5, math.inf]},
        }
    )


def summaries(out: Path) -> dict[str, bytes]:
    """summary.csv bytes of every cell of a sweep folder, by cell name."""
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("*/summary.csv"))}


def status_of(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["cells"]}


def finish_by_hand(cell) -> Outcome:
    """What a successful attempt leaves: a summary.csv in the cell's folder."""
    cell.folder.mkdir(parents=True, exist_ok=True)
    (cell.folder / "summary.csv").write_text("policy,lam,t,metric\n")
    return Outcome(0, None, 0.01)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> Path:
    """A finished two-cell sweep (lam 0.5 and inf) run with two workers."""
    out = tmp_path_factory.mktemp("sweep") / "w2"
    report = run_sweep(gaussian_spec(), out, workers=2, progress=False)
    assert report.ok and report.done == 2, report.lines()
    return out


def test_executors_and_worker_counts_give_identical_results(tmp_path, two_workers):
    pytest.importorskip("submitit")
    one = tmp_path / "w1"
    assert run_sweep(gaussian_spec(), one, workers=1, progress=False).ok
    spec = parse_spec(
        {
            "command": "simulate gaussian",
            "options": dict(TINY),
            "axes": {"lam": [0.5, math.inf]},
            "slurm": {"cluster": "local", "timeout_min": 10},
        }
    )
    slurm = tmp_path / "slurm"
    report = run_sweep(spec, slurm, executor="slurm", progress=False, poll_s=0.2)
    assert report.ok, report.lines()
    reference = summaries(two_workers)
    assert sorted(reference) == ["lam=0.5", "lam=inf"]
    assert summaries(one) == reference
    assert summaries(slurm) == reference
    assert all(r["job_id"] for r in status_of(slurm).values())
    # The same bytes as the single command run by hand.
    from stability.app.simulate import main_gaussian

    main_gaussian(
        ["--runs", "20", "--iterations", "3", "--lam", "inf", "--out", str(tmp_path / "x")]
    )
    assert (tmp_path / "x" / "summary.csv").read_bytes() == reference["lam=inf"]


def test_rerun_skips_finished_cells_and_reruns_missing_ones(two_workers):
    out = two_workers
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.csv")}
    report = run_sweep(gaussian_spec(), out, workers=2, progress=False)
    assert (report.skipped, report.done, report.ok) == (2, 0, True)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.csv")} == before
    kept = (out / "lam=inf" / "summary.csv").read_bytes()
    (out / "lam=inf" / "summary.csv").unlink()  # as if the cell had been interrupted
    report = run_sweep(gaussian_spec(), out, workers=2, progress=False)
    assert (report.skipped, report.done) == (1, 1)
    assert (out / "lam=inf" / "summary.csv").read_bytes() == kept
    assert status_of(out)["lam=inf"]["attempts"] == 2
    # A cell stopped after its summary.csv but before its figures runs again (the command
    # resumes and only draws them).
    data = json.loads((out / "sweep.json").read_text())
    next(c for c in data["cells"] if c["name"] == "lam=0.5")["status"] = "running"
    (out / "sweep.json").write_text(json.dumps(data))
    figures = sorted(p.name for p in (out / "lam=0.5" / "figures").iterdir())
    shutil.rmtree(out / "lam=0.5" / "figures")
    report = run_sweep(gaussian_spec(), out, workers=2, progress=False)
    assert (report.skipped, report.done) == (1, 1)
    assert sorted(p.name for p in (out / "lam=0.5" / "figures").iterdir()) == figures
    assert not (out / ".lock").exists()  # released at the end


def test_a_grown_grid_runs_only_new_cells_and_another_sweep_is_refused(two_workers):
    calls = []

    def runner(cell, env, log, attempt):
        calls.append(cell.name)
        return Outcome(1, "not run in this test", 0.0)

    grown = gaussian_spec(lam=[0.5, math.inf, 1.0])
    report = run_sweep(grown, two_workers, workers=1, retries=0, runner=runner, progress=False)
    assert calls == ["lam=1.0"] and report.skipped == 2
    other = parse_spec({"command": "simulate gaussian", "options": {"runs": 30}})
    with pytest.raises(ValueError, match="holds another sweep"):
        run_sweep(other, two_workers)
    # Put the failed cell back as it was: other tests collect this folder.
    data = json.loads((two_workers / "sweep.json").read_text())
    data["cells"] = [c for c in data["cells"] if c["name"] != "lam=1.0"]
    (two_workers / "sweep.json").write_text(json.dumps(data))


def test_collect_a_finished_sweep_from_the_command_line(two_workers, tmp_path, capsys):
    table = tmp_path / "all.csv"
    assert main_collect([str(two_workers), "--out", str(table)]) == 0
    assert "48 rows from 2 runs" in capsys.readouterr().out
    lines = table.read_text().splitlines()
    assert lines[0] == "run,command,policy,lam,t,metric,runs,mean,se,q05,q50,q95"
    body = [ln.split(",") for ln in lines[1:]]
    assert {b[0] for b in body} == {"lam=0.5", "lam=inf"} and {b[3] for b in body} == {"0.5", "inf"}
    own = (two_workers / "lam=inf" / "summary.csv").read_text().splitlines()[1:]
    assert [",".join(b[2:]) for b in body if b[0] == "lam=inf"] == own
    figures = sorted(tmp_path.glob("all_*.png"))
    assert [f.name for f in figures] == [
        f"all_{m}.png"
        for m in sorted(
            ["mean_err2", "trace_cov", "trace_sqrt_cov", "logdet_cov", "w2", "theta_err"]
        )
    ]
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)


def test_failed_cells_are_retried_and_recorded(tmp_path):
    attempts = []

    def flaky(cell, env, log, attempt):
        attempts.append((cell.name, attempt))
        if cell.name == "lam=0.5" and attempt == 1:
            return Outcome(1, "RuntimeError: the node went away", 0.1)
        if cell.name == "lam=inf":
            return Outcome(1, "RuntimeError: always broken", 0.1)
        return run_cell(cell, env, log, attempt)

    out = tmp_path / "out"
    report = run_sweep(gaussian_spec(), out, workers=2, retries=2, runner=flaky, progress=False)
    assert report.done == 1 and [r["name"] for r in report.failed] == ["lam=inf"]
    assert sorted(attempts) == [("lam=0.5", 1), ("lam=0.5", 2)] + [
        ("lam=inf", k) for k in (1, 2, 3)
    ]
    status = status_of(out)
    assert status["lam=0.5"]["status"] == "done" and status["lam=0.5"]["attempts"] == 2
    assert status["lam=inf"] == status["lam=inf"] | {
        "status": "failed",
        "attempts": 3,
        "returncode": 1,
        "error": "RuntimeError: always broken",
    }
    assert any(
        "failed lam=inf after 3 attempt(s): RuntimeError: always broken" in line
        for line in report.lines()
    )
    # A rerun retries the failed cell only (fresh retries), and counts attempts across runs.
    again = run_sweep(gaussian_spec(), out, workers=2, retries=0, runner=flaky, progress=False)
    assert again.skipped == 1 and status_of(out)["lam=inf"]["attempts"] == 4


def test_a_command_that_exits_0_without_a_summary_has_failed(tmp_path):
    report = run_sweep(
        gaussian_spec(lam=[0.5]),
        tmp_path / "out",
        retries=0,
        runner=lambda cell, env, log, attempt: Outcome(0, None, 0.0),
        progress=False,
    )
    assert [r["error"] for r in report.failed] == ["the command exited 0 but wrote no summary.csv"]


def test_bad_input_at_run_time_fails_once_with_the_commands_message(tmp_path, capsys):
    # n = 1 passes the parser but the command rejects it (exit 2): retrying cannot help.
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(
        'command = "simulate gaussian"\n[options]\nruns = 20\niterations = 3\n[axes]\nn = [1, 5]\n'
    )
    out = tmp_path / "out"
    assert main_sweep([str(spec_file), "--out", str(out), "--workers", "2"]) == 1
    printed = capsys.readouterr()
    assert "failed n=1 after 1 attempt(s): stability: error: n must be >= 2" in printed.out
    rec = status_of(out)["n=1"]
    assert (rec["status"], rec["attempts"], rec["returncode"]) == ("failed", 1, 2)
    assert status_of(out)["n=5"]["status"] == "done"
    assert not (out / "n=1").exists()  # the command wrote nothing, as it promises
    assert "n must be >= 2" in (out / "logs" / "n=1.log").read_text()


def test_each_cell_gets_its_share_of_the_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    seen = {}

    def spy(cell, env, log, attempt):
        seen[cell.name] = {v: env[v] for v in THREAD_VARS}
        return Outcome(1, "spy", 0.0)

    spec = gaussian_spec(lam=[0.0, 0.5, math.inf])
    for workers, threads in [(1, "4"), (2, "2"), (3, "1"), (8, "1")]:
        seen.clear()
        out = tmp_path / f"w{workers}"
        report = run_sweep(spec, out, workers=workers, retries=0, runner=spy)
        assert report.workers == min(workers, 3) and len(seen) == 3
        assert all(set(v.values()) == {threads} for v in seen.values()), (workers, seen)
    assert run_sweep(spec, tmp_path / "w8", dry_run=True).workers == 3  # default: the cores


def test_one_sweep_at_a_time_per_folder(tmp_path):
    with lock_run_folder(tmp_path / "out", command="sweep"):
        with pytest.raises(ValueError, match="another sweep is running") as err:
            run_sweep(gaussian_spec(), tmp_path / "out", runner=lambda *a: None)
        assert f"(pid {os.getpid()} on " in str(err.value)
    assert (
        sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    )  # the refused one wrote nothing


def test_a_cell_that_ends_as_the_sweep_is_terminated_is_recorded_done(tmp_path):
    # Reported bug: finished cells showed as "pending" in sweep.json after an interruption.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGTERM is handled in the main thread only")
    previous = signal.getsignal(signal.SIGTERM)

    def runner(cell, env, log, attempt):
        os.kill(os.getpid(), signal.SIGTERM)  # the sweep is terminated as this cell ends
        return finish_by_hand(cell)

    spec = gaussian_spec(lam=[0.5])
    with pytest.raises(SweepTerminated):
        run_sweep(spec, tmp_path / "out", workers=1, runner=runner, progress=False)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert status_of(tmp_path / "out")["lam=0.5"]["status"] == "done"
    assert not (tmp_path / "out" / ".lock").exists()


def test_a_cell_killed_while_writing_a_block_leaves_no_stale_block_file(tmp_path):
    # Reported bug: `kill -9` of a sweep and its cells while a cell wrote a block left the
    # block's temporary file in blocks/; the rerun finished the cell but kept blocks/ with it.
    spec = gaussian_spec(lam=[0.5])
    out = tmp_path / "out"
    cell = out / "lam=0.5"
    left = killed_during_atomic_write(cell / "blocks" / "lam0_block00000.npz")
    assert left.parent == cell / "blocks"
    report = run_sweep(spec, out, workers=1, progress=False)
    assert report.ok and report.done == 1
    assert (cell / "summary.csv").exists() and not (cell / "blocks").exists()


def test_a_sweep_killed_with_sigkill_keeps_its_folder_until_its_cells_exit(tmp_path):
    # Reported bug: after `kill -9` of a sweep, its cell processes run on; a rerun started the
    # same cells again beside them, and two commands writing one folder left stale block files
    # in a finished cell. The cells now hold the sweep folder's lock.
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(
        'command = "simulate gaussian"\n[options]\nruns = 1000\niterations = 100\nlam = 0.5\n'
        "[axes]\nseeds = 1\n"
    )
    out = tmp_path / "out"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "stability", "sweep", str(spec_file), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, which its cell joins
    )
    cell = out / "seed=0"
    try:
        deadline = time.monotonic() + 120
        while not (cell / "config.json").exists():  # the cell's command has started
            assert time.monotonic() < deadline and sweep.poll() is None
            time.sleep(0.02)
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        spec = load_spec(spec_file)
        with pytest.raises(UsageError, match=rf"another sweep is running .*pid {sweep.pid} "):
            run_sweep(spec, out, workers=1, progress=False)
        while True:  # once the orphan has finished, the sweep reruns
            try:
                report = run_sweep(spec, out, workers=1, progress=False)
                break
            except UsageError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        try:
            os.killpg(sweep.pid, signal.SIGKILL)  # the orphaned cell, if the test failed
        except ProcessLookupError:
            pass
    assert report.ok and report.done == 1
    assert (cell / "summary.csv").exists() and not (cell / "blocks").exists()
    log = (out / "logs" / "seed=0.log").read_text()
    assert log.count("=== ") == 2  # the orphan's attempt, then the rerun's (a resume)
