"""The plugin-model engine (simulations.plugin_sim): a model from a file outside the package in a
run folder, identical numbers whatever the workers or interruptions, errors before writing."""

import json
import math

import numpy as np
import ot
import pytest

from simulations import plugin_sim
from simulations.plugin_sim import PluginSimConfig, run_plugin_simulation, wasserstein_pair
from stability.errors import UsageError
from stability.runs.runfolder import read_summary

# A researcher's 1D kernel density estimate, written outside the package (batched over runs).
USER_KDE = '''
"""A 1D Gaussian KDE: a model plugin written outside the package."""
import time

import numpy as np


class KDE:
    def __init__(self, bandwidth=0.3, delay=0.0):
        self.h = float(bandwidth)
        self.delay = float(delay)  # seconds per fit (tests use it to kill a run midway)

    def fit(self, data):
        time.sleep(self.delay)
        self.points = np.array(data.x[:, :, 0], dtype=float)  # (runs, n)

    def sample(self, k, rng):
        runs, n = self.points.shape
        idx = rng.integers(0, n, size=(runs, k))
        centres = np.take_along_axis(self.points, idx, axis=1)
        return (centres + self.h * rng.standard_normal((runs, k)))[:, :, None]

    def state(self):
        return {"mean": self.points.mean(axis=1), "var": self.points.var(axis=1) + self.h**2}

    def metrics(self, heldout):
        return {"variance": self.state()["var"]}
'''


@pytest.fixture
def user_kde(tmp_path):
    path = tmp_path / "plugins" / "user_kde.py"
    path.parent.mkdir()
    path.write_text(USER_KDE)
    return path


def small(model, **kw):
    base = dict(model=model, dim=1, n=40, lams=(0.0, 1.0, math.inf), iterations=4, runs=6)
    base.update(block_size=4, **kw)
    return PluginSimConfig(**base)


def test_a_model_from_a_file_runs_in_a_run_folder(user_kde, tmp_path):
    out = tmp_path / "run"
    result = run_plugin_simulation(small(f"{user_kde}:KDE"), out)
    rows = read_summary(out / "summary.csv")
    assert {r["metric"] for r in rows} == {"w1", "w2", "param_distance", "variance"}
    assert {r["t"] for r in rows} == set(range(5)) and {r["runs"] for r in rows} == {6}
    at = {(r["lam"], r["metric"], r["t"]): r for r in rows}
    for metric in ("w1", "variance"):  # t = 0 is one model per block, shared by every lambda
        assert at[(0.0, metric, 0)]["mean"] == at[(math.inf, metric, 0)]["mean"]
    assert all(at[(0.0, "param_distance", t)]["mean"] == 0 for t in range(5))  # lam = 0: refit
    assert at[(math.inf, "param_distance", 4)]["mean"] > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["command"] == "simulate model" and cfg["options"]["model"].endswith(
        "user_kde.py:KDE"
    )
    assert (
        cfg["plugins"]["model"]["origin"] == "file" and len(cfg["plugins"]["model"]["sha256"]) == 64
    )
    names = {p.rsplit("/", 1)[1] for p in result["figures"]}
    assert names == {"w1.png", "w2.png", "param_distance.png", "variance.png", "samples.png"}
    assert all((out / "figures" / n).stat().st_size > 1000 for n in names)
    assert not (out / "checkpoints").exists() and not (out / ".lock").exists()


def test_workers_do_not_change_the_numbers(user_kde, tmp_path):
    run_plugin_simulation(small(f"{user_kde}:KDE"), tmp_path / "one")
    run_plugin_simulation(small(f"{user_kde}:KDE"), tmp_path / "two", workers=2)
    a = (tmp_path / "one" / "summary.csv").read_bytes()
    assert a == (tmp_path / "two" / "summary.csv").read_bytes()


