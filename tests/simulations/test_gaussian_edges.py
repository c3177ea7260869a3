"""simulate gaussian at the edges: malformed data files, sizes beyond the memory, singular
training sets, numbers that leave float64, a locked folder, permissions, damaged blocks, and
the choice of worker processes (issue: trust at the edges). Each reviewer case fails on the
code before it."""

import os

import numpy as np
import pytest

from simulations import gaussian_sim as gs


def _one_line(proc, code):
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def _simulate(*args):
    """`stability simulate gaussian ARGS` in this process: (exit code, stderr's lines)."""
    import contextlib
    import io

    from stability.app.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["simulate", "gaussian", *map(str, args)])
    return code, [ln for ln in err.getvalue().splitlines() if ln.strip()]


def _malformed(tmp_path):
    files = {}
    np.save(tmp_path / "no_columns.npy", np.zeros((10, 0)))
    files["no_columns"] = tmp_path / "no_columns.npy"
    with open(tmp_path / "archive.npy", "wb") as f:  # an .npz saved under a .npy name
        np.savez(f, x=np.ones((10, 2)))
    files["archive"] = tmp_path / "archive.npy"
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 5, dtype=object), allow_pickle=True)
    files["objects"] = tmp_path / "objects.npy"
    np.save(tmp_path / "complex.npy", np.ones((10, 2), dtype=complex))
    files["complex"] = tmp_path / "complex.npy"
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).standard_normal((40, 2)))
    data = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(data[:-100])
    files["truncated"] = tmp_path / "truncated.npy"
    np.save(tmp_path / "huge.npy", np.random.default_rng(0).standard_normal((50, 2)) * 1e300)
    files["overflow"] = tmp_path / "huge.npy"
    np.save(tmp_path / "tiny.npy", np.random.default_rng(0).standard_normal((50, 2)) * 1e-160)
    files["underflow"] = tmp_path / "tiny.npy"
    return files


@pytest.mark.parametrize(
    "name", ["no_columns", "archive", "objects", "complex", "truncated", "overflow", "underflow"]
)
def test_malformed_data_files_are_refused_in_one_line(tmp_path, name):
    # Reported: an (N, 0) array gave an IndexError, an .npz under a .npy name an AttributeError
    # (both exit 1); values near 1e300 ran and wrote a summary full of NaN.
    path = _malformed(tmp_path)[name]
    code, lines = _simulate(
        "--data", path, "--runs", "5", "--iterations", "2", "--out", tmp_path / "o"
    )
    assert code == 2 and len(lines) == 1 and path.name in lines[0], lines
    assert not (tmp_path / "o").exists()


def test_a_negative_seed_is_refused_naming_the_option(tmp_path):
    # Reported: exit 1 after config.json was written, with numpy's "expected non-negative
    # integer", which names no option.
    code, lines = _simulate("--seed", "-1", "--runs", "5", "--out", tmp_path / "o")
    assert code == 2 and len(lines) == 1 and "--seed" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("--runs", "1000000000"),
        ("--dim", "10000", "--n", "20000"),
        ("--dim", "3", "--n", "1000000000000", "--engine", "sample"),
    ],
    ids=["runs", "dim", "sample-points"],
)
def test_runs_beyond_the_memory_are_refused_with_the_numbers(tmp_path, args):
    # Reported: --runs 1000000000 and --dim 10000 were accepted (and ran until killed).
    code, lines = _simulate(*args, "--out", tmp_path / "o")
    assert code == 2 and len(lines) == 1, lines
    assert "GiB of memory" in lines[0] and "available" in lines[0]
    assert not (tmp_path / "o").exists()


def test_the_memory_estimate_grows_with_what_the_run_holds():
    cfg = gs.GaussianSimConfig(dim=2, n=10, lams=(1.0,), runs=10**5, iterations=100)
    base = gs.memory_estimate(cfg, 1)
    # one metric of every run, gathered, transposed and partitioned: at least 3 x 8 x R x (T+1)
    assert base >= 3 * 8 * 10**5 * 101
    assert gs.memory_estimate(cfg, 2) == 2 * base
    wide = gs.GaussianSimConfig(dim=1000, n=2000, lams=(1.0,), runs=1000, iterations=1)
    assert gs.memory_estimate(wide, 1) >= 8 * 1000 * 1000**2  # a (B, d, d) array at least


def test_fewer_points_than_dimensions_are_refused(tmp_path):
    # Reported: n <= d ran to the end with log det = -inf and an infinite precision everywhere.
    code, lines = _simulate("--n", "3", "--dim", "5", "--runs", "5", "--out", tmp_path / "o")
    assert code == 2 and len(lines) == 1 and "singular" in lines[0]
    assert not (tmp_path / "o").exists()


