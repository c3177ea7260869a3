"""OT-CFM and DDPM on images: couplings, samplers against analytic fields, training, checkpoints."""

import itertools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchcfm")
pytest.importorskip("torchdiffeq")

from deep.edm import image_noise  # noqa: E402
from deep.methods import (  # noqa: E402
    DDPMMethod,
    EDMMethod,
    OTCFMMethod,
    OTCFMNet,
    make_method,
    net_from_dict,
    net_to_dict,
)
from deep.train import Trainer, TrainOptions  # noqa: E402
from deep.unet import UNetConfig  # noqa: E402


def _tiny_images(n=16, res=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res]
    out = np.zeros((n, 1, res, res), np.uint8)
    for i in range(n):
        cx, cy = rng.integers(4, res - 4, 2)
        out[i, 0] = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < 9, 230, 20)
    return out


def _trainer(method, seed=0, **opts):
    cfg = OTCFMNet.tiny(16, 1) if method.name == "otcfm" else UNetConfig.tiny(16, 1)
    base = dict(batch=8, lr=1e-3, lr_rampup_kimg=0.0, ema_halflife_kimg=0.1, rampup="continue")
    return Trainer(cfg, TrainOptions(**(base | opts)), seed=seed, method=method)


# ---- OT-CFM ----------------------------------------------------------------------------------


def test_otcfm_pairs_follow_the_optimal_permutation():
    """With equal uniform weights the exact OT plan is a permutation: brute force agrees."""
    from deep.methods import _ot_pairs

    rng = np.random.default_rng(3)
    x0, x1 = rng.normal(size=(6, 12)), rng.normal(size=(6, 12))
    cost = ((x0[:, None] - x1[None]) ** 2).sum(-1)
    best = min(itertools.permutations(range(6)), key=lambda p: sum(cost[i, p[i]] for i in range(6)))
    i, j = _ot_pairs(x0, x1, rng.uniform(size=200))
    assert all(j_ == best[i_] for i_, j_ in zip(i, j))
    # Drawn with replacement from the plan: every cell has mass 1/6.
    counts = np.bincount(i, minlength=6)
    assert counts.min() > 200 / 6 - 4 * math.sqrt(200 * (1 / 6) * (5 / 6))


@pytest.mark.parametrize("solver", ["dopri5", "euler"])
def test_otcfm_sampler_integrates_the_velocity_field(solver):
    """dx/dt = -x from x0 gives x0 e^-1 (dopri5) and x0 (1 - h)^(1/h) (Euler, step h)."""
    method = OTCFMMethod(solver=solver, tol=1e-7, euler_steps=50)

    def net(t, x):
        assert t.shape == (x.shape[0],)
        return -x

    seeds = [4, 5, 6]
    x0 = image_noise(seeds, (1, 4, 4), 1)[0]
    out = method.sample(net, seeds, (1, 4, 4), "cpu", torch.float64)
    factor = math.exp(-1) if solver == "dopri5" else (1 - 1 / 50) ** 50
    expected = (x0 * factor).clamp(-1, 1)
    assert torch.allclose(out, expected, atol=1e-5)


def test_otcfm_loss_targets_the_straight_path():
    """The loss of a net that returns the conditional velocity x1 - x0 of its own pair is 0 only
    if the pairs are the OT pairs: check the loss against the explicit OT-CFM formula."""
    method = OTCFMMethod()
    x = torch.from_numpy(_tiny_images(8)).float() / 127.5 - 1
    batch = 8
    gen = torch.Generator().manual_seed(0)
    seen = {}

    def net(t, xt):
        seen["t"], seen["xt"] = t, xt
        return torch.zeros_like(xt)

    loss = method.loss(net, x, gen, batch, slice(0, batch))
    # Replay the stream: x0, t, eps, u in this order, then pairs from the exact plan.
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((batch, 1, 16, 16), generator=g)
    t = torch.rand(batch, generator=g)
    torch.randn((batch, 1, 16, 16), generator=g)
    u = torch.rand(batch, generator=g)
    from deep.methods import _ot_pairs

    i, j = _ot_pairs(x0.flatten(1).double().numpy(), x.flatten(1).double().numpy(), u.numpy())
    a, b = x0[torch.from_numpy(i)], x[torch.from_numpy(j)]
    tt = t.reshape(-1, 1, 1, 1)
    assert torch.allclose(seen["t"], t)
    assert torch.allclose(seen["xt"], tt * b + (1 - tt) * a, atol=1e-6)  # sigma = 0
    assert torch.allclose(loss, ((b - a) ** 2).flatten(1).mean(1), atol=1e-5)


