"""The Slurm executor through submitit: parameters, job arrays, torchrun cells, requeue on
preemption, and following the jobs of an earlier invocation (no cluster: fake sbatch/sacct, and
submitit's local executor playing Slurm)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import time

import pytest

from stability.app.sweep.cells import expand
from stability.app.sweep.launch import main_json
from stability.app.sweep.run import run_sweep
from stability.app.sweep.slurm import SlurmCell, slurm_parameters
from stability.app.sweep.spec import parse_spec
from stability.app.sweep.status import SweepStatus


def gaussian_spec(**slurm):
    return parse_spec(
        {
            "command": "simulate gaussian",
            "options": {"runs": 20, "iterations": 3},
            "axes": {"lam": [0.5, math.inf]},
            **({"slurm": slurm} if slurm else {}),
        }
    )


def status_of(out) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["cells"]}


def test_slurm_without_submitit_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    with pytest.raises(ValueError, match=r"--executor slurm needs submitit: pip install"):
        run_sweep(gaussian_spec(), tmp_path / "out", executor="slurm", dry_run=True)
    assert not (tmp_path / "out").exists()


def test_slurm_parameters_are_validated():
    pytest.importorskip("submitit")

    def params(command="simulate gaussian", **slurm):
        spec = parse_spec({"command": command, "slurm": {"cluster": "local", **slurm}})
        return slurm_parameters(spec)

    p = params(timeout_min=30, slurm_partition="gpu", cpus_per_task=4)
    assert p["params"] == {"timeout_min": 30, "slurm_partition": "gpu", "cpus_per_task": 4}
    assert p["launcher"] == "python" and p["nproc"] == 1
    assert params()["params"] == {"timeout_min": 60}  # the default time limit
    assert params("deep retrain", gpus_per_node=4)["launcher"] == "torchrun"
    assert params("deep retrain", gpus_per_node=4)["nproc"] == 4
    assert params("deep retrain", gpus_per_node=1)["launcher"] == "python"
    assert params("deep retrain", nodes=2)["launcher"] == "torchrun"
    for bad, message in [
        ({"partition": "gpu"}, "unknown \\[slurm\\] parameter 'partition'"),
        ({"slurm_colour": "red"}, "unknown \\[slurm\\] parameter"),
        ({"timeout_min": "1h"}, "timeout_min must be a number"),
        ({"timeout_min": 0}, "timeout_min must be positive"),
        ({"tasks_per_node": 2}, "tasks_per_node must be 1"),
        ({"nodes": 2}, "runs on one node"),
        ({"cluster": "pbs"}, "cluster must be"),
        ({"max_num_timeout": 1.5}, "max_num_timeout must be an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            params(**bad)


def test_a_dry_run_names_the_jobs_and_their_launcher(tmp_path):
    pytest.importorskip("submitit")
    spec = parse_spec(
        {
            "command": "deep retrain",
            "options": {"data": "digits:16", "net": "tiny"},
            "axes": {"lam": [0.5]},
            "slurm": {"gpus_per_node": 4, "timeout_min": 30},
        }
    )
    report = run_sweep(spec, tmp_path / "out", executor="slurm", dry_run=True)
    lines = report.lines()
    assert lines[0].startswith("1 cells in") and "slurm executor" in lines[0]
    assert (
        lines[1]
        == "  slurm jobs (timeout_min=30, gpus_per_node=4); each cell runs with torchrun x 4 processes"
    )
    assert not (tmp_path / "out").exists()


def test_torchrun_command_for_multi_gpu_cells():
    cell = SlurmCell("c", ["deep", "retrain", "--out", "o"], "log", "torchrun", 4)
    single = cell.command()
    assert single[1:6] == ["-m", "torch.distributed.run", "--nproc_per_node", "4", "--standalone"]
    assert single[-3:] == ["-m", "stability.app.sweep.launch", '["deep", "retrain", "--out", "o"]']
    multi = cell.command(nnodes=2, node=1, master="node07", job_id="1234_5")
    assert multi[multi.index("--node_rank") + 1] == "1"
    assert multi[multi.index("--master_addr") + 1] == "node07"
    assert multi[multi.index("--master_port") + 1] == str(20000 + 12345 % 20000)
    assert "--standalone" not in multi
    plain = SlurmCell("c", ["simulate", "gaussian"], "log").command()
    assert plain == [sys.executable, "-m", "stability", "simulate", "gaussian"]


def test_the_json_entry_point_runs_the_stability_cli(capsys):
    # What torchrun starts in each process of a multi-GPU cell.
    assert main_json(['["alpha", "10", "--json"]']) == 0
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
    spec = parse_spec(
        {
            "command": "deep retrain",
            "options": options,
            "axes": {"lam": [0.5]},
            "slurm": {"cluster": "local", "gpus_per_node": 2, "timeout_min": 10},
        }
    )
    report = run_sweep(spec, tmp_path / "out", executor="slurm", poll_s=0.5)
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
    spec = parse_spec(
        {"command": "simulate gaussian", "axes": {"lam": [1]}, "slurm": {"slurm_partition": "gpux"}}
    )
    with pytest.raises(ValueError, match="submitting to slurm failed: .*invalid partition: gpux"):
        run_sweep(spec, tmp_path / "out", executor="slurm")
    assert status_of(tmp_path / "out")["lam=1"]["status"] == "pending"
    script = next((tmp_path / "out" / "slurm").glob(".submission_file_*.sh")).read_text()
    assert "#SBATCH --partition=gpux" in script and "#SBATCH --signal=USR2@90" in script


def test_a_rerun_follows_slurm_jobs_still_queued(tmp_path, monkeypatch, capsys):
    # An earlier invocation submitted two jobs and was stopped; one is still running. The rerun
    # follows that one and submits only the other (here sbatch refuses it, which stops the
    # sweep right after the submission).
    pytest.importorskip("submitit")
    sacct = 'echo "JobID|State|NodeList"; echo "1234_0|RUNNING|n1"; echo "1234_1|FAILED|n1"'
    fake_slurm(tmp_path, monkeypatch, 'echo "sbatch: error: stop here" >&2; exit 1', sacct)
    spec = gaussian_spec()
    out = tmp_path / "out"
    cells = expand(spec, out)
    status = SweepStatus(out.absolute(), spec, cells, None)
    for cell, job in zip(cells, ("1234_0", "1234_1")):
        status.update(cell.name, save=False, status="running", job_id=job)
    status.save()
    with pytest.raises(ValueError, match="submitting to slurm failed: .*stop here"):
        run_sweep(spec, out, executor="slurm")
    after = status_of(out)
    assert (after["lam=0.5"]["status"], after["lam=0.5"]["job_id"]) == ("running", "1234_0")
    assert after["lam=inf"]["status"] == "pending"
    scripts = list((out / "slurm").glob(".submission_file_*.sh"))
    assert len(scripts) == 1  # one submission: lam=inf alone
    assert "--array" not in scripts[0].read_text()  # a single job, not an array of two
    assert "1 Slurm job(s) keep running" in capsys.readouterr().err  # lam=0.5's, followed


def test_checkpoint_requeues_the_same_call():
    submitit = pytest.importorskip("submitit")
    cell = SlurmCell("c", ["simulate", "gaussian"], "log")
    delayed = cell.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is cell and delayed.args == () and delayed.kwargs == {}


def test_a_preempted_job_requeues_and_resumes_to_the_same_numbers(tmp_path):
    # submitit's local executor plays Slurm: SIGUSR2 (Slurm's warning before preemption) makes
    # the job checkpoint and requeue; the requeued job reruns the argv, the command resumes.
    submitit = pytest.importorskip("submitit")
    argv = ["simulate", "gaussian", "--runs", "3000", "--iterations", "600", "--lam", "0.5"]
    cell_dir, log = tmp_path / "cell", tmp_path / "cell.log"
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(SlurmCell("cell", [*argv, "--out", str(cell_dir)], str(log)))
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
