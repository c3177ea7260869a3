"""EDM: the U-Net layout, preconditioning identities, loss, Heun sampler, training, DDP."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep.edm import SIGMA_DATA, EDMLoss, EDMPrecond, SamplerConfig, heun_sample  # noqa: E402
from deep.train import Trainer, TrainOptions, load_weights  # noqa: E402
from deep.unet import SongUNet, UNetConfig, count_parameters, official_layout  # noqa: E402
from stability.stats import mean_interval  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name,cfg",
    [
        ("cifar10-32x32-uncond-ddpmpp", UNetConfig.cifar10()),
        ("ffhq-64x64-uncond-ddpmpp", UNetConfig.ffhq64()),
    ],
)
def test_official_state_dict_loads_strictly(name, cfg):
    net = EDMPrecond(cfg)
    layout = official_layout(name)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == layout and list(ours) == list(layout)
    # A state dict with exactly the official names and shapes loads with strict=True.
    exported = {k: torch.randn(shape) for k, shape in layout.items()}
    net.load_state_dict(exported, strict=True)
    assert count_parameters(net) in (55_733_891, 61_805_571)


@pytest.mark.parametrize("sigma", [0.002, 0.1, 0.5, 2.0, 80.0])
def test_preconditioning_gives_unit_variance_inputs_and_targets(sigma):
    # EDM's design (Appendix B.6): with Var(y) = sigma_data^2, the network input c_in (y + n) and
    # the effective target (y - c_skip (y + n)) / c_out both have unit variance, and the loss
    # weight lambda(sigma) equals 1 / c_out^2.
    sd = SIGMA_DATA
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / math.sqrt(sigma**2 + sd**2)
    c_in = 1 / math.sqrt(sd**2 + sigma**2)
    assert c_in**2 * (sd**2 + sigma**2) == pytest.approx(1.0)
    assert ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2) / c_out**2 == pytest.approx(1.0)
    assert (sigma**2 + sd**2) / (sigma * sd) ** 2 * c_out**2 == pytest.approx(1.0)
    # And EDMPrecond computes D = c_skip x + c_out F(c_in x, ln(sigma)/4): check with a stub F.

    class Stub(torch.nn.Module):
        def forward(self, x, noise, augment=None):
            return x * 3.0 + noise.reshape(-1, 1, 1, 1)

    net = EDMPrecond(UNetConfig.tiny(8, 1))
    net.model = Stub()
    x = torch.randn(2, 1, 8, 8)
    expected = c_skip * x + c_out * (3 * c_in * x + math.log(sigma) / 4)
    assert torch.allclose(net(x, torch.full((2,), sigma)), expected, atol=1e-5)


def test_loss_samples_log_sigma_and_weights():
    captured = {}

    class Probe(torch.nn.Module):
        def forward(self, x, sigma):
            captured["sigma"] = sigma
            return torch.zeros_like(x)

    images = torch.ones(3, 1, 4, 4) * 0.5
    normal = torch.tensor([-1.0, 0.0, 2.0])
    loss = EDMLoss()(Probe(), images, normal, torch.zeros(3, 1, 4, 4))
    sigma = torch.exp(normal * 1.2 - 1.2)
    assert torch.allclose(captured["sigma"], sigma)
    weight = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    assert torch.allclose(loss, weight * 16 * 0.25)


def test_time_steps():
    t = SamplerConfig().time_steps()
    assert (
        len(t) == 19
        and t[0] == pytest.approx(80.0)
        and t[17] == pytest.approx(0.002)
        and t[18] == 0
    )
    assert np.all(np.diff(t) < 0)


class GaussianDenoiser(torch.nn.Module):
    """The exact denoiser of data N(mu, s^2) per pixel: D(x; sigma) = mu + s^2/(s^2+sigma^2)(x - mu)."""

    def __init__(self, mu, s):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x, sigma):
        sigma = sigma.reshape(-1, 1, 1, 1).to(x.dtype)
        return self.mu + self.s**2 / (self.s**2 + sigma**2) * (x - self.mu)


def _heun_recursion(mu, s, steps):
    """Output mean and std of Heun sampling with the exact Gaussian denoiser (affine steps)."""
    t = SamplerConfig(steps=steps).time_steps()
    a, b = 1.0, 0.0  # x_i = a x_0 + b with x_0 ~ N(0, t_0^2)

    def d(a, b, sig):  # (x - D(x; sig)) / sig for x = a x_0 + b, as (coefficient, constant)
        k = s**2 / (s**2 + sig**2)
        return a * (1 - k) / sig, (b - mu) * (1 - k) / sig

    for i in range(steps):
        tc, tn = t[i], t[i + 1]
        da, db = d(a, b, tc)
        na, nb = a + (tn - tc) * da, b + (tn - tc) * db
        if i < steps - 1:
            d2a, d2b = d(na, nb, tn)
            na, nb = a + (tn - tc) * 0.5 * (da + d2a), b + (tn - tc) * 0.5 * (db + d2b)
        a, b = na, nb
    return b, abs(a) * t[0]


@pytest.mark.parametrize("steps", [18, 36])
def test_heun_sampler_on_an_analytic_denoiser(steps):
    # With the exact denoiser of Gaussian data every Heun step is affine in x, so the output's
    # mean and variance follow a recursion: the simulated pixels must match it.
    mu, s = 0.3, 0.4
    x = (
        heun_sample(
            GaussianDenoiser(mu, s),
            list(range(3000)),
            (1, 2, 2),
            SamplerConfig(steps=steps),
            dtype=torch.float64,
        )
        .numpy()
        .ravel()
    )
    mean, sd = _heun_recursion(mu, s, steps)
    assert mean_interval(x, 0.999, 2).contains(mean)
    assert mean_interval((x - mean) ** 2, 0.999, 2).contains(sd**2)


def test_heun_discretisation_is_second_order():
    # The recursion approaches N(mu, s^2) at Heun's order 2: doubling the steps divides the error
    # of the standard deviation by about 4 (measured: 0.059, 0.013, 0.0030 at 18, 36, 72 steps).
    mu, s = 0.3, 0.4
    errs = [abs(_heun_recursion(mu, s, n)[1] / s - 1) for n in (18, 36, 72)]
    assert 3.0 < errs[0] / errs[1] < 6.0 and 3.0 < errs[1] / errs[2] < 6.0
    assert abs(_heun_recursion(mu, s, 18)[0] - mu) < 0.005


def test_images_do_not_depend_on_the_batch():
    net = GaussianDenoiser(0.0, 0.5)
    alone = heun_sample(net, [7], (1, 4, 4), SamplerConfig(steps=5, s_churn=10.0))
    batch = heun_sample(net, [3, 7, 9], (1, 4, 4), SamplerConfig(steps=5, s_churn=10.0))
    assert torch.allclose(alone[0], batch[1])


def _tiny_images(n=16, res=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res]
    out = np.zeros((n, 1, res, res), np.uint8)
    for i in range(n):
        cx, cy = rng.integers(4, res - 4, 2)
        out[i, 0] = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < 9, 230, 20)
    return out


def test_loss_decreases_on_a_tiny_set():
    images = _tiny_images()
    trainer = Trainer(
        UNetConfig.tiny(16, 1), TrainOptions(batch=16, lr=2e-3, lr_rampup_kimg=0.0), seed=0
    )
    first = trainer.train(images, kimg=0.16)
    last = trainer.train(images, kimg=3.2)
    assert last < 0.6 * first


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    images = _tiny_images()
    opts = TrainOptions(
        batch=8, lr=1e-3, lr_rampup_kimg=0.2, ema_halflife_kimg=0.1, rampup="continue"
    )
    a = Trainer(UNetConfig.tiny(16, 1), opts, seed=1)
    a.train(images, 0.08)
    a.train(images, 0.08)
    b = Trainer(UNetConfig.tiny(16, 1), opts, seed=1)
    b.train(images, 0.08)
    b.save(tmp_path / "ck.pt")
    c = Trainer(
        UNetConfig.tiny(16, 1), opts, seed=99
    )  # different init: everything must come from the file
    c.load(tmp_path / "ck.pt")
    c.train(images, 0.08)
    for pa, pc in zip(a.net.parameters(), c.net.parameters()):
        assert torch.equal(pa, pc)
    for pa, pc in zip(a.ema.parameters(), c.ema.parameters()):
        assert torch.equal(pa, pc)


def test_rampup_modes():
    images = _tiny_images(4)
    for mode, expect_reset in (("restart", True), ("continue", False)):
        t = Trainer(
            UNetConfig.tiny(16, 1), TrainOptions(batch=4, lr_rampup_kimg=1.0, rampup=mode), seed=0
        )
        t.train(images, 0.02)
        before = t.nimg_phase
        t.train(images, 0.004)
        assert (t.nimg_phase == 4) == expect_reset and before == 20
    # With "restart" the first step of a phase has learning rate 0, as in EDM's code.
    t = Trainer(UNetConfig.tiny(16, 1), TrainOptions(batch=4, lr_rampup_kimg=1.0), seed=0)
    p0 = [p.detach().clone() for p in t.net.parameters()]
    t.train(images, 0.004)
    assert all(torch.equal(a, b) for a, b in zip(p0, t.net.parameters()))


def test_weights_only_loading_refuses_other_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "owned"),))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only"):
        load_weights(tmp_path / "evil.pt")
    assert not (tmp_path / "owned").exists()
    with pytest.raises(ValueError, match="does not exist"):
        load_weights(tmp_path / "missing.pt")


def test_two_gloo_processes_follow_the_single_process_run(tmp_path):
    script = ROOT / "tests" / "helpers" / "ddp_train.py"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    single = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one.pt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(tmp_path / "two.pt"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr[-2000:]
    a = load_weights(tmp_path / "one.pt")
    b = load_weights(tmp_path / "two.pt")
    # Same global minibatches, gradients averaged by DDP: the same weights up to float rounding
    # amplified by Adam on near-zero gradients (measured max 1.6e-5 after 4 steps of lr 1e-3;
    # unsynchronised ranks would differ by the size of the updates, ~1e-3).
    diff = max(float((a["net"][k] - b["net"][k]).abs().max()) for k in a["net"])
    assert diff < 1e-4
    # Generation split across ranks and gathered in seed order gives the same images.
    assert np.array_equal(
        np.load(tmp_path / "one.pt.gen.npy"), np.load(tmp_path / "two.pt.gen.npy")
    )


def test_song_unet_shapes_for_any_size():
    net = SongUNet(UNetConfig.tiny(16, 3))
    out = net(torch.randn(2, 3, 16, 16), torch.randn(2))
    assert out.shape == (2, 3, 16, 16)


# ---- per-seed latents as the official generator draws them ---------------------------------


@pytest.mark.parametrize("seeds", [[0], [7, 3, 2**31 + 5]])
def test_latents_are_one_float32_stream_per_seed(seeds):
    """The latent of seed k is the first float32 draw, shape (C, H, W), of a fresh
    torch.Generator seeded with k; the sampler's later draws continue that stream in float64."""
    from deep.edm import image_noise

    shape = (3, 5, 4)
    noises = image_noise(seeds, shape, 3)
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        first = torch.randn(shape, generator=g, dtype=torch.float32)
        second = torch.randn(shape, generator=g, dtype=torch.float64)
        third = torch.randn(shape, generator=g, dtype=torch.float64)
        assert torch.equal(noises[0][i], first.double())
        assert torch.equal(noises[1][i], second) and torch.equal(noises[2][i], third)
    # --latents float64: the earlier convention, every draw float64.
    old = image_noise(seeds, shape, 1, latents="float64")[0]
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        assert torch.equal(old[i], torch.randn(shape, generator=g, dtype=torch.float64))
    with pytest.raises(ValueError, match="latents"):
        image_noise(seeds, shape, 1, latents="float16")


