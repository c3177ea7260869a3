"""2D flow-matching and DDPM retraining: ensembles, samplers, OT pairing, loop, resume, CLI."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchcfm")
pytest.importorskip("torchdiffeq")

from simulations import twod_sim as tw  # noqa: E402
from simulations.ensemble import EnsembleMLP, RunStreams, minibatch_indices  # noqa: E402
from simulations.models2d import DiffusionModel, FlowModel, TrainConfig, exact_ot_pairs  # noqa: E402
from stability.loop import PointSet  # noqa: E402
from stability.runs.runfolder import read_summary  # noqa: E402
from stability.stats import mean_interval  # noqa: E402

TINY = dict(
    n=64,
    runs=2,
    iterations=2,
    epochs=2,
    init_epochs=6,
    batch=32,
    ode_steps=5,
    diffusion_steps=25,
    n_eval=64,
    lams=(0.0, 1.0, math.inf),
)


def _linear_layers(net: EnsembleMLP, r: int, dtype=torch.float64) -> list:
    """Run r's layers of the ensemble as separate torch.nn.Linear modules (weight = w[r].T)."""
    layers = []
    with torch.no_grad():
        for w, b in zip(net.weights, net.biases):
            lin = torch.nn.Linear(w.shape[1], w.shape[2], dtype=dtype)
            lin.weight.copy_(w[r].T)
            lin.bias.copy_(b[r, 0])
            layers.append(lin)
    return layers


def _selu_chain(layers: list, h: torch.Tensor) -> torch.Tensor:
    """Linear - SELU - ... - Linear, one run at a time (the reference for the ensemble)."""
    for i, lin in enumerate(layers):
        h = lin(h)
        if i < len(layers) - 1:
            h = torch.nn.functional.selu(h)
    return h


def test_ensemble_matches_torchcfm_mlp():
    # Forward and gradients of every run against torchcfm's own MLP holding that run's weights.
    from torchcfm.models import MLP

    ens = EnsembleMLP(3, 3, 2, 16)
    ens.reset_parameters(RunStreams(0, (1,), range(3)))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 10, 3, generator=g)
    up = torch.randn(3, 10, 2, generator=g)
    out = ens(x)
    (out * up).sum().backward()
    for r in range(3):
        ref = MLP(dim=2, time_varying=True, w=16)
        linears = [m for m in ref.net if isinstance(m, torch.nn.Linear)]
        assert len(linears) == len(ens.weights)
        with torch.no_grad():
            for lin, w, b in zip(linears, ens.weights, ens.biases):
                lin.weight.copy_(w[r].T)
                lin.bias.copy_(b[r, 0])
        y = ref(x[r])
        assert torch.allclose(y, out[r], atol=1e-6)
        (y * up[r]).sum().backward()
        for lin, w, b in zip(linears, ens.weights, ens.biases):
            assert torch.allclose(lin.weight.grad.T, w.grad[r], atol=1e-5)
            assert torch.allclose(lin.bias.grad, b.grad[r, 0], atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 33, 3, 2, 7), (2, 300, 3, 2, 64), (1, 5, 4, 3, 16)])
def test_float32_ensemble_matches_independent_float64_networks_with_all_gradients(shape):
    # Reference: each run as its own chain of torch.nn.Linear + SELU in float64, differentiated
    # separately; the float32 ensemble (batched baddbmm, in-place SELU) must agree to float32
    # rounding in the output and in the gradients of the input and of every parameter.
    runs, n, in_dim, out_dim, width = shape
    net = EnsembleMLP(runs, in_dim, out_dim, width)
    net.reset_parameters(RunStreams(3, (1,), range(runs)))
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(runs, n, in_dim, generator=g) * 3).requires_grad_()
    up = torch.randn(runs, n, out_dim, generator=g)
    y = net(x)
    assert y.dtype == torch.float32 and y.shape == (runs, n, out_dim)
    (y * up).sum().backward()
    for r in range(runs):
        layers = _linear_layers(net, r)
        x64 = x[r].detach().double().requires_grad_()
        h = _selu_chain(layers, x64)
        scale = float(h.detach().abs().max())
        assert torch.allclose(y[r].detach().double(), h.detach(), rtol=0, atol=2e-6 * scale)
        (h * up[r].double()).sum().backward()
        pairs = [(x.grad[r], x64.grad)]
        for lin, w, b in zip(layers, net.weights, net.biases):
            pairs += [(w.grad[r], lin.weight.grad.T), (b.grad[r, 0], lin.bias.grad)]
        for mine, ref in pairs:
            scale = float(ref.abs().max())
            assert scale > 0
            assert torch.allclose(mine.double(), ref, rtol=0, atol=2e-6 * scale)