def test_an_interrupted_run_resumes_with_identical_numbers(user_kde, tmp_path, monkeypatch):
    run_plugin_simulation(
        small(f"{user_kde}:KDE", policy="accumulate-subsample", lams=(0.5, 1.0)), tmp_path / "a"
    )
    calls = {"n": 0}
    evaluate = plugin_sim.evaluate

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 9:  # in the middle of the second lambda
            raise KeyboardInterrupt
        return evaluate(*args)

    monkeypatch.setattr(plugin_sim, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_plugin_simulation(
            small(f"{user_kde}:KDE", policy="accumulate-subsample", lams=(0.5, 1.0)), tmp_path / "b"
        )
    assert list((tmp_path / "b" / "checkpoints").glob("lam*.pkl"))
    monkeypatch.setattr(plugin_sim, "evaluate", evaluate)
    run_plugin_simulation(
        small(f"{user_kde}:KDE", policy="accumulate-subsample", lams=(0.5, 1.0)), tmp_path / "b"
    )
    a = (tmp_path / "a" / "summary.csv").read_bytes()
    assert a == (tmp_path / "b" / "summary.csv").read_bytes()


BROKEN = {
    "syntax.py": (
        "def f(:\n",
        "KDE",
        r"model plugin '.*syntax.py:KDE': cannot import .*SyntaxError",
    ),
    "nosample.py": (
        "class KDE:\n    def fit(self, d): pass\n    def state(self): return {}\n",
        "KDE",
        r"model plugin '.*nosample.py:KDE' is not a model: it lacks sample",
    ),
    "shape.py": (
        USER_KDE.replace("[:, :, None]", "[:1, :, None]"),
        "KDE",
        r"model plugin '.*shape.py:KDE': sample\(3, rng\) returned shape \(1, 3, 1\), expected \(2, 3, 1\)",
    ),
    "unpicklable.py": (
        USER_KDE.replace(
            "self.h = float(bandwidth)", "self.h = float(bandwidth)\n        self.f = lambda: 0"
        ),
        "KDE",
        r"model plugin '.*unpicklable.py:KDE': its model cannot be pickled for checkpoints",
    ),
    "fitfails.py": (
        USER_KDE.replace("time.sleep(self.delay)", "raise ValueError('no data')"),
        "KDE",
        r"model plugin '.*fitfails.py:KDE': fit on 40 points per run failed: ValueError: no data",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_plugin_is_one_usage_error_before_anything_is_written(tmp_path, name):
    source, attr, message = BROKEN[name]
    (tmp_path / name).write_text(source)
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=message) as info:
        run_plugin_simulation(small(f"{tmp_path / name}:{attr}"), out)
    assert "\n" not in str(info.value) and not out.exists()


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(params=("width=2",)), r"model plugin .*KDE\(width=2\) failed: TypeError"),
        (dict(policy="curate", policy_params=("reward=nope",)), "unknown reward 'nope'"),
        (
            dict(policy="curate", policy_params=("reward={dir}/r.py:flat",)),
            r"reward '.*r.py:flat' returned shape \(160,\), expected \(2, 80\)",
        ),
        (dict(data="mixture", dim=3), "--dim applies to the built-in gaussian data"),
        (dict(data="gaussian", data_params=("std=2",)), "--data-param applies to data plugins"),
        (dict(data="nowhere"), "unknown data 'nowhere'; registered: categorical, linear"),
        (dict(lams=(1.0, 1.0)), "lambda values must be distinct"),
        (dict(params=("oops",)), "--param: expected KEY=VALUE, got 'oops'"),
    ],
)
def test_bad_options_are_usage_errors_before_anything_is_written(user_kde, tmp_path, kw, message):
    (tmp_path / "r.py").write_text("def flat(x, real):\n    return x.ravel()\n")
    if "policy_params" in kw:
        kw["policy_params"] = tuple(p.format(dir=tmp_path) for p in kw["policy_params"])
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=message):
        run_plugin_simulation(small(f"{user_kde}:KDE", **kw), out)
    assert not out.exists()


def test_a_changed_plugin_file_cannot_resume_a_run(user_kde, tmp_path):
    out = tmp_path / "run"
    run_plugin_simulation(small(f"{user_kde}:KDE"), out)
    (out / "summary.csv").unlink()  # as if the run had been interrupted
    user_kde.write_text(USER_KDE.replace("self.h**2", "2 * self.h**2"))
    with pytest.raises(UsageError, match="model plugin .* changed since this run started"):
        run_plugin_simulation(small(f"{user_kde}:KDE"), out)


@pytest.mark.parametrize(
    "kw, metrics",
    [
        (
            dict(model="gmm", data="mixture", dim=None, policy="curate", lams=(0.5,)),
            {"w1", "w2", "param_distance", "nll"},
        ),
        (
            dict(model="ngram", data="categorical", dim=None, policy="accumulate", lams=(1.0,)),
            {"param_distance", "tv", "gini_simpson", "support", "entropy"},
        ),
        (
            dict(model="linear-regression", data="linear", dim=None, data_params=("dim=3",)),
            {"param_distance", "test_mse"},
        ),
        (
            dict(model="kde", policy="fresh", dim=1, lams=(0.5,), policy_params=("n_fresh=10",)),
            {"w1", "w2", "param_distance", "trace_cov"},
        ),
        (
            dict(model="kde", policy="verify", dim=2, lams=(1.0,)),
            {"w1", "w2", "param_distance", "trace_cov"},
        ),
        (
            dict(model="gaussian", policy="self-correct", dim=1),
            {"w1", "w2", "param_distance", "mean_x1", "trace_cov"},
        ),
    ],
)
def test_shipped_models_and_policies_run_through_the_engine(tmp_path, kw, metrics):
    config = small(kw.pop("model"), **kw)
    run_plugin_simulation(config, tmp_path / "run")
    rows = read_summary(tmp_path / "run" / "summary.csv")
    assert {r["metric"] for r in rows} == metrics
    assert all(np.isfinite(r["mean"]) for r in rows)


def test_a_state_that_changes_shape_has_no_parameter_distance(user_kde, tmp_path):
    user_kde.write_text(
        USER_KDE.replace('"mean": self.points.mean(axis=1)', '"points": self.points')
    )
    run_plugin_simulation(
        small(f"{user_kde}:KDE", policy="accumulate", lams=(1.0,)), tmp_path / "r"
    )
    rows = read_summary(tmp_path / "r" / "summary.csv")
    dist = {r["t"]: r["mean"] for r in rows if r["metric"] == "param_distance"}
    assert dist[0] == 0 and all(math.isnan(dist[t]) for t in range(1, 5))


@pytest.mark.parametrize("dim, m", [(1, 60), (2, 60), (2, 200)])
def test_wasserstein_pair_is_exact_optimal_transport(dim, m):
    rng = np.random.default_rng(0)
    gen, ref = rng.standard_normal((3, m, dim)), 1.5 + rng.standard_normal((3, m, dim))
    w1, w2 = wasserstein_pair(gen, ref)
    u = ot.unif(m)
    for r in range(3):
        assert w1[r] == pytest.approx(ot.emd2(u, u, ot.dist(gen[r], ref[r], "euclidean")), rel=1e-9)
        w2_ref = math.sqrt(ot.emd2(u, u, ot.dist(gen[r], ref[r], "sqeuclidean")))
        assert w2[r] == pytest.approx(w2_ref, rel=1e-9)
