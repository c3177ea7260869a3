"""A model from a file outside the package through `stability simulate model`, `stability sweep`
and `stability collect`: kill -9 and resume, entry points in --help, one-line errors (exit 2)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli
from tests.simulations.test_plugin_sim import USER_KDE


@pytest.fixture
def user_kde(tmp_path):
    path = tmp_path / "user_kde.py"
    path.write_text(USER_KDE)
    return path


def _args(model, out, *extra):
    return [
        "simulate", "model", "--model", model, "--dim", "1", "--n", "40", "--lam", "0", "inf",
        "--iterations", "4", "--runs", "4", "--block-size", "2", "--out", out, *extra,
    ]  # fmt: skip


def test_a_file_model_runs_through_simulate(user_kde, tmp_path):
    out = tmp_path / "run"
    res = run_cli(*_args(f"{user_kde}:KDE", out, "--param", "bandwidth=0.2"))
    assert res.returncode == 0, res.stderr
    assert "variance" in res.stdout and "param_distance" in res.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["options"]["params"] == ["bandwidth=0.2"]
    res = run_cli(*_args(f"{user_kde}:KDE", out, "--param", "bandwidth=0.2", "--json"))
    assert res.returncode == 0 and json.loads(res.stdout)["iterations"] == 4  # finished: reread


def test_kill_9_then_resume_gives_the_numbers_of_an_uninterrupted_run(user_kde, tmp_path):
    slow = ["--param", "delay=0.05", "--iterations", "8"]
    ref = run_cli(*_args(f"{user_kde}:KDE", tmp_path / "ref", *slow))
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "stability", *_args(f"{user_kde}:KDE", out, *slow)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("lam0_*.pkl")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / "summary.csv").exists() and (out / ".lock").exists()
    res = run_cli(*_args(f"{user_kde}:KDE", out, *slow))
    assert res.returncode == 0, res.stderr
    assert (out / "summary.csv").read_bytes() == (tmp_path / "ref" / "summary.csv").read_bytes()


def test_sweep_and_collect_run_a_file_model(user_kde, tmp_path):
    spec = tmp_path / "kde.toml"
    spec.write_text(
        'command = "simulate model"\n'
        "[options]\n"
        f'model = "{user_kde}:KDE"\n'
        "dim = 1\nn = 30\niterations = 3\nruns = 4\nblock_size = 2\nlam = [0.5, inf]\n"
        "[axes]\n"
        'param = [["bandwidth=0.1"], ["bandwidth=0.4"]]\n'
    )
    sweep = tmp_path / "sweep"
    res = run_cli("sweep", spec, "--out", sweep)
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_cli("collect", sweep)
    assert res.returncode == 0, res.stderr
    with open(sweep / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["command"] for r in rows} == {"simulate model"}
    assert {r["param"] for r in rows} == {"bandwidth=0.1", "bandwidth=0.4"}
    assert {r["metric"] for r in rows} == {"w1", "w2", "param_distance", "variance"}
    assert len(rows) == 2 * 2 * 4 * 4  # cells x lambdas x metrics x (t = 0..3)
    assert {r["lam"] for r in rows} == {"0.5", "inf"}
    assert list(sweep.glob("results_*.png"))


def test_an_installed_entry_point_appears_in_help_and_runs(tmp_path):
    site = tmp_path / "site"
    info = site / "tinykde-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "tinykde.py").write_text(USER_KDE)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinykde\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[stability.models]\ntiny-kde = tinykde:KDE\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    res = run_cli("simulate", "model", "--help", env=env)
    assert res.returncode == 0 and "tiny-kde" in res.stdout.replace("\n", " ")
    assert "tiny-kde" not in run_cli("simulate", "model", "--help").stdout
    out = tmp_path / "run"
    res = run_cli(*_args("tiny-kde", out), env=env)
    assert res.returncode == 0, res.stderr
    origin = json.loads((out / "config.json").read_text())["plugins"]["model"]["origin"]
    assert origin == "entry point of tinykde 0.1"


@pytest.mark.parametrize(
    "source, needle",
    [
        ("import numpy as np\nclass KDE(:\n", "SyntaxError"),
        (
            "class KDE:\n    def fit(self, data): pass\n    def state(self): return {}\n",
            "lacks sample",
        ),
        (USER_KDE.replace("[:, :, None]", "[:, :, None, None]"), "returned shape (2, 3, 1, 1)"),
        (
            USER_KDE.replace('"var": self.points.var(axis=1) + self.h**2', '"var": self.h**2'),
            "state()['var'] has shape ()",
        ),
    ],
)
def test_plugin_errors_exit_2_with_one_line_naming_the_plugin(tmp_path, source, needle):
    path = tmp_path / "bad_model.py"
    path.write_text(source)
    out = tmp_path / "out"
    res = run_cli(*_args(f"{path}:KDE", out))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad_model.py:KDE" in lines[0] and needle in lines[0], res.stderr
    assert not out.exists()