def test_ensemble_runs_in_float64_and_keeps_nan_visible():
    # Any dtype: the float64 ensemble equals the float64 per-run layers to float64 rounding.
    net = EnsembleMLP(2, 3, 2, 8).double()
    net.reset_parameters(RunStreams(4, (1,), range(2)))
    x = torch.randn(2, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = net(x)
    assert y.dtype == torch.float64
    for r in range(2):
        assert torch.allclose(
            y[r], _selu_chain(_linear_layers(net, r), x[r]), rtol=1e-12, atol=1e-12
        )
    # A diverged run (NaN input) shows as NaN in its own outputs, and only there.
    x[1, 0, 0] = float("nan")
    y = net(x)
    assert torch.isnan(y[1, 0]).all()
    assert torch.isfinite(y[0]).all() and torch.isfinite(y[1, 1:]).all()


@pytest.mark.parametrize("kind", ["flow", "diffusion"])
def test_ensemble_training_equals_independent_trainings(kind):
    # R runs trained together end where each run trained alone ends: one Adam over stacked
    # parameters is R Adams, and each run draws from its own stream.
    train = TrainConfig(init_steps=7, steps=3, batch=16, lr=1e-2, width=8)
    data = np.random.default_rng(0).standard_normal((3, 40, 2))

    def make(runs):
        if kind == "flow":
            return FlowModel(runs, 5, train, "otcfm", 0.1, "euler", 4)
        return DiffusionModel(runs, 5, train, 30)

    together = make([0, 1, 2])
    together.fit(PointSet(data))
    for r in range(3):
        alone = make([r])
        alone.fit(PointSet(data[r : r + 1]))
        assert torch.allclose(alone.params()[0], together.params()[r], atol=1e-5)


def test_exact_ot_pairs_are_an_optimal_assignment():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(1)
    x0, x1 = rng.standard_normal((50, 2)), rng.standard_normal((50, 2)) * 2 + 1
    i, j = exact_ot_pairs(x0, x1, rng.random(2000))
    cost = ((x0[:, None] - x1[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    matched = dict(zip(rows, cols))
    # With continuous random points the optimal assignment is unique: every drawn pair is one
    # of its edges, and the 2000 draws (with replacement, as torchcfm) cover the rows uniformly.
    assert all(matched[a] == b for a, b in zip(i, j))
    counts = np.bincount(i, minlength=50)
    assert counts.min() > 10 and counts.max() < 80


def test_minibatches_are_epochs_without_replacement():
    idx = minibatch_indices(RunStreams(0, (2,), range(2)), 10, 4, 5)
    assert idx.shape == (5, 2, 4)
    first_epoch = idx[:2, 0].ravel()
    assert len(set(first_epoch)) == 8  # two batches of one epoch: no repeats


class _GaussianVelocity(torch.nn.Module):
    """Exact marginal velocity of the independent coupling N(0, I) -> N(m, s^2 I), sigma = 0."""

    def __init__(self, m, s):
        super().__init__()
        self.m, self.s = torch.tensor(m, dtype=torch.float32), s

    def forward(self, inp):
        x, t = inp[..., :2], inp[..., 2:]
        var = (1 - t) ** 2 + t**2 * self.s**2
        c = (t * self.s**2 - (1 - t)) / var
        return self.m + c * (x - t * self.m)


def test_flow_sampler_on_an_analytic_velocity():
    m, s = np.array([1.5, -0.5]), 0.7
    train = TrainConfig(init_steps=1, steps=1, width=4)
    # dopri5 solves the ODE, whose flow maps N(0, I) exactly onto N(m, s^2 I).
    model = FlowModel([0, 1], 0, train, "cfm", 0.0, "dopri5", 1)
    model.net = _GaussianVelocity(m, s)
    x = model.sample(20000, RunStreams(0, (3,), range(2))).x.reshape(-1, 2)
    for k in range(2):
        assert mean_interval(x[:, k], 0.999, 4).contains(m[k])
        assert mean_interval((x[:, k] - m[k]) ** 2, 0.999, 4).contains(s**2)
    # Euler's map is affine for this field: its exact output moments follow a recursion.
    steps = 20
    model = FlowModel([0, 1], 0, train, "cfm", 0.0, "euler", steps)
    model.net = _GaussianVelocity(m, s)
    x = model.sample(20000, RunStreams(0, (3,), range(2))).x.reshape(-1, 2)
    mean, var, h = np.zeros(2), 1.0, 1.0 / steps
    for k in range(steps):
        t = k * h
        c = (t * s**2 - (1 - t)) / ((1 - t) ** 2 + t**2 * s**2)
        mean = mean + h * (m + c * (mean - t * m))
        var = (1 + h * c) ** 2 * var
    for k in range(2):
        assert mean_interval(x[:, k], 0.999, 4).contains(mean[k])
        assert mean_interval((x[:, k] - mean[k]) ** 2, 0.999, 4).contains(var)
    assert abs(math.sqrt(var) / s - 1) > 1e-3  # the Euler bias is real, and the test sees it


class _GaussianEps(torch.nn.Module):
    """Exact noise prediction E[eps | x_t] for data N(m, s^2 I)."""

    def __init__(self, model, m, s):
        super().__init__()
        self.ab, self.T, self.m, self.s = model.alpha_bar, model.T, torch.tensor(m), s

    def forward(self, inp):
        x, tin = inp[..., :2].double(), inp[..., 2:]
        t = torch.round(tin * self.T).long()[..., 0]
        ab = self.ab[t][..., None]
        return ((1 - ab).sqrt() / (ab * self.s**2 + 1 - ab) * (x - ab.sqrt() * self.m)).float()


def test_ddpm_sampler_matches_its_linear_gaussian_recursion():
    # With an affine eps-predictor the ancestral chain is a linear Gaussian recursion: its output
    # mean and variance follow exactly, and the simulated moments must fall in their intervals.
    m, s = [2.0, -1.0], 0.5
    train = TrainConfig(init_steps=1, steps=1, width=4)
    model = DiffusionModel([0, 1], 0, train, 200)
    model.net = _GaussianEps(model, m, s)
    x = model.sample(20000, RunStreams(0, (4,), range(2))).x.reshape(-1, 2)
    mean, var = np.zeros(2), np.ones(2)
    for t in range(model.T - 1, -1, -1):
        b, a, ab = float(model.betas[t]), float(model.alphas[t]), float(model.alpha_bar[t])
        g = math.sqrt(1 - ab) / (ab * s**2 + 1 - ab)
        coef = (1 - b / math.sqrt(1 - ab) * g) / math.sqrt(a)
        shift = (b / math.sqrt(1 - ab) * g * math.sqrt(ab) * np.array(m)) / math.sqrt(a)
        mean, var = coef * mean + shift, coef**2 * var + (b if t > 0 else 0.0)
    for k in range(2):
        assert mean_interval(x[:, k], 0.999, 4).contains(mean[k])
        ci_var = mean_interval((x[:, k] - x[:, k].mean()) ** 2, 0.999, 4)
        assert ci_var.contains(var[k])
    assert np.allclose(mean, m, atol=0.05) and np.allclose(np.sqrt(var), s, rtol=0.1)


@pytest.fixture(scope="module")
def tiny_flow(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow") / "run"
    return tw.TwoDSimulation(tw.TwoDConfig(model="flow", **TINY), out).run(), out


def test_run_folder(tiny_flow):
    result, out = tiny_flow
    rows = read_summary(out / "summary.csv")
    metrics = {r["metric"] for r in rows}
    assert set(tw.METRICS_2D) | set(tw.FLOOR_METRICS) <= metrics
    assert {r["lam"] for r in rows} == {0.0, 1.0, math.inf}
    pd0 = [r for r in rows if r["metric"] == "param_distance" and r["t"] == 0]
    assert all(r["mean"] == 0 for r in pd0)
    w2_0 = {r["lam"]: r["mean"] for r in rows if r["metric"] == "w2" and r["t"] == 0}
    assert len(set(w2_0.values())) == 1  # t = 0 is shared by every lambda
    for f in result["figures"]:
        assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["command"] == "simulate flow" and cfg["options"]["fm"] == "otcfm"


def test_resume_after_a_crash_gives_the_same_numbers(tiny_flow, tmp_path, monkeypatch):
    _, reference = tiny_flow
    calls = {"n": 0}
    real_save = tw._save

    def crashing(path, obj):
        calls["n"] += 1
        if calls["n"] == 3:  # t0, the joint group's t1, then crash at its t2
            raise KeyboardInterrupt
        return real_save(path, obj)

    monkeypatch.setattr(tw, "_save", crashing)
    with pytest.raises(KeyboardInterrupt):
        tw.TwoDSimulation(tw.TwoDConfig(model="flow", **TINY), tmp_path / "r").run()
    monkeypatch.setattr(tw, "_save", real_save)
    assert not (tmp_path / "r" / "summary.csv").exists()
    tw.TwoDSimulation(tw.TwoDConfig(model="flow", **TINY), tmp_path / "r").run()
    assert (tmp_path / "r" / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()


def test_seed_changes_the_numbers(tiny_flow, tmp_path):
    _, reference = tiny_flow
    tw.TwoDSimulation(tw.TwoDConfig(model="flow", seed=1, **TINY), tmp_path / "s").run()
    assert (tmp_path / "s" / "summary.csv").read_bytes() != (reference / "summary.csv").read_bytes()


def test_diffusion_resume_with_an_accumulating_pool(tmp_path, monkeypatch):
    # The pool of accumulated synthetic data and the fresh-data streams are part of the
    # checkpoint: a crash in the middle of a lambda resumes to the uninterrupted numbers.
    kw = dict(
        model="diffusion",
        data="8gaussians",
        policy="accumulate",
        **{**TINY, "lams": (0.5, 1.0), "iterations": 3},
    )
    tw.TwoDSimulation(tw.TwoDConfig(**kw), tmp_path / "ref").run()
    calls = {"n": 0}
    real_save = tw._save

    def crashing(path, obj):
        calls["n"] += 1
        if calls["n"] == 3:  # t0, then the group's t1, then crash at its t2
            raise KeyboardInterrupt
        return real_save(path, obj)

    monkeypatch.setattr(tw, "_save", crashing)
    with pytest.raises(KeyboardInterrupt):
        tw.TwoDSimulation(tw.TwoDConfig(**kw), tmp_path / "r").run()
    monkeypatch.setattr(tw, "_save", real_save)
    tw.TwoDSimulation(tw.TwoDConfig(**kw), tmp_path / "r").run()
    assert (tmp_path / "r" / "summary.csv").read_bytes() == (
        tmp_path / "ref" / "summary.csv"
    ).read_bytes()


def test_a_lambda_does_not_depend_on_the_others(tmp_path):
    kw = dict(model="diffusion", data="8gaussians", **{**TINY, "iterations": 2})
    tw.TwoDSimulation(tw.TwoDConfig(**{**kw, "lams": (0.5,)}), tmp_path / "a").run()
    tw.TwoDSimulation(tw.TwoDConfig(**{**kw, "lams": (0.5, 2.0)}), tmp_path / "b").run()
    a = read_summary(tmp_path / "a" / "summary.csv")
    b = [r for r in read_summary(tmp_path / "b" / "summary.csv") if r["lam"] == 0.5]
    assert a == b


@pytest.mark.parametrize("policy", ["accumulate", "accumulate-subsample", "fresh"])
def test_policies_run(tmp_path, policy):
    cfg = tw.TwoDConfig(
        model="diffusion",
        data="8gaussians",
        policy=policy,
        **{**TINY, "lams": (0.5, 1.0), "iterations": 2},
    )
    res = tw.TwoDSimulation(cfg, tmp_path / policy).run()
    assert set(res["final"]) == {"0.5", "1.0"}


@pytest.mark.parametrize(
    "args",
    [
        ["--data", "spirals"],
        ["--n", "1"],
        ["--lam", "-1"],
        ["--epochs", "0"],
        ["--epochs", "0.5"],
        ["--runs", "0"],
        ["--fm", "magic"],
        ["--solver", "rk99"],
        ["--policy", "accumulate", "--lam", "inf"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_input_exit_2_nothing_written(cli, tmp_path, args):
    proc = cli("simulate", "flow", "--quick", "--out", tmp_path / "o", *args)
    assert proc.returncode == 2, proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "o").exists()


def test_cli_diffusion_json(cli, tmp_path):
    proc = cli(
        "simulate",
        "diffusion",
        "--quick",
        "--runs",
        "2",
        "--iterations",
        "2",
        "--n",
        "64",
        "--n-eval",
        "64",
        "--epochs",
        "2",
        "--init-epochs",
        "4",
        "--batch",
        "32",
        "--diffusion-steps",
        "25",
        "--out",
        tmp_path / "d",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (
        "w2" in out["final"]["inf"]
        and json.loads((tmp_path / "d" / "config.json").read_text())["options"]["data"]
        == "8gaussians"
    )
