"""The command line: JSON contracts, exit codes, one-line errors, no torch in the core."""

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest


def _one_line_error(proc, code=2):
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_check_list_json(cli):
    proc = cli("check", "--list", "--json")
    assert proc.returncode == 0
    names = [c["name"] for c in json.loads(proc.stdout)]
    assert "prop1-multivariate" in names and "theorem2-gaussian" in names
    assert len(names) == len(set(names))


def test_check_json_contract(cli):
    proc = cli("check", "alpha-symbolic", "lemma-e1-eq78", "--json", "--quick", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["name"] for r in out] == ["alpha-symbolic", "lemma-e1-eq78"]
    for r in out:
        assert {"name", "claim", "verdict", "measured", "expected"} <= set(r)
        assert r["verdict"] in ("holds", "fails", "inconclusive")
        assert isinstance(r["measured"], float) and isinstance(r["expected"], float)
        assert "eq" in r["claim"] + r["reference"]


def test_check_table_output(cli):
    proc = cli("check", "prop2", "--quick")
    assert proc.returncode == 0
    assert "verdict" in proc.stdout and "prop2-lipschitz" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("check", "no-such-check"),
        ("check", "--seed", "x"),
        ("check", "--quick", "--thorough"),
        ("alpha", "1"),
        ("alpha", "2.5"),
        ("alpha", "nan"),
        ("alpha", "10", "--dim", "0"),
        ("alpha", "ten"),
        ("jacobian", "--model", "nope", "--lam", "1"),
        ("jacobian", "--model", "student-t", "--lam", "-1"),
        ("jacobian", "--model", "student-t", "--lam", "inf"),
        ("jacobian", "--model", "student-t", "--lam", "nan"),
        ("simulate", "nothing"),
        ("frobnicate",),
    ],
)
def test_bad_input_one_line_exit_2(cli, args):
    line = _one_line_error(cli(*args))
    assert line.startswith("stability")


def test_alpha_json(cli):
    out = json.loads(cli("alpha", "1000000000", "--json").stdout)
    assert out["alpha"] < 1 and abs(out["one_minus_alpha"] - 2.5e-10) < 1e-18
    out = json.loads(cli("alpha", "10", "--dim", "2", "--json").stdout)
    assert out["alpha_d"] < out["alpha"] and out["alpha_d_method"] == "quadrature"
    out = json.loads(cli("alpha", "10", "--dim", "6", "--json").stdout)
    assert out["alpha_d"] < 1 and out["alpha_d_se"] < 1e-3


def test_jacobian_json_three_methods_agree(cli):
    proc = cli("jacobian", "--model", "mixture", "--lam", "0.05", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["lambda_max_theorem1"] < 0.5
    for row in out["rows"]:
        assert row["max_diff_implicit_vs_fd"] < 1e-6 and row["max_diff_formula_vs_fd"] < 1e-6
        assert row["spectral_radius"] < 1
    assert out["rows"][0]["theorem1_condition"] and not out["rows"][1]["theorem1_condition"]
    assert out["rows"][0]["norm_fd"] <= out["rows"][0]["theorem1_bound"]


def test_core_does_not_import_torch():
    code = (
        "import sys, stability, stability.app.cli as c; "
        "rc = c.main(['check', '--quick', 'alpha-bounds', 'prop4-fixed-point', '--json']); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_alpha_and_help_do_not_import_scipy():
    """`stability alpha N` and `--help` start in a fraction of a second because neither imports
    scipy (its array-API layer alone took 0.25 s; issue 20)."""
    code = (
        "import sys, contextlib, io, stability.app.cli as c\n"
        "rc = c.main(['alpha', '1000000000'])\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    c.main(['--help'])\n"
        "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if 'scipy' in m)[:3]\n"
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "alpha(1000000000) = 0.99999999975" in proc.stdout


# ---- the edges (issue: trust at the edges) -------------------------------------------------


def _run(*args):
    """`stability ARGS` in this process: (exit code, stdout, stderr's non-blank lines)."""
    import contextlib
    import io

    from stability.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), [ln for ln in err.getvalue().splitlines() if ln.strip()]


@pytest.mark.parametrize(
    "args,words",
    [
        (("alpha", "inf"), "n must be an integer >= 2"),  # OverflowError before
        (("alpha", "1e400"), "n must be an integer >= 2"),
        (("alpha", "1e-3", "--dim", "2"), "n must be an integer >= 2"),
        (("alpha", "10", "--dim", "inf"), "--dim must be an integer >= 1"),
        (("alpha", "1" + "0" * 400), "beyond float64"),
        (("alpha", "10", "--seed", "-1"), "--seed"),
        (("check", "prop2", "--seed", "-1"), "--seed"),
    ],
)
def test_alpha_and_check_refuse_bad_numbers_in_one_line(args, words):
    code, _, lines = _run(*args)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines


def test_alpha_refuses_a_monte_carlo_beyond_the_memory_with_the_number():
    # Reported: `stability alpha 10 --dim 100000` tried to allocate 149 GiB (MemoryError).
    code, _, lines = _run("alpha", "10", "--dim", "100000")
    assert code == 2 and len(lines) == 1
    assert re.search(r"needs about [0-9.e+]+ GiB of memory, more than the [0-9.]+ GiB", lines[0])
    from stability.app.cli import alpha_monte_carlo_bytes

    assert alpha_monte_carlo_bytes(10, 100000, 20000) > 149 * 2**30  # the draws alone


def test_alpha_in_float_notation_is_the_integer():
    code, out, _ = _run("alpha", "1e3", "--json")
    assert code == 0 and json.loads(out)["n"] == 1000
    assert _run("alpha", "1000", "--json")[1] == out


def test_a_failure_during_a_run_is_one_line(tmp_path):
    # Exit 1 with one line (the hint for --debug on the same line), in a real process.
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "big.npy", np.random.default_rng(0).standard_normal((50, 2)) * 1e152)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stability",
            "simulate",
            "gaussian",
            "--data",
            str(tmp_path / "big.npy"),
            "--runs",
            "3",
            "--iterations",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = _one_line_error(proc, 1)
    assert line.startswith("stability: failed:") and "--debug" in line


def _full_disk_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _full_disk_available(), reason="needs unshare and mount (a tmpfs)")
def test_a_full_disk_is_one_line_exit_1_naming_the_file(tmp_path):
    # A real full disk: a 200 KB tmpfs in a private mount namespace holds config.json but not
    # the blocks of the run.
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o size=200k tmpfs {mnt} && "
        f"{shlex.quote(sys.executable)} -m stability simulate gaussian --runs 2000 "
        f"--iterations 50 --workers 1 --out {mnt}/o"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    line = _one_line_error(proc, 1)
    assert "No space left on device" in line and f"{mnt}/o/" in line


