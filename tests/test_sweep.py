"""Sweeps: spec validation, cell naming, the local and submitit executors, retries, collect."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from stability.app.sweep import engine as sw
from stability.app.sweep.cli import main_collect, main_sweep

# Tiny Gaussian cells: about a second of work each, most of it drawing the six figures.
TINY = {"runs": 20, "iterations": 3}


def gaussian_spec(**axes) -> sw.SweepSpec:
    return sw.parse_spec(
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


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> Path:
    """A finished two-cell sweep (lam 0.5 and inf) run with two workers."""
    out = tmp_path_factory.mktemp("sweep") / "w2"
    report = sw.run_sweep(gaussian_spec(), out, workers=2, progress=False)
    assert report.ok and report.done == 2, report.lines()
    return out


# ---------------------------------------------------------------------------------------------
# Specs


def test_spec_expands_to_a_grid_with_sorted_safe_names(tmp_path):
    spec = sw.parse_spec(
        {
            "command": "simulate gaussian",
            "options": {"runs": 20, "n-fresh": 30, "keep_blocks": True, "lam": [0, 1]},
            "axes": {"seeds": 2, "n": {"start": 10, "stop": 31, "step": 10}, "policy": ["mix"]},
        }
    )
    assert spec.fixed == {"runs": 20, "n_fresh": 30, "keep_blocks": True, "lam": [0, 1]}
    assert spec.axes == {"seed": [0, 1], "n": [10, 20, 30], "policy": ["mix"]}
    cells = sw.expand(spec, tmp_path)
    assert len(cells) == 6
    assert cells[0].name == "n=10__policy=mix__seed=0"  # keys sorted, whatever the spec order
    assert cells[1].name == "n=20__policy=mix__seed=0"  # the last axis varies fastest
    assert cells[0].argv[:2] == ["simulate", "gaussian"]
    argv = cells[0].argv
    assert argv[argv.index("--lam") + 1 : argv.index("--lam") + 3] == ["0", "1"]
    assert "--keep-blocks" in argv and argv[argv.index("--n-fresh") + 1] == "30"
    assert argv[-2:] == ["--out", str(tmp_path.absolute() / cells[0].name)]
    assert not any(tmp_path.iterdir())  # expanding writes nothing


def test_exclude_leaves_combinations_out(tmp_path):
    spec = sw.parse_spec(
        {
            "command": "simulate gaussian",
            "exclude": [{"lam": math.inf, "policy": "accumulate"}, {"lam": 1.0, "n": 5}],
            "axes": {"lam": [1, math.inf], "policy": ["mix", "accumulate"], "n": [5, 10]},
        }
    )
    names = [c.name for c in sw.expand(spec, tmp_path)]
    assert len(names) == 8 - 2 - 2  # lam=inf with accumulate (2 cells), lam=1 with n=5 (2)
    assert "lam=inf__n=5__policy=accumulate" not in names and "lam=1__n=5__policy=mix" not in names
    assert "lam=inf__n=5__policy=mix" in names
    with pytest.raises(ValueError, match="'dim' is not an axis"):
        sw.parse_spec({"command": "simulate gaussian", "exclude": [{"dim": 2}]})
    every = sw.parse_spec(
        {"command": "simulate gaussian", "exclude": [{"n": 5}], "axes": {"n": [5]}}
    )
    with pytest.raises(ValueError, match="every cell of the grid is excluded"):
        sw.expand(every, tmp_path)


def test_documented_and_example_specs_are_valid(tmp_path):
    import tomllib

    example = sw.__doc__.split("::")[1].split("\n\n", 1)[1].split("\nOption names")[0]
    spec = sw.parse_spec(tomllib.loads(example.replace("\n    ", "\n")))
    assert len(sw.expand(spec, tmp_path)) == 4 * 3 * 3 - 3
    root = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
    files = sorted(root.glob("*.toml"))
    assert files
    for path in files:
        spec = sw.load_spec(path)
        assert spec.out and sw.expand(spec, tmp_path)


def test_ranges_and_seeds():
    r = sw._range
    assert r({"start": 0, "stop": 5}, "x") == [0, 1, 2, 3, 4]
    assert r({"start": 0.1, "stop": 0.5, "step": 0.1}, "x") == [0.1, 0.2, 0.3, 0.4]
    assert r({"start": 0, "stop": 1, "num": 5}, "x") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert r({"start": 0, "stop": 10, "num": 3}, "x") == [0, 5, 10]  # integers stay integers
    assert r({"start": 10, "stop": 1000, "num": 3, "log": True}, "x") == [10, 100, 1000]
    assert r({"start": 5, "stop": 0, "step": -2}, "x") == [5, 3, 1]
    assert sw._seeds(3, "") == [0, 1, 2] and sw._seeds([7, 9], "") == [7, 9]


def test_cell_names_are_filesystem_safe_and_distinct():
    assert sw.cell_name({}) == "run"
    assert sw.cell_name({"seed": 1, "lam": 0.5}) == "lam=0.5__seed=1"
    assert sw.cell_name({"lam": math.inf}) == "lam=inf"
    assert sw.cell_name({"lam": [0, 1.5]}) == "lam=0,1.5"
    a = sw.cell_name({"data": "dir/a b.npy"})
    b = sw.cell_name({"data": "dir_a_b.npy"})
    assert "/" not in a and " " not in a and a != b and re.fullmatch(r"[\w.,+=~-]+", a)
    assert len(sw.cell_name({"data": "x" * 500})) <= sw.MAX_NAME


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"command": "simulate gaussian", "options": {"bogus": 1}}, "unknown option 'bogus'"),
        ({"command": "simulate gaussian", "axes": {"lam": []}}, "axis 'lam' is empty"),
        ({"command": "simulate gaussian", "axes": {"n": {"start": 5, "stop": 5}}}, "is empty"),
        ({"command": "simulate quantum"}, "unknown command 'simulate quantum'"),
        ({"options": {}}, "names no command"),
        ({"command": "simulate gaussian", "colour": 1}, "unknown key 'colour'"),
        (
            {"command": "simulate gaussian", "options": {"runs": [1, 2]}},
            "put the list under [axes]",
        ),
        ({"command": "simulate gaussian", "options": {"out": "x"}}, "set by the sweep"),
        ({"command": "simulate gaussian", "options": {"keep_blocks": 1}}, "is a flag"),
        (
            {"command": "simulate gaussian", "options": {"n": 5}, "axes": {"n": [1, 2]}},
            "both fixed",
        ),
        ({"command": "simulate gaussian", "axes": {"lam": [1, 1.0, 1]}}, "repeats"),
        ({"command": "simulate gaussian", "axes": {"seeds": 0}}, "seeds must be >= 1"),
        ({"command": "simulate flow", "options": {"diffusion_steps": 5}}, "unknown option"),
        ({"command": "deep retrain", "options": {"lam": [0, 1]}}, "takes one value"),
    ],
)
def test_bad_specs_are_one_line_value_errors(spec, message):
    with pytest.raises(ValueError) as err:
        sw.parse_spec(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_value_the_command_rejects_is_caught_before_running(tmp_path):
    spec = sw.parse_spec({"command": "simulate gaussian", "axes": {"runs": ["many"]}})
    with pytest.raises(ValueError, match="cell runs=many: .*invalid int value"):
        sw.run_sweep(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_spec_files_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('command = "simulate gaussian"\nout = "o"\n[axes]\nlam = [\n')
    with pytest.raises(ValueError, match="invalid TOML"):
        main_sweep([str(bad)])
    with pytest.raises(ValueError, match="cannot read spec"):
        main_sweep([str(tmp_path / "missing.toml")])
    good = tmp_path / "good.toml"
    good.write_text('command = "simulate gaussian"\n[options]\nruns = 20\n')
    with pytest.raises(ValueError, match="give --out"):
        main_sweep([str(good)])
    with pytest.raises(ValueError, match="unknown executor 'pbs'"):
        main_sweep([str(good), "--out", "o", "--executor", "pbs"])
    with pytest.raises(ValueError, match="retries must be"):
        main_sweep([str(good), "--out", "o", "--retries", "-1"])
    with pytest.raises(ValueError, match="stability sweep: argument --workers"):
        main_sweep([str(good), "--out", "o", "--workers", "two"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "good.toml"]


def test_slurm_without_submitit_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    with pytest.raises(ValueError, match=r"--executor slurm needs submitit: pip install"):
        sw.run_sweep(gaussian_spec(), tmp_path / "out", executor="slurm", dry_run=True)
    assert not (tmp_path / "out").exists()


def test_slurm_parameters_are_validated():
    pytest.importorskip("submitit")

    def params(command="simulate gaussian", **slurm):
        spec = sw.parse_spec({"command": command, "slurm": {"cluster": "local", **slurm}})
        return sw.slurm_parameters(spec)

    p = params(timeout_min=30, slurm_partition="gpu", cpus_per_task=4)
    assert p["params"] == {"timeout_min": 30, "slurm_partition": "gpu", "cpus_per_task": 4}
    assert p["launcher"] == "python" and p["nproc"] == 1
    assert params("deep retrain", gpus_per_node=4)["launcher"] == "torchrun"
    assert params("deep retrain", gpus_per_node=4)["nproc"] == 4
    assert params("deep retrain", gpus_per_node=1)["launcher"] == "python"
    for bad, message in [
        ({"partition": "gpu"}, "unknown \\[slurm\\] parameter 'partition'"),
        ({"slurm_colour": "red"}, "unknown \\[slurm\\] parameter"),
        ({"timeout_min": "1h"}, "timeout_min must be a number"),
        ({"tasks_per_node": 2}, "tasks_per_node must be 1"),
        ({"nodes": 2}, "runs on one node"),
        ({"cluster": "pbs"}, "cluster must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            params(**bad)


def test_torchrun_command_for_multi_gpu_cells():
    cell = sw.SlurmCell("c", ["deep", "retrain", "--out", "o"], "log", "torchrun", 4)
    single = cell.command()
    assert single[1:6] == ["-m", "torch.distributed.run", "--nproc_per_node", "4", "--standalone"]
    assert single[-3:] == ["-m", "stability.app.sweep.engine", '["deep", "retrain", "--out", "o"]']
    multi = cell.command(nnodes=2, node=1, master="node07", job_id="1234_5")
    assert multi[multi.index("--node_rank") + 1] == "1"
    assert multi[multi.index("--master_addr") + 1] == "node07"
    assert "--standalone" not in multi
    plain = sw.SlurmCell("c", ["simulate", "gaussian"], "log").command()
    assert plain == [sys.executable, "-m", "stability", "simulate", "gaussian"]


def test_the_json_entry_point_runs_the_stability_cli(capsys):
    # What torchrun starts in each process of a multi-GPU cell.
    assert sw._main_json(['["alpha", "10", "--json"]']) == 0
    assert json.loads(capsys.readouterr().out)["alpha"] == pytest.approx(0.9726592741215881)


@pytest.mark.slow
@pytest.mark.torch
def test_a_deep_retrain_cell_on_two_processes_under_torchrun(tmp_path):
    # gpus_per_node = 2 launches the cell with torchrun (gloo on this CPU), through submitit's
    # local executor: the multi-GPU path of a Slurm cluster, about 20 s on 2 cores.
    pytest.importorskip("submitit")
    pytest.importorskip("torch")
    options = dict(
        data="digits:16", net="tiny", n=96, iterations=2, kimg=0.064, init_kimg=0.128,
        batch=16, lr=2e-3, lr_rampup_kimg=0.0, ema_halflife_kimg=0.05, n_gen=48,
        sampler_steps=4, gen_batch=48,
    )  # fmt: skip
    spec = sw.parse_spec(
        {
            "command": "deep retrain",
            "options": options,
            "axes": {"lam": [0.5]},
            "slurm": {"cluster": "local", "gpus_per_node": 2, "timeout_min": 10},
        }
    )
    report = sw.run_sweep(spec, tmp_path / "out", executor="slurm", poll_s=0.5)
    assert report.ok, report.lines()
    log = (tmp_path / "out" / "logs" / "lam=0.5.log").read_text()
    assert "torch.distributed.run --nproc_per_node 2 --standalone" in log
    assert (tmp_path / "out" / "lam=0.5" / "summary.csv").exists()


def fake_slurm(tmp_path, monkeypatch, sbatch: str, sacct: str = "") -> None:
    """sbatch, srun and sacct on PATH as small shell scripts (no cluster in the tests)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in [("sbatch", sbatch), ("srun", "exit 0"), ("sacct", sacct or "exit 0")]:
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_a_refused_submission_is_a_one_line_error(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    fake_slurm(tmp_path, monkeypatch, 'echo "sbatch: error: invalid partition: gpux" >&2; exit 1')
    spec = sw.parse_spec(
        {"command": "simulate gaussian", "axes": {"lam": [1]}, "slurm": {"slurm_partition": "gpux"}}
    )
    with pytest.raises(ValueError, match="submitting to slurm failed: .*invalid partition: gpux"):
        sw.run_sweep(spec, tmp_path / "out", executor="slurm")
    assert status_of(tmp_path / "out")["lam=1"]["status"] == "pending"
    script = next((tmp_path / "out" / "slurm").glob(".submission_file_*.sh")).read_text()
    assert "#SBATCH --partition=gpux" in script and "#SBATCH --signal=USR2@90" in script


def test_a_rerun_follows_slurm_jobs_still_queued(tmp_path, monkeypatch):
    # An earlier invocation submitted two jobs and was stopped; one is still running.
    pytest.importorskip("submitit")
    sacct = 'echo "JobID|State|NodeList"; echo "1234_0|RUNNING|n1"; echo "1234_1|FAILED|n1"'
    fake_slurm(tmp_path, monkeypatch, "exit 1", sacct)
    spec = gaussian_spec()
    out = tmp_path / "out"
    cells = sw.expand(spec, out)
    status = sw.SweepStatus(out.absolute(), spec, cells, None)
    for cell, job in zip(cells, ("1234_0", "1234_1")):
        status.update(cell.name, save=False, status="running", job_id=job)
    status.save()
    status = sw.SweepStatus(out.absolute(), spec, cells, sw.read_status(out))
    followed = sw._reattach(status, cells, out.absolute() / "slurm" / "%j")
    assert list(followed) == ["lam=0.5"] and followed["lam=0.5"].job_id == "1234_0"


def test_checkpoint_requeues_the_same_call():
    submitit = pytest.importorskip("submitit")
    cell = sw.SlurmCell("c", ["simulate", "gaussian"], "log")
    delayed = cell.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is cell and delayed.args == () and delayed.kwargs == {}


# ---------------------------------------------------------------------------------------------
# Running


def test_dry_run_writes_nothing(tmp_path, capsys):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(
        'command = "simulate gaussian"\n[options]\nruns = 20\n[axes]\nlam = [0.5, inf]\nseeds = 2\n'
    )
    out = tmp_path / "out"
    assert main_sweep([str(spec_file), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 cells" in text and "lam=inf__seed=1" in text
    assert "stability simulate gaussian --runs 20 --lam inf --seed 1 --out" in text
    assert not out.exists()


def test_executors_and_worker_counts_give_identical_results(tmp_path, two_workers):
    pytest.importorskip("submitit")
    one = tmp_path / "w1"
    assert sw.run_sweep(gaussian_spec(), one, workers=1, progress=False).ok
    spec = sw.parse_spec(
        {
            "command": "simulate gaussian",
            "options": dict(TINY),
            "axes": {"lam": [0.5, math.inf]},
            "slurm": {"cluster": "local", "timeout_min": 10},
        }
    )
    slurm = tmp_path / "slurm"
    report = sw.run_sweep(spec, slurm, executor="slurm", progress=False, poll_s=0.2)
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
    report = sw.run_sweep(gaussian_spec(), out, workers=2, progress=False)
    assert (report.skipped, report.done, report.ok) == (2, 0, True)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.csv")} == before
    kept = (out / "lam=inf" / "summary.csv").read_bytes()
    (out / "lam=inf" / "summary.csv").unlink()  # as if the cell had been interrupted
    report = sw.run_sweep(gaussian_spec(), out, workers=2, progress=False)
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
    report = sw.run_sweep(gaussian_spec(), out, workers=2, progress=False)
    assert (report.skipped, report.done) == (1, 1)
    assert sorted(p.name for p in (out / "lam=0.5" / "figures").iterdir()) == figures


def test_a_grown_grid_runs_only_new_cells_and_another_sweep_is_refused(two_workers):
    calls = []

    def runner(cell, env, log, attempt):
        calls.append(cell.name)
        return sw.Outcome(1, "not run in this test", 0.0)

    grown = gaussian_spec(lam=[0.5, math.inf, 1.0])
    report = sw.run_sweep(grown, two_workers, workers=1, retries=0, runner=runner, progress=False)
    assert calls == ["lam=1.0"] and report.skipped == 2
    other = sw.parse_spec({"command": "simulate gaussian", "options": {"runs": 30}})
    with pytest.raises(ValueError, match="holds another sweep"):
        sw.run_sweep(other, two_workers)
    # Put the failed cell back as it was: other tests collect this folder.
    data = json.loads((two_workers / "sweep.json").read_text())
    data["cells"] = [c for c in data["cells"] if c["name"] != "lam=1.0"]
    (two_workers / "sweep.json").write_text(json.dumps(data))


def test_failed_cells_are_retried_and_recorded(tmp_path, capsys):
    attempts = []

    def flaky(cell, env, log, attempt):
        attempts.append((cell.name, attempt))
        if cell.name == "lam=0.5" and attempt == 1:
            return sw.Outcome(1, "RuntimeError: the node went away", 0.1)
        if cell.name == "lam=inf":
            return sw.Outcome(1, "RuntimeError: always broken", 0.1)
        return sw.run_cell(cell, env, log, attempt)

    out = tmp_path / "out"
    report = sw.run_sweep(gaussian_spec(), out, workers=2, retries=2, runner=flaky, progress=False)
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
    again = sw.run_sweep(gaussian_spec(), out, workers=2, retries=0, runner=flaky, progress=False)
    assert again.skipped == 1 and status_of(out)["lam=inf"]["attempts"] == 4


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
    monkeypatch.setattr(sw, "available_cores", lambda: 4)
    seen = {}

    def spy(cell, env, log, attempt):
        seen[cell.name] = {v: env[v] for v in sw.THREAD_VARS}
        return sw.Outcome(1, "spy", 0.0)

    spec = gaussian_spec(lam=[0.0, 0.5, math.inf])
    for workers, threads in [(1, "4"), (2, "2"), (3, "1"), (8, "1")]:
        seen.clear()
        out = tmp_path / f"w{workers}"
        report = sw.run_sweep(spec, out, workers=workers, retries=0, runner=spy)
        assert report.workers == min(workers, 3) and len(seen) == 3
        assert all(set(v.values()) == {threads} for v in seen.values()), (workers, seen)


def test_a_killed_cell_is_reported_with_its_signal(tmp_path):
    cmd = [
        sys.executable,
        "-c",
        "import os, signal; print('working'); os.kill(os.getpid(), signal.SIGKILL)",
    ]
    outcome = sw.run_command(cmd, dict(os.environ), tmp_path / "log", "attempt 1")
    assert outcome.returncode == -signal.SIGKILL
    assert outcome.error == "killed by SIGKILL (out of memory?); last output: working"
    ok = sw.run_command([sys.executable, "-c", "print(1)"], dict(os.environ), tmp_path / "log", "a")
    assert (ok.returncode, ok.error) == (0, None)
    assert (tmp_path / "log").read_text().count("=== ") == 2


def test_one_sweep_at_a_time_per_folder(tmp_path):
    with sw._sweep_lock(tmp_path / "out"):
        with pytest.raises(ValueError, match="another sweep is running"):
            sw.run_sweep(gaussian_spec(), tmp_path / "out", runner=lambda *a: None)


def test_a_preempted_job_requeues_and_resumes_to_the_same_numbers(tmp_path):
    # submitit's local executor plays Slurm: SIGUSR2 (Slurm's warning before preemption) makes
    # the job checkpoint and requeue; the requeued job reruns the argv, the command resumes.
    submitit = pytest.importorskip("submitit")
    argv = ["simulate", "gaussian", "--runs", "3000", "--iterations", "600", "--lam", "0.5"]
    cell_dir, log = tmp_path / "cell", tmp_path / "cell.log"
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(sw.SlurmCell("cell", [*argv, "--out", str(cell_dir)], str(log)))
    deadline = time.monotonic() + 120
    while not list((cell_dir / "blocks").glob("*.npz")):  # the first block is on disk
        assert time.monotonic() < deadline and not job.done(), log.read_text()
        time.sleep(0.05)
    pid = int(re.search(r"pid=(\d+)", log.read_text()).group(1))
    os.kill(pid, signal.SIGUSR2)
    result = job.result()
    assert result["returncode"] == 0, log.read_text()
    assert log.read_text().count("=== ") == 2  # two attempts: before and after the requeue
    from stability.app.simulate import main_gaussian

    main_gaussian([*argv[2:], "--out", str(tmp_path / "ref")])
    assert (cell_dir / "summary.csv").read_bytes() == (
        tmp_path / "ref" / "summary.csv"
    ).read_bytes()


# ---------------------------------------------------------------------------------------------
# collect


def test_collect_a_sweep_into_one_table_and_figures(two_workers, tmp_path, capsys):
    table = tmp_path / "all.csv"
    assert main_collect([str(two_workers), "--out", str(table)]) == 0
    assert "48 rows from 2 runs" in capsys.readouterr().out
    lines = table.read_text().splitlines()
    # lam is swept but is already a column of every summary row; nothing else was swept.
    assert lines[0] == "run,command,policy,lam,t,metric,runs,mean,se,q05,q50,q95"
    body = [ln.split(",") for ln in lines[1:]]
    assert len(body) == 2 * 6 * 4  # cells x metrics x (T + 1)
    assert {b[0] for b in body} == {"lam=0.5", "lam=inf"} and {b[3] for b in body} == {"0.5", "inf"}
    # Values exactly as in the cells' own summary.csv.
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


def test_collect_seeds_and_loose_run_folders(tmp_path, capsys):
    from stability.app.simulate import main_gaussian

    root = tmp_path / "runs"
    for n, seed in [(10, 0), (10, 1), (30, 0)]:
        main_gaussian(
            ["--runs", "20", "--iterations", "2", "--lam", "0", "inf", "--n", str(n), "--seed", str(seed),
             "--out", str(root / f"n{n}" / f"s{seed}")]
        )  # fmt: skip
    capsys.readouterr()
    result = sw.collect([root])
    assert result.table == root / "results.csv" and result.runs == 3
    assert result.swept == ["n", "seed"]  # the options that differ; lams is the lam column
    header, *rows = result.table.read_text().splitlines()
    assert header.startswith("run,command,n,seed,policy,lam,t,metric")
    assert {r.split(",")[0] for r in rows} == {"n10/s0", "n10/s1", "n30/s0"}
    assert {tuple(r.split(",")[2:4]) for r in rows} == {("10", "0"), ("10", "1"), ("30", "0")}
    assert len(result.figures) == 6 and all(p.exists() for p in result.figures)
    with pytest.raises(ValueError, match="give --out"):
        sw.collect([root / "n10", root / "n30"])
    with pytest.raises(ValueError, match=r"must be a \.csv"):
        sw.collect([root], tmp_path / "table.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no finished run folder"):
        main_collect([str(tmp_path / "empty")])


def test_collect_skips_unfinished_cells(two_workers, tmp_path, capsys):
    data = json.loads((two_workers / "sweep.json").read_text())
    copy = tmp_path / "sweep"
    copy.mkdir()
    data["cells"].append(dict(data["cells"][0], name="lam=2.0", status="failed"))
    (copy / "sweep.json").write_text(json.dumps(data))
    for name in ("lam=0.5", "lam=inf"):
        (copy / name).symlink_to(two_workers / name)
    assert main_collect([str(copy)]) == 0
    assert "skipped unfinished" in capsys.readouterr().err
    assert (copy / "results.csv").exists()
    # A folder holding the sweep finds it (with its axes), not its cells as loose runs.
    result = sw.collect([tmp_path], tmp_path / "t.csv", figures=False)
    rows = result.table.read_text().splitlines()[1:]
    assert result.runs == 2 and {r.split(",")[0] for r in rows} == {"lam=0.5", "lam=inf"}


def test_collect_writes_parquet_when_pyarrow_is_installed(two_workers, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    result = sw.collect([two_workers], tmp_path / "t.csv", figures=False)
    table = pq.read_table(result.parquet)
    assert table.num_rows == result.rows and table.column_names == result.columns
    assert str(table.schema.field("mean").type) == "double"
    assert str(table.schema.field("t").type) == "int64"


def test_the_stability_command_line_runs_sweep_and_collect(tmp_path, capsys):
    # Through the top-level CLI: bad specs are one line and exit 2, nothing written.
    from stability.app.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('command = "simulate gaussian"\n[axes]\nlam = []\n')
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lam" in err
    assert not (tmp_path / "o").exists()
    good = tmp_path / "good.toml"
    good.write_text(
        'command = "simulate gaussian"\n[options]\nruns = 20\niterations = 2\n[axes]\nlam = [0, 1]\n'
    )
    assert main(["sweep", str(good), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "2 cells" in capsys.readouterr().out and not (tmp_path / "o").exists()
    assert main(["sweep", str(good), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    assert main(["collect", str(tmp_path / "o")]) == 0
    rows = (tmp_path / "o" / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:2] == ["run", "command"] and "lam" in header and len(rows) == 1 + 36
    assert main(["collect", str(tmp_path / "nothing")]) == 2