def test_stochastic_heun_sample_follows_the_official_algorithm_seed_by_seed():
    """EDM's Algorithm 2 with S_churn written out here for one seed at a time: latent = the
    seed's float32 draw times t_0; at every step i the stream's next float64 draw is the churn
    noise (drawn even where gamma_i = 0, outside [S_tmin, S_tmax]); Euler step, then Heun's
    correction except on the last step. The batched sampler gives the same images."""
    mu, s = 0.2, 0.5
    den = GaussianDenoiser(mu, s)
    cfg = SamplerConfig(steps=7, s_churn=3.0, s_tmin=0.05, s_tmax=10.0, s_noise=1.007)
    shape, seeds = (1, 3, 3), [11, 4, 2**33 + 1]
    out = heun_sample(den, seeds, shape, cfg, dtype=torch.float64)
    n, rho = cfg.steps, cfg.rho
    a, b = cfg.sigma_max ** (1 / rho), cfg.sigma_min ** (1 / rho)
    t = [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)] + [0.0]

    def d(x, sigma):  # the network sees sigma in float32, as EDMPrecond casts it
        sigma = float(torch.tensor(sigma, dtype=torch.float32))
        return mu + s**2 / (s**2 + sigma**2) * (x - mu)

    for k, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(shape, generator=g, dtype=torch.float32).double() * t[0]
        for i in range(n):
            eps = torch.randn(shape, generator=g, dtype=torch.float64)
            gamma = min(cfg.s_churn / n, math.sqrt(2) - 1) if 0.05 <= t[i] <= 10.0 else 0.0
            t_hat = t[i] * (1 + gamma)
            x_hat = x + math.sqrt(t_hat**2 - t[i] ** 2) * cfg.s_noise * eps
            slope = (x_hat - d(x_hat, t_hat)) / t_hat
            x = x_hat + (t[i + 1] - t_hat) * slope
            if i < n - 1:
                slope2 = (x - d(x, t[i + 1])) / t[i + 1]
                x = x_hat + (t[i + 1] - t_hat) * (slope + slope2) / 2
        assert torch.allclose(out[k], x, rtol=0, atol=1e-12)
