"""The Gaussian retraining simulator: exact vs sample engine, theory, determinism, bad input."""

import json
import math
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from simulations import gaussian_sim as gs
from simulations.data import make_source, population_moments
from simulations.gaussian import GaussianStats, Metrics, sample_stats, wishart_identity
from stability import rates
from stability.linalg import random_spd
from stability.runs.runfolder import read_summary
from stability.stats import mean_interval

os.environ.setdefault("POT_BACKEND_DISABLE_PYTORCH", "1")


@given(
    n1=st.integers(1, 20), n2=st.integers(1, 20), d=st.integers(1, 3), seed=st.integers(0, 10**6)
)
def test_union_of_statistics_equals_statistics_of_union(n1, n2, d, seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal((3, n1, d)), rng.standard_normal((3, n2, d)) + 2
    joined = GaussianStats.from_points(x1).union(GaussianStats.from_points(x2))
    direct = GaussianStats.from_points(np.concatenate([x1, x2], axis=1))
    assert joined.count == direct.count
    assert np.allclose(joined.mean, direct.mean) and np.allclose(joined.scatter, direct.scatter)


@pytest.mark.parametrize("d,dof", [(1, 5), (2, 2), (2, 30), (3, 1), (4, 9)])
def test_wishart_moments(d, dof):
    # E[W] = dof I and Var(W_ii) = 2 dof, Var(W_ij) = dof (i != j) for W ~ Wishart_d(dof, I).
    w = wishart_identity(60000, d, dof, np.random.default_rng(d * 100 + dof))
    comps = 2 * d
    for i in range(d):
        assert mean_interval(w[:, i, i], 0.999, comps).contains(dof)
        assert abs(w[:, i, i].var() / (2 * dof) - 1) < 0.05
    if d > 1:
        assert mean_interval(w[:, 1, 0], 0.999, comps).contains(0.0)
        assert abs(w[:, 1, 0].var() / dof - 1) < 0.05


@pytest.mark.parametrize("d,k", [(1, 7), (2, 5), (2, 2), (3, 12), (3, 3)])
def test_sample_stats_distribution_matches_points(d, k):
    # Every entry of the mean and of the scatter, for an anisotropic covariance: catches a
    # transposed factor or a wrong Wishart degree of freedom.
    rng = np.random.default_rng(k)
    cov = np.broadcast_to(random_spd(d, 50.0, rng), (4000, d, d)).copy()
    mu = np.broadcast_to(rng.standard_normal(d), (4000, d)).copy()
    exact = sample_stats(mu, cov, k, np.random.default_rng(1))
    x = mu[:, None, :] + rng.standard_normal((4000, k, d)) @ np.linalg.cholesky(cov[0]).T
    pts = GaussianStats.from_points(x)
    pairs = [(exact.mean[:, i], pts.mean[:, i]) for i in range(d)]
    pairs += [
        (exact.scatter[:, i, j], pts.scatter[:, i, j]) for i in range(d) for j in range(i + 1)
    ]
    for a, b in pairs:
        assert stats.ks_2samp(a, b).pvalue > 1e-3 / len(pairs)


def test_sample_stats_detect_a_transposed_factor():
    # Power check for the test above: L^T W L differs from L W L^T for a non-trivial L.
    rng = np.random.default_rng(0)
    d, k, r = 2, 5, 4000
    cov = np.broadcast_to(random_spd(d, 50.0, rng), (r, d, d)).copy()
    good = sample_stats(np.zeros((r, d)), cov, k, np.random.default_rng(1)).scatter
    chol = np.linalg.cholesky(cov)
    w = wishart_identity(r, d, k - 1, np.random.default_rng(2))
    bad = np.swapaxes(chol, 1, 2) @ w @ chol
    pvalues = [
        stats.ks_2samp(good[:, i, j], bad[:, i, j]).pvalue for i, j in ((0, 0), (1, 0), (1, 1))
    ]
    assert min(pvalues) < 1e-6


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_metrics_against_pot_and_direct_formulas(d):
    import ot

    rng = np.random.default_rng(d)
    a = rng.standard_normal((50, d, d))
    cov = a @ np.swapaxes(a, 1, 2) + 0.2 * np.eye(d)
    mu = rng.standard_normal((50, d))
    data_cov = random_spd(d, 10.0, rng)
    data_mean = rng.standard_normal(d)
    m = Metrics(data_mean, data_cov)(mu, cov)
    ref = ot.gaussian.bures_wasserstein_distance(
        mu,
        np.broadcast_to(data_mean, (50, d)),
        cov,
        np.broadcast_to(data_cov, (50, d, d)),
        paired=True,
    )
    assert np.allclose(m["w2"], ref, atol=1e-10)
    eig = np.linalg.eigvalsh(cov)
    assert np.allclose(m["trace_sqrt_cov"], np.sqrt(eig).sum(1))
    assert np.allclose(m["logdet_cov"], np.log(eig).sum(1))
    from stability.linalg import svec

    theta = np.concatenate(
        [mu - data_mean, svec(np.linalg.inv(cov)) - svec(np.linalg.inv(data_cov))], axis=1
    )
    assert np.allclose(m["theta_err"], np.linalg.norm(theta, axis=1))


def _block(
    engine,
    runs,
    iterations,
    n,
    lam=math.inf,
    d=1,
    policy="mix",
    estimator="unbiased",
    data="gaussian",
    seed=0,
    data_cond=1.0,
):
    cfg, _, _ = gs.GaussianSimConfig(
        dim=None if data != "gaussian" else d,
        n=n,
        lams=(lam,),
        runs=runs,
        iterations=iterations,
        engine=engine,
        policy=policy,
        estimator=estimator,
        data=data,
        block_size=runs,
        seed=seed,
        data_cond=data_cond,
    ).resolve()
    return {k: v.astype(np.float64) for k, v in gs.simulate_block(cfg, lam, 0).items()}


@pytest.mark.parametrize("engine,runs", [("exact", 60000), ("sample", 15000)])
def test_fully_synthetic_1d_closed_forms(engine, runs):
    # t = 0 is the fit on real data, so t refits later: E[sigma_t] = alpha^(t+1) sigma,
    # E[sigma_t^2] = sigma^2 (unbiased) and E[(mu_t - mu)^2] = sigma^2 (t + 1)/n.
    # sigma_t^2 is a product of t + 1 i.i.d. chi^2/(n-1) factors, too heavy-tailed at t = 20 for a
    # CLT interval on its mean: late iterations are tested through the one-step ratios, which
    # are i.i.d. with light tails (mean alpha(n) and 1).
    n, T = 10, 20
    out = _block(engine, runs, T, n)
    ts = (0, 1, 5)
    k = 3 * len(ts) + 2
    for t in ts:
        assert mean_interval(out["trace_sqrt_cov"][:, t], 0.999, k).contains(
            rates.alpha(n) ** (t + 1)
        )
        assert mean_interval(out["trace_cov"][:, t], 0.999, k).contains(1.0)
        assert mean_interval(out["mean_err2"][:, t], 0.999, k).contains((t + 1) / n)
    ratio = out["trace_sqrt_cov"][:, T] / out["trace_sqrt_cov"][:, T - 1]
    assert mean_interval(ratio, 0.999, k).contains(rates.alpha(n))
    assert mean_interval(ratio**2, 0.999, k).contains(1.0)


def test_mle_estimator_shrinks_the_variance_geometrically():
    n, T = 8, 10
    out = _block("exact", 60000, T, n, estimator="mle")
    for t in (0, 4, 10):
        assert mean_interval(out["trace_cov"][:, t], 0.999, 3).contains(((n - 1) / n) ** (t + 1))


SETTINGS = [
    dict(policy="mix", lam=0.5),
    dict(policy="mix", lam=math.inf, data_cond=100.0),
    dict(policy="mix", lam=0.5, data_cond=100.0, d=3),
    dict(policy="accumulate", lam=1.0, data_cond=100.0),
    dict(policy="fresh", lam=0.5, data_cond=100.0),
    dict(policy="mix", lam=1.0, d=1),
    dict(policy="mix", lam=1.0, data="moons"),
]


def _ids(s):
    return "-".join(f"{k}={v}" for k, v in s.items())


@pytest.mark.parametrize("setting", SETTINGS, ids=[_ids(s) for s in SETTINGS])
def test_exact_and_sample_engines_agree_in_distribution(setting):
    # Anisotropic data (condition 100) make the statistics sensitive to the orientation of the
    # covariance, so a wrong factor (L^T W L instead of L W L^T) is detected.
    kw = {**dict(d=2, n=15, runs=3000, iterations=10), **setting}
    a = _block("exact", seed=1, **kw)
    b = _block("sample", seed=2, **kw)
    metrics = ("trace_cov", "mean_err2", "logdet_cov", "w2", "theta_err")
    ts = (1, 5, 10)
    for m in metrics:
        for t in ts:
            p = stats.ks_2samp(a[m][:, t], b[m][:, t]).pvalue
            assert p > 0.001 / (len(metrics) * len(ts)), (m, t, p)


def test_agreement_test_has_power():
    # The same two-sample test does see a real difference (unbiased vs maximum likelihood).
    kw = dict(d=2, n=15, runs=3000, iterations=10, lam=math.inf)
    a = _block("exact", seed=1, **kw)
    b = _block("sample", seed=2, estimator="mle", **kw)
    assert stats.ks_2samp(a["trace_cov"][:, 10], b["trace_cov"][:, 10]).pvalue < 1e-6


def test_accumulate_subsample_runs_on_the_sample_engine_only():
    out = _block("sample", 200, 5, 20, lam=1.0, d=2, policy="accumulate-subsample")
    assert np.all(np.isfinite(out["trace_cov"]))
    with pytest.raises(ValueError, match="exact"):
        gs.GaussianSimConfig(policy="accumulate-subsample", engine="exact", lams=(1.0,)).resolve()


@pytest.mark.parametrize("name", ["moons", "moons-ffjord", "8gaussians", "8gaussians-ffjord"])
def test_population_moments_match_large_samples(name):
    # Each mean and covariance entry within a 99.99% family-wise interval of a large sample (the
    # moons' deterministic grid of angles biases finite samples by O(1/n), negligible here).
    src = make_source(name)
    x = src.sample(400000, np.random.default_rng(3))
    mean, cov = population_moments(name)
    k = 5
    for i in range(2):
        assert mean_interval(x[:, i], 0.9999, k).contains(mean[i])
    c = x - mean
    for i, j in [(0, 0), (1, 1), (0, 1)]:
        assert mean_interval(c[:, i] * c[:, j], 0.9999, k).contains(cov[i, j])


def test_same_seed_same_summary_whatever_workers_or_interruptions(tmp_path, monkeypatch):
    base = dict(dim=2, n=12, lams=(0.0, 1.0, math.inf), runs=250, iterations=6, block_size=100)
    cfg = gs.GaussianSimConfig(**base)
    gs.run_gaussian_simulation(cfg, tmp_path / "one", workers=1)
    gs.run_gaussian_simulation(cfg, tmp_path / "two", workers=2)
    # Interrupted run: the third block task raises; the rerun resumes from the saved blocks.
    calls = {"n": 0}
    real_task = gs._run_task

    def crashing(args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_task(args)

    monkeypatch.setattr(gs, "_run_task", crashing)
    with pytest.raises(KeyboardInterrupt):
        gs.run_gaussian_simulation(cfg, tmp_path / "three", workers=1)
    assert not (tmp_path / "three" / "summary.csv").exists()
    assert len(list((tmp_path / "three" / "blocks").glob("*.npz"))) == 2
    monkeypatch.setattr(gs, "_run_task", real_task)
    gs.run_gaussian_simulation(cfg, tmp_path / "three")
    one = (tmp_path / "one" / "summary.csv").read_bytes()
    assert (
        one
        == (tmp_path / "two" / "summary.csv").read_bytes()
        == (tmp_path / "three" / "summary.csv").read_bytes()
    )
    # Lambda values do not interact: a run with only lambda = 1 gives the same rows.
    gs.run_gaussian_simulation(gs.GaussianSimConfig(**{**base, "lams": (1.0,)}), tmp_path / "four")
    rows_one = [r for r in read_summary(tmp_path / "one" / "summary.csv") if r["lam"] == 1.0]
    assert rows_one == read_summary(tmp_path / "four" / "summary.csv")
    other = gs.GaussianSimConfig(**{**base, "seed": 1})
    gs.run_gaussian_simulation(other, tmp_path / "five")
    assert (tmp_path / "five" / "summary.csv").read_bytes() != one


def test_run_folder_contents(tmp_path):
    res = gs.run_gaussian_simulation(
        gs.GaussianSimConfig(dim=1, n=10, lams=(0.5, math.inf), runs=50, iterations=4),
        tmp_path / "r",
    )
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (
        cfg["options"]["seed"] == 0
        and cfg["options"]["lams"] == [0.5, "inf"]
        and "numpy" in cfg["versions"]
    )
    rows = read_summary(tmp_path / "r" / "summary.csv")
    assert {r["metric"] for r in rows} == set(gs.METRICS)
    assert {r["t"] for r in rows} == set(range(5))
    assert all(r["q05"] <= r["q50"] <= r["q95"] for r in rows)
    for f in res["figures"]:
        assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "r" / "blocks").exists()
    # A folder holding a different run is refused.
    with pytest.raises(ValueError, match="different run"):
        gs.run_gaussian_simulation(
            gs.GaussianSimConfig(dim=1, n=11, runs=50, iterations=4), tmp_path / "r"
        )


def test_data_file(tmp_path):
    pts = np.random.default_rng(0).standard_normal((40, 3)) @ np.diag([1.0, 2.0, 0.5])
    np.save(tmp_path / "x.npy", pts)
    res = gs.run_gaussian_simulation(
        gs.GaussianSimConfig(data=str(tmp_path / "x.npy"), lams=(1.0,), runs=20, iterations=3),
        tmp_path / "f",
    )
    rows = read_summary(res["summary"])
    t0 = [r for r in rows if r["t"] == 0 and r["metric"] == "mean_err2"][0]
    # n defaults to the file's rows: every run refits the whole file at t = 0 (its own moments).
    assert t0["mean"] == pytest.approx(0.0, abs=1e-10)


BAD = [
    ["--n", "1"],
    ["--lam", "-0.5"],
    ["--lam", "x"],
    ["--runs", "0"],
    ["--iterations", "0"],
    ["--dim", "0"],
    ["--policy", "nope"],
    ["--engine", "fast"],
    ["--data", "spirals"],
    ["--data", "moons", "--dim", "3"],
    ["--policy", "accumulate", "--lam", "inf"],
    ["--policy", "accumulate-subsample", "--lam", "1"],
    ["--estimator", "median"],
    ["--data-cond", "0.5"],
]


@pytest.mark.parametrize("extra", BAD, ids=[" ".join(b) for b in BAD])
def test_bad_input_exit_2_nothing_written(cli, tmp_path, extra):
    out = tmp_path / "out"
    proc = cli("simulate", "gaussian", "--out", out, "--runs", "10", "--iterations", "2", *extra)
    assert proc.returncode == 2, proc.stderr
    assert (
        len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1
        and "Traceback" not in proc.stderr
    )
    assert not out.exists()


def test_bad_data_files(cli, tmp_path):
    bad = np.ones((10, 2))
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).standard_normal((10, 2)))
    (tmp_path / "junk.npy").write_text("not an array")
    for args in (
        ["--data", tmp_path / "nan.npy"],
        ["--data", tmp_path / "ok.npy", "--dim", "3"],
        ["--data", tmp_path / "missing.npy"],
        ["--data", tmp_path / "junk.npy"],
        ["--data", tmp_path / "ok.npy", "--n", "11"],
    ):
        proc = cli(
            "simulate",
            "gaussian",
            "--out",
            tmp_path / "o",
            "--runs",
            "5",
            "--iterations",
            "2",
            *args,
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert not (tmp_path / "o").exists()


def test_cli_json(cli, tmp_path):
    proc = cli(
        "simulate",
        "gaussian",
        "--dim",
        "2",
        "--n",
        "20",
        "--lam",
        "0",
        "inf",
        "--runs",
        "100",
        "--iterations",
        "5",
        "--out",
        tmp_path / "j",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["final"]) == {"0.0", "inf"}
    assert (
        out["final"]["inf"]["trace_sqrt_cov"]["mean"]
        < out["final"]["0.0"]["trace_sqrt_cov"]["mean"]
    )
    # Rerunning the same command is idempotent and prints the same result.
    again = cli(
        "simulate",
        "gaussian",
        "--dim",
        "2",
        "--n",
        "20",
        "--lam",
        "0",
        "inf",
        "--runs",
        "100",
        "--iterations",
        "5",
        "--out",
        tmp_path / "j",
        "--json",
    )
    assert json.loads(again.stdout)["final"] == out["final"]