def test_otcfm_training_lowers_the_loss():
    trainer = _trainer(OTCFMMethod(solver="euler", euler_steps=4), batch=16, lr=2e-3)
    images = _tiny_images()
    first = trainer.train(images, kimg=0.08)
    last = trainer.train(images, kimg=2.4)
    assert last < 0.8 * first
    out = trainer.generate([0, 1, 2], batch=2)
    assert out.shape == (3, 1, 16, 16) and out.dtype == np.uint8


@pytest.mark.parametrize(
    "method, halflife, decay, expected",
    [
        # OT-CFM's default is torchcfm's 0.9999 per step ...
        ("otcfm", None, None, 1 - 0.9999),
        # ... but a half-life, when given, applies to every model (a short run's EMA would
        # otherwise stay near the random initialisation: 0.9999^1000 = 0.90).
        ("otcfm", 0.1, None, 1 - 0.5 ** (8 / 100)),
        ("edm", None, None, 1 - 0.5 ** (8 / 500_000)),
        ("edm", 0.1, None, 1 - 0.5 ** (8 / 100)),
        ("ddpm", 0.1, 0.5, 0.5),  # a per-step decay overrides the half-life
    ],
)
def test_ema_update_follows_the_half_life_or_the_per_step_decay(method, halflife, decay, expected):
    m = {"otcfm": OTCFMMethod, "edm": EDMMethod, "ddpm": DDPMMethod}[method]()
    trainer = _trainer(m, ema_halflife_kimg=halflife, ema_decay=decay)
    trainer.nimg_phase = trainer.nimg_total = 10**9  # past the EMA ramp
    with torch.no_grad():
        for pe, p in zip(trainer.ema.parameters(), trainer.net.parameters()):
            pe.zero_()
            p.fill_(1.0)
    trainer._update_ema()
    values = torch.cat([pe.flatten() for pe in trainer.ema.parameters()])
    # float32: lerp(1, 0, d) = 1 - d loses up to one ulp of 1 (6e-8) to cancellation.
    assert torch.allclose(values, torch.full_like(values, expected), rtol=1e-5, atol=2e-7)


def test_ema_options_are_checked():
    with pytest.raises(ValueError, match="ema decay"):
        TrainOptions(ema_decay=1.0)
    with pytest.raises(ValueError, match="ema half-life"):
        TrainOptions(ema_halflife_kimg=0.0)


# ---- DDPM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddim_recovers_a_point_mass_exactly(spacing):
    """For data = a point c the optimal eps-prediction is (x_t - sqrt(ab) c) / sqrt(1 - ab); DDIM
    (eta = 0) then lands on c from any noise, with any number of steps and spacing."""
    for steps in (1, 7, 50):
        method = DDPMMethod(ddim_steps=steps, spacing=spacing)
        c = torch.linspace(-0.8, 0.8, 16, dtype=torch.float64).reshape(1, 1, 4, 4)

        def net(x, t, method=method, c=c):
            ab = method.alpha_bar[t].reshape(-1, 1, 1, 1)
            return (x.double() - ab.sqrt() * c) / (1 - ab).sqrt()

        out = method.sample(net, [1, 2], (1, 4, 4), "cpu", torch.float64)
        assert torch.allclose(out, c.expand(2, -1, -1, -1), atol=1e-8), steps


def test_ddim_on_a_gaussian_converges_at_first_order():
    """Data N(0, s^2): eps*(x_t) = sqrt(1 - ab) x_t / (ab s^2 + 1 - ab) and the probability-flow
    map is linear, x_T -> s x_T / sqrt(ab_T s^2 + 1 - ab_T). DDIM (eta = 0) approaches it with an
    error that halves when the steps double (measured with linspace spacing: 4.3% at 100 steps,
    2.2% at 200). The map starts at the first DDIM timestep, tau_S."""
    s = 0.3
    seeds = list(range(16))
    x0 = image_noise(seeds, (1, 4, 4), 1)[0]
    errors = []
    for steps in (100, 200):
        method = DDPMMethod(ddim_steps=steps, spacing="linspace")

        def net(x, t, method=method):
            ab = method.alpha_bar[t].reshape(-1, 1, 1, 1)
            return (1 - ab).sqrt() * x.double() / (ab * s * s + 1 - ab)

        out = method.sample(net, seeds, (1, 4, 4), "cpu", torch.float64)
        ab_T = float(method.alpha_bar[method.timesteps[0]])
        exact = s * x0 / math.sqrt(ab_T * s * s + 1 - ab_T)
        inside = exact.abs() < 0.99  # the sampler clamps to [-1, 1]
        errors.append(float(((out - exact).abs() / exact.abs())[inside].max()))
    assert errors[1] < 0.03
    assert 1.7 < errors[0] / errors[1] < 2.3