def test_numbers_leaving_float64_stop_the_run_unfinished(tmp_path):
    # Data whose covariance is finite but whose determinant overflows: the run stops at the fit
    # on the real data (t = 0) with exit 1, names the iteration and lambda, and writes no
    # summary.csv, so collect and sweeps do not take the folder for a finished run.
    np.save(tmp_path / "big.npy", np.random.default_rng(0).standard_normal((50, 2)) * 1e152)
    out = tmp_path / "o"
    code, lines = _simulate(
        "--data",
        tmp_path / "big.npy",
        "--lam",
        "1",
        "--runs",
        "5",
        "--iterations",
        "2",
        "--workers",
        "1",
        "--out",
        out,
    )
    assert code == 1 and len(lines) == 1, lines
    assert "iteration t = 0" in lines[0] and "lambda = 1.0" in lines[0]
    assert (out / "config.json").exists() and not (out / "summary.csv").exists()
    from stability.runs.collect import find_runs

    assert find_runs([out])[0] == []


def test_first_nonfinite_allows_only_a_collapse_after_t0():
    v = {m: np.ones((3, 4)) for m in gs.METRICS}
    assert gs.first_nonfinite(v) is None
    v["logdet_cov"][1, 2] = -np.inf  # a collapsed covariance at t = 2
    v["theta_err"][0, 3] = np.inf
    assert gs.first_nonfinite(v) is None
    v["logdet_cov"][2, 0] = -np.inf  # at t = 0: the fit on real data underflowed
    assert gs.first_nonfinite(v) == (0, "logdet_cov", 2, -np.inf)
    v["logdet_cov"][2, 0] = 1.0
    v["w2"][1, 1] = np.nan
    assert gs.first_nonfinite(v)[:3] == (1, "w2", 1)


def test_a_second_run_on_the_same_folder_is_refused_naming_the_first(tmp_path):
    # Reported: two runs on one --out at once; one died with a FileNotFoundError traceback.
    from stability.runs.lock import lock_run_folder

    out = tmp_path / "o"
    with lock_run_folder(out, command="simulate gaussian"):
        code, lines = _simulate("--runs", "5", "--iterations", "2", "--out", out)
        assert code == 2 and len(lines) == 1
        assert (
            f"another simulate gaussian is running in {str(out)!r} (pid {os.getpid()} " in lines[0]
        )
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written


def test_run_folder_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        gs.run_gaussian_simulation(gs.GaussianSimConfig(runs=5, iterations=2), tmp_path / "o")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert len(files) == 8  # config.json, summary.csv, six figures
    assert {p.stat().st_mode & 0o777 for p in files} == {0o640}


def test_a_damaged_block_is_recomputed_on_resume(tmp_path, monkeypatch):
    cfg = gs.GaussianSimConfig(dim=2, n=12, lams=(0.5,), runs=30, iterations=3, block_size=10)
    gs.run_gaussian_simulation(cfg, tmp_path / "ref", workers=1)
    # An interrupted run, then a block file damaged (a machine crash before the data reached
    # the disk) and another one truncated: the resumed run recomputes both.
    calls = {"n": 0}
    real_task = gs._run_task

    def crashing(args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_task(args)

    monkeypatch.setattr(gs, "_run_task", crashing)
    with pytest.raises(KeyboardInterrupt):
        gs.run_gaussian_simulation(cfg, tmp_path / "o", workers=1)
    monkeypatch.setattr(gs, "_run_task", real_task)
    blocks = sorted((tmp_path / "o" / "blocks").glob("*.npz"))
    assert len(blocks) == 2
    blocks[0].write_bytes(b"\0" * blocks[0].stat().st_size)
    blocks[1].write_bytes(blocks[1].read_bytes()[:-50])
    gs.run_gaussian_simulation(cfg, tmp_path / "o", workers=2)
    assert (tmp_path / "o" / "summary.csv").read_bytes() == (
        tmp_path / "ref" / "summary.csv"
    ).read_bytes()


def test_choose_workers_uses_the_cores_and_checks_a_given_number(monkeypatch):
    from simulations import gaussian_sim

    cfg, _, _ = gs.GaussianSimConfig(runs=10**5, iterations=100, lams=(1.0,)).resolve()
    monkeypatch.setattr(gaussian_sim, "available_cores", lambda: 3)
    assert gs.choose_workers(cfg, None, tasks=20) == 3
    small, _, _ = gs.GaussianSimConfig(runs=5000, iterations=2).resolve()
    assert gs.choose_workers(small, None, tasks=20) == 1  # not worth starting processes
    assert gs.choose_workers(cfg, None, tasks=2) == 2  # no more processes than blocks
    monkeypatch.setattr(gaussian_sim, "available_memory", lambda: gs.memory_estimate(cfg, 1) * 2.5)
    assert gs.choose_workers(cfg, None, tasks=20) == 2  # as many as the memory holds
    assert gs.choose_workers(cfg, 5, tasks=20) == 5
    with pytest.raises(ValueError, match="--workers"):
        gs.choose_workers(cfg, 0, tasks=20)