def _twod_args(out, *extra):
    return [
        "simulate",
        "flow",
        "--runs",
        "1",
        "--iterations",
        "1",
        "--n",
        "20",
        "--n-eval",
        "20",
        "--lam",
        "1",
        "--epochs",
        "1",
        "--init-epochs",
        "1",
        "--ode-steps",
        "2",
        *extra,
        "--out",
        str(out),
    ]


@pytest.mark.parametrize(
    "extra,words",
    [
        (("--n-eval", "0"), "--n-eval must be >= 2"),  # ran the default size before
        (("--runs", "1000000000"), "GiB of memory"),
        (("--seed", "-3"), "--seed"),
    ],
)
def test_twod_options_refused_before_anything_is_written(tmp_path, extra, words):
    pytest.importorskip("torch")
    code, _, lines = _run(*_twod_args(tmp_path / "o", *extra))
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert not (tmp_path / "o").exists()


def _twod_folder(tmp_path):
    """A 2D run folder holding only the config.json of `_twod_args`'s run."""
    pytest.importorskip("torch")
    from simulations.twod_sim import TwoDConfig, TwoDSimulation

    out = tmp_path / "o"
    cfg = TwoDConfig(
        model="flow",
        runs=1,
        iterations=1,
        n=20,
        n_eval=20,
        lams=(1.0,),
        epochs=1,
        init_epochs=1,
        ode_steps=2,
    )
    sim = TwoDSimulation(cfg, out)
    out.mkdir()
    sim.folder.write_config()
    (out / "checkpoints").mkdir()
    return out


def _files(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_damaged_checkpoint_met_on_resume_is_refused_in_one_line(tmp_path):
    out = _twod_folder(tmp_path)
    import torch

    buf = io.BytesIO()
    torch.save({"t": torch.zeros(3)}, buf)
    (out / "checkpoints" / "t0.pt").write_bytes(buf.getvalue()[:200])
    before = _files(out)
    code, _, lines = _run(*_twod_args(out))
    assert code == 2 and len(lines) == 1, lines
    assert "checkpoints/t0.pt is damaged" in lines[0] and "delete it" in lines[0]
    assert _files(out) == before


class _Code:
    def __reduce__(self):
        return (print, ("this ran",))


def test_an_unsafe_checkpoint_met_on_resume_is_refused_without_running_it(tmp_path, capsys):
    # Reported: refused, but with an UnpicklingError traceback.
    out = _twod_folder(tmp_path)
    import torch

    torch.save({"state": _Code()}, out / "checkpoints" / "lam0.pt")
    before = _files(out)
    code, stdout, lines = _run(*_twod_args(out))
    assert code == 2 and len(lines) == 1, lines
    assert "lam0.pt holds objects other than tensors" in lines[0]
    assert "this ran" not in stdout + capsys.readouterr().out
    assert _files(out) == before


def test_a_2d_run_folder_is_locked(tmp_path):
    pytest.importorskip("torch")
    from stability.runs.lock import lock_run_folder

    out = tmp_path / "o"
    with lock_run_folder(out, command="simulate flow"):
        code, _, lines = _run(*_twod_args(out))
        assert code == 2 and len(lines) == 1
        assert f"another simulate flow is running in {str(out)!r} (pid {os.getpid()} " in lines[0]
        assert [p.name for p in out.iterdir()] == [".lock"]


def test_a_diverging_2d_fit_stops_the_run_unfinished(tmp_path):
    # Samples that left float64 (a learning rate of 1e30): exit 1 naming the iteration, no
    # summary.csv; before, the exact OT solver was handed NaN and never returned.
    pytest.importorskip("torch")
    out = tmp_path / "o"
    code, _, lines = _run(*_twod_args(out, "--lr", "1e30"))
    assert code == 1 and len(lines) == 1, lines
    assert "not finite at iteration t = 0" in lines[0]
    assert (out / "config.json").exists() and not (out / "summary.csv").exists()