@pytest.mark.parametrize("train_steps, steps", [(1000, 10), (1000, 100), (1000, 30), (50, 50)])
def test_ddim_spacings_follow_diffusers_conventions(train_steps, steps):
    """diffusers' DDIMScheduler.set_timesteps (timestep_spacing, steps_offset = 0), written out:
    leading k floor(T/S); trailing round(T - k T/S) - 1; linspace round(k (T-1)/(S-1))."""
    from deep.methods import ddim_timesteps

    T, S = train_steps, steps
    leading = [k * (T // S) for k in range(S)]
    trailing = [round(T - k * T / S) - 1 for k in range(S)]
    linspace = [round(k * (T - 1) / (S - 1)) if S > 1 else 0 for k in range(S)]
    for name, expected in (("leading", leading), ("trailing", trailing), ("linspace", linspace)):
        got = ddim_timesteps(T, S, name)
        assert got.tolist() == sorted(expected, reverse=True), name
        assert len(set(got.tolist())) == S and 0 <= got.min() and got.max() <= T - 1
    if (T, S) == (1000, 10):  # Lin et al. 2024, Table 2
        assert ddim_timesteps(T, S, "leading")[[0, -1]].tolist() == [900, 0]
        assert ddim_timesteps(T, S, "trailing")[[0, -1]].tolist() == [999, 99]
        assert ddim_timesteps(T, S, "linspace")[[0, 1, -1]].tolist() == [999, 888, 0]


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddim_sampler_visits_the_spacing_timesteps_in_order(spacing):
    from deep.methods import ddim_timesteps

    seen = []

    def net(x, t):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    DDPMMethod(ddim_steps=30, spacing=spacing).sample(net, [0], (1, 2, 2), "cpu", torch.float64)
    assert seen == ddim_timesteps(1000, 30, spacing).tolist()
    assert DDPMMethod().spacing == "leading" and DDPMMethod().timesteps[0] == 990
    with pytest.raises(ValueError, match="spacing"):
        DDPMMethod(spacing="uniform")


def test_ddim_clipping_keeps_a_poor_network_in_range_and_leaves_a_good_one_alone():
    """With clip_denoised the denoised estimate is clamped to [-1, 1] and eps re-derived from it.
    A network whose eps is 30% too small (data N(0, 0.3^2)) overshoots x0_hat by ~1/sqrt(ab) at
    high noise: without clipping 64% of the pixels end saturated at +-1, with it 13% (measured
    on these 512 pixels with the float64 latents and linspace spacing they were measured with;
    other draws of 512 pixels give 60-64% and 12-15%).
    For the exact network of a point mass inside [-1, 1] clipping changes nothing."""
    seeds = list(range(8))
    saturated = {}
    for clip in (True, False):
        method = DDPMMethod(
            ddim_steps=50, clip_denoised=clip, spacing="linspace", latents="float64"
        )

        def poor(x, t, method=method):
            ab = method.alpha_bar[t].reshape(-1, 1, 1, 1)
            return 0.7 * (1 - ab).sqrt() * x.double() / (ab * 0.09 + 1 - ab)

        out = method.sample(poor, seeds, (1, 8, 8), "cpu", torch.float64)
        saturated[clip] = float((out.abs() > 0.999).double().mean())
    assert saturated[False] > 0.5 and saturated[True] < 0.25 * saturated[False], saturated
    c = torch.linspace(-0.9, 0.9, 16, dtype=torch.float64).reshape(1, 1, 4, 4)
    outs = []
    for clip in (True, False):
        method = DDPMMethod(ddim_steps=20, clip_denoised=clip)

        def exact(x, t, method=method):
            ab = method.alpha_bar[t].reshape(-1, 1, 1, 1)
            return (x.double() - ab.sqrt() * c) / (1 - ab).sqrt()

        outs.append(method.sample(exact, seeds, (1, 4, 4), "cpu", torch.float64))
    assert torch.allclose(outs[0], outs[1], atol=1e-10)


def test_ddpm_loss_is_the_epsilon_regression():
    method = DDPMMethod()
    x = torch.from_numpy(_tiny_images(4)).float() / 127.5 - 1
    seen = {}

    def net(xt, t):
        seen["xt"], seen["t"] = xt, t
        return torch.zeros_like(xt)

    loss = method.loss(net, x, torch.Generator().manual_seed(2), 4, slice(0, 4))
    g = torch.Generator().manual_seed(2)
    t = torch.randint(0, 1000, (4,), generator=g)
    eps = torch.randn((4, 1, 16, 16), generator=g)
    ab = method.alpha_bar[t].float().reshape(-1, 1, 1, 1)
    assert torch.equal(seen["t"], t)
    assert torch.allclose(seen["xt"], ab.sqrt() * x + (1 - ab).sqrt() * eps, atol=1e-6)
    assert torch.allclose(loss, (eps**2).flatten(1).mean(1))


def test_ddpm_training_lowers_the_loss_and_generates():
    trainer = _trainer(DDPMMethod(ddim_steps=5), batch=16, lr=2e-3)
    images = _tiny_images()
    first = trainer.train(images, kimg=0.08)
    last = trainer.train(images, kimg=2.4)
    assert last < 0.8 * first
    out = trainer.generate([0, 1, 2], batch=2)
    assert out.shape == (3, 1, 16, 16) and out.dtype == np.uint8


# ---- shared plumbing ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["otcfm", "ddpm"])
def test_resume_equals_uninterrupted(name, tmp_path):
    images = _tiny_images()

    def method():
        return make_method(
            name,
            **({"solver": "euler", "euler_steps": 2} if name == "otcfm" else {"ddim_steps": 2}),
        )

    a = _trainer(method(), seed=1)
    a.train(images, 0.04)
    a.train(images, 0.04)
    b = _trainer(method(), seed=1)
    b.train(images, 0.04)
    b.save(tmp_path / "ck.pt")
    c = _trainer(method(), seed=7)
    c.load(tmp_path / "ck.pt")
    c.train(images, 0.04)
    for pa, pc in zip(a.net.parameters(), c.net.parameters()):
        assert torch.equal(pa, pc)
    for pa, pc in zip(a.ema.parameters(), c.ema.parameters()):
        assert torch.equal(pa, pc)
    assert np.array_equal(a.generate([3, 4]), c.generate([3, 4]))
    # A checkpoint of one model family refuses to load into another.
    other = _trainer(make_method("edm"))
    with pytest.raises(ValueError, match=f"holds a {name} model"):
        other.load(tmp_path / "ck.pt")


def test_torchcfm_checkpoint_dict_loads(tmp_path):
    """torchcfm's train_cifar10 saves {net_model, ema_model, sched, optim, step}; DDP runs add a
    "module." prefix."""
    src = _trainer(OTCFMMethod(), seed=3)
    sd = src.net.state_dict()
    ema = {k: v + 1 for k, v in sd.items()}
    torch.save(
        {
            "net_model": {f"module.{k}": v for k, v in sd.items()},
            "ema_model": ema,
            "optim": src.opt.state_dict(),
            "step": 10,
        },
        tmp_path / "cfm.pt",
    )
    dst = _trainer(OTCFMMethod(), seed=9)
    dst.load(tmp_path / "cfm.pt", resume=False)
    for k, v in dst.net.state_dict().items():
        assert torch.equal(v, sd[k])
    for k, v in dst.ema.state_dict().items():
        assert torch.equal(v, ema[k])


def test_network_configs_round_trip():
    for cfg in (OTCFMNet.tiny(), OTCFMNet.cifar10(), UNetConfig.tiny(16, 1)):
        name = "otcfm" if isinstance(cfg, OTCFMNet) else "edm"
        assert net_from_dict(name, net_to_dict(cfg)) == cfg


def test_cifar10_otcfm_network_size():
    """The torchcfm CIFAR-10 network (train_cifar10.py flags: 128 channels, [1, 2, 2, 2], 2 blocks,
    4 heads of 64, attention at 16, dropout 0.1): pinned at its parameter count (torchcfm 1.0)."""
    from torchcfm.models.unet.unet import UNetModelWrapper

    net = OTCFMMethod().build(OTCFMNet.cifar10())
    assert isinstance(net, UNetModelWrapper)
    assert sum(p.numel() for p in net.parameters()) == 35_746_307


def test_bad_options():
    with pytest.raises(ValueError, match="ODE solver"):
        OTCFMMethod(solver="rk4")
    with pytest.raises(ValueError, match="ddim steps"):
        DDPMMethod(ddim_steps=0)
    with pytest.raises(ValueError, match="unknown model"):
        make_method("gan")
