"""Algorithm 1 at image scale: EDM fine-tuned on real images plus its own samples.

The loop is ``stability.loop.retrain`` (the same policies as the simulators); the model plugged
into it is an EDM ``Trainer`` whose phases are cached in the run folder:

    DIR/config.json                      every option, seed and versions
    DIR/checkpoints/train_t{t}.pt        weights, EMA, Adam state after the fit of iteration t
    DIR/checkpoints/snap_t{t}.pt         the fit's training state every --snap-kimg (removed
                                         once train_t{t}.pt is written)
    DIR/log.txt                          status lines (when stderr is not a terminal)
    DIR/generated/gen_t{t}.zip           images of theta_t (EDM-style zip, PNG inside)
    DIR/metrics.json                     per-iteration metrics (loss and any hook)
    DIR/summary.csv, DIR/figures/*.png   tidy summary and figures

Each phase is written atomically when it ends; a rerun replays the loop and loads every finished
phase instead of recomputing it, so it resumes where the previous run stopped and, the phases
being deterministic functions of the seed, ends with the same numbers; a fit killed after a
snapshot continues from it (deep.train). Generation uses fresh
seeds at every iteration by default, or the paper's fixed seeds 0..N-1 (``fixed_seeds``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from deep import dist
from deep.augment import AUGMENT_DIM, paper_default
from deep.edm import LATENTS
from deep.figures import compare_runs, run_figures  # noqa: F401 (compare_runs: the CLI's)
from deep.methods import METHODS, SPACINGS, OTCFMNet, make_method, net_from_dict
from deep.status import STATUS_KIMG, STATUS_SEC, StatusLog, format_duration
from deep.train import FORMAT, Trainer, TrainOptions, held_by_main, load_weights
from deep.unet import UNetConfig
from stability.errors import UsageError, check_lam, check_n
from stability.loop import Policy, retrain, synthetic_count
from stability.runs.runfolder import RunFolder, atomic_write_text, summary_rows, write_summary

NETS = ("auto", "tiny", "cifar10", "ffhq64")


@dataclass
class ImageSet:
    """Images of one run, uint8 (N, C, H, W): the DataSet container of stability.loop."""

    x: np.ndarray

    @property
    def size(self) -> int:
        """Number N of images."""
        return int(len(self.x))

    def union(self, other: ImageSet) -> ImageSet:
        """This set's images followed by ``other``'s: (N + M, C, H, W)."""
        return ImageSet(np.concatenate([self.x, other.x]))

    def subsample(self, m: int, rng: np.random.Generator) -> ImageSet:
        """m images drawn without replacement, kept in their order: (m, C, H, W)."""
        return ImageSet(self.x[np.sort(rng.choice(len(self.x), size=m, replace=False))])


@dataclass(frozen=True)
class DeepConfig:
    """Everything that determines a deep retraining run (see the CLI for meanings)."""

    data: str = "digits"
    resolution: int | None = None
    n: int | None = None
    model: str = "edm"
    net: str = "auto"
    lam: float = 1.0
    policy: str = "mix"
    iterations: int = 3
    kimg: float = 5000.0
    init: str | None = None
    init_kimg: float = 0.0
    n_gen: int | None = None
    fixed_seeds: bool = False
    sampler_steps: int = 18
    s_churn: float = 0.0
    ode_solver: str = "dopri5"
    ode_tol: float = 1e-5
    ode_steps: int = 100
    ddim_steps: int = 100
    ddim_clip: bool = True
    ddim_spacing: str = "leading"
    # EDM's augmentation probability; None: the paper's runs (0.12 on cifar10=, 0.15 on ffhq=,
    # 0 on other data: the digits stand-ins are short fine-tunes of a network without
    # augmentation inputs, see deep.augment.paper_default)
    augment: float | None = None
    latents: str = "float32"  # dtype of the per-seed latent draws (deep.edm.image_noise)
    features: str = "auto"
    gen_batch: int = 256
    batch: int = 256
    lr: float | None = None
    lr_rampup_kimg: float | None = None
    ema_halflife_kimg: float | None = None  # None: the model's default (deep.train)
    ema_decay: float | None = None
    rampup: str = "restart"
    n_fresh: int | None = None
    subsample_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "fp32"
    compile: bool = False
    snap_kimg: float | None = None  # training-state snapshots inside a fit (None: none)
    status_kimg: float = STATUS_KIMG  # status lines (deep.status) every this many kimg ...
    status_sec: float = STATUS_SEC  # ... or seconds

    def options(self) -> dict:
        """The settings that determine the numbers, JSON-able, for config.json.

        lam = inf is written "inf"; device, batching and reporting settings are left out.
        """
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["lam"] = self.lam if math.isfinite(self.lam) else "inf"
        d["augment"] = self.augment_probability()
        # Device, compilation, batching of generation, snapshots and status lines change speed
        # or reporting, not the numbers.
        for k in ("device", "compile", "gen_batch", "snap_kimg", "status_kimg", "status_sec"):
            d.pop(k)
        return d

    def augment_probability(self) -> float:
        """--augment, or the paper's value for the data (deep.augment.paper_default)."""
        if self.augment is None:
            return paper_default(self.data, self.model)
        return float(self.augment)

    def method(self):
        """The model family with its sampler settings (deep.methods)."""
        if self.model == "edm":
            return make_method(
                "edm",
                steps=self.sampler_steps,
                s_churn=self.s_churn,
                augment=self.augment_probability(),
                latents=self.latents,
            )
        if self.model == "otcfm":
            return make_method(
                "otcfm",
                solver=self.ode_solver,
                tol=self.ode_tol,
                euler_steps=self.ode_steps,
                latents=self.latents,
            )
        if self.model == "ddpm":
            return make_method(
                "ddpm",
                ddim_steps=self.ddim_steps,
                clip_denoised=self.ddim_clip,
                spacing=self.ddim_spacing,
                latents=self.latents,
            )
        raise UsageError(f"unknown model {self.model!r}; choose one of {', '.join(METHODS)}")

    def train_options(self) -> TrainOptions:
        """The training settings, with the model's default learning rate and ramp-up where unset."""
        method = self.method()
        return TrainOptions(
            batch=self.batch,
            lr=self.lr if self.lr is not None else method.default_lr,
            lr_rampup_kimg=self.lr_rampup_kimg
            if self.lr_rampup_kimg is not None
            else method.default_rampup_kimg,
            ema_halflife_kimg=self.ema_halflife_kimg,
            ema_decay=self.ema_decay,
            rampup=self.rampup,
            device=self.device,
            dtype=self.dtype,
            compile=self.compile,
        )


def quick_config(**overrides) -> DeepConfig:
    """--quick: the whole loop on the bundled digits on a CPU (3 iterations, a few minutes)."""
    # 16x16 digits and 1000 real images: one 18-step Heun sample of 1000 images takes about 20 s
    # on 2 cores at this size (4x more at 32x32).
    base = dict(
        data="digits",
        resolution=16,
        n=1000,
        net="tiny",
        iterations=3,
        kimg=12.0,
        init_kimg=60.0,
        batch=64,
        lr=2e-3,
        lr_rampup_kimg=2.0,
        ema_halflife_kimg=2.0,
        gen_batch=250,
    )
    if overrides.get("model") == "otcfm":
        # torchcfm's U-Net is 2.2x the tiny DDPM++ one and dopri5 at 1e-5 takes ~270 network
        # calls per batch once trained: 20 Euler steps (mean deviation 1.3/255 from dopri5 on the
        # quick model) and a shorter first fit keep the run under 10 minutes on 2 cores.
        base.update(ode_solver="euler", ode_steps=20, init_kimg=40.0)
    base.update(overrides)
    return DeepConfig(**base)


def net_config(cfg: DeepConfig, channels: int, resolution: int):
    """The network of the run: the paper's configuration by data set, or `tiny` for CPUs.

    EDM and DDPM use the DDPM++ U-Net (UNetConfig); OT-CFM uses torchcfm's U-Net (OTCFMNet).
    """
    name = cfg.net
    if name == "auto":
        paper = (resolution, channels) in ((32, 3), (64, 3)) and not (
            cfg.model == "otcfm" and resolution == 64
        )
        name = ("cifar10" if resolution == 32 else "ffhq64") if paper else "tiny"
    if cfg.model == "otcfm":
        if name == "ffhq64":
            raise UsageError(
                "OT-CFM has the paper's CIFAR-10 network only; use --net cifar10 or tiny"
            )
        net = OTCFMNet.tiny(resolution, channels) if name == "tiny" else OTCFMNet.cifar10()
    elif name == "tiny":
        net = UNetConfig.tiny(resolution, channels)
        if cfg.model == "edm" and cfg.augment_probability() > 0:  # the labels need an input
            net = replace(net, augment_dim=AUGMENT_DIM)
    else:
        net = UNetConfig.cifar10() if name == "cifar10" else UNetConfig.ffhq64()
        if cfg.model == "ddpm":  # the network predicts eps; no augmentation labels
            net = replace(net, augment_dim=0)
    levels = len(getattr(net, "channel_mult", ())) or 1
    factor = 2 ** (levels - 1)  # each level but the last halves the image
    if resolution % factor:
        raise UsageError(
            f"{cfg.data}: images of side {resolution}: the network halves the image "
            f"{levels - 1} times, so it needs a multiple of {factor}"
        )
    if (net.resolution, net.channels) != (resolution, channels):
        raise UsageError(
            f"network {name} is for {net.channels}x{net.resolution}x{net.resolution} images, "
            f"the data are {channels}x{resolution}x{resolution}"
        )
    return net


def _validate(cfg: DeepConfig):
    from deep.data import load_images

    if cfg.model not in METHODS:
        raise UsageError(f"unknown model {cfg.model!r}; choose one of {', '.join(METHODS)}")
    if cfg.net not in NETS:
        raise UsageError(f"unknown network {cfg.net!r}; choose one of {', '.join(NETS)}")
    lam = check_lam(cfg.lam)
    check_n(cfg.iterations, "iterations", minimum=1)
    for name in ("kimg", "batch"):
        if not getattr(cfg, name) > 0:
            raise UsageError(f"{name} must be > 0, got {getattr(cfg, name)}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise UsageError(f"lr must be > 0, got {cfg.lr}")
    if cfg.init_kimg < 0:
        raise UsageError(f"init-kimg must be >= 0, got {cfg.init_kimg}")
    if cfg.init is None and cfg.init_kimg == 0:
        raise UsageError(
            "give --init CKPT or --init-kimg > 0 (the model fitted on real data at t = 0)"
        )
    check_run_options(cfg)
    data = load_images(cfg.data, resolution=cfg.resolution)
    n = cfg.n or len(data)
    if n > len(data):
        raise UsageError(f"--n {n} exceeds the {len(data)} images of the data set")
    check_n(n, "n")
    policy = Policy(cfg.policy, lam, cfg.n_fresh, cfg.subsample_size)
    net = net_config(cfg, data.channels, data.resolution)
    if cfg.init is not None:
        state = load_weights(cfg.init)
        if state.get("format") == FORMAT:
            if state.get("method", "edm") != cfg.model:
                raise UsageError(
                    f"checkpoint {Path(cfg.init).name} holds a {state.get('method')} model, not {cfg.model}"
                )
            stored = state["net_cfg"]
            if (stored["resolution"], stored["channels"]) != (data.resolution, data.channels):
                raise UsageError(
                    f"checkpoint {Path(cfg.init).name} is for {stored['channels']}x{stored['resolution']}"
                    f"x{stored['resolution']} images, the data are "
                    f"{data.channels}x{data.resolution}x{data.resolution}"
                )
            net = net_from_dict(cfg.model, stored)
    if cfg.model == "edm" and cfg.augment_probability() > 0 and net.augment_dim != AUGMENT_DIM:
        raise UsageError(
            f"--augment {cfg.augment_probability():g} needs a network with {AUGMENT_DIM} "
            f"augmentation inputs; the network of {Path(cfg.init).name} has {net.augment_dim}"
        )
    cfg.train_options()
    return data, n, policy, net


def check_run_options(cfg: DeepConfig) -> None:
    """UsageError for bad augmentation, latent, DDIM-spacing, snapshot and status options."""
    p = cfg.augment_probability()
    if not 0 <= p <= 1:
        raise UsageError(f"--augment must be in [0, 1], got {p:g}")
    if p > 0 and cfg.model != "edm":
        raise UsageError(
            f"--augment is EDM's (its network takes the augmentation labels); {cfg.model} "
            "trains without it: give --augment 0"
        )
    if cfg.latents not in LATENTS:
        raise UsageError(f"--latents must be one of {', '.join(LATENTS)}, got {cfg.latents!r}")
    if cfg.ddim_spacing not in SPACINGS:
        raise UsageError(
            f"--ddim-spacing must be one of {', '.join(SPACINGS)}, got {cfg.ddim_spacing!r}"
        )
    if cfg.snap_kimg is not None and not cfg.snap_kimg > 0:
        raise UsageError(f"--snap-kimg must be > 0, got {cfg.snap_kimg}")
    if not cfg.status_kimg > 0 or not cfg.status_sec >= 0:
        raise UsageError("--status-kimg must be > 0 and --status-sec >= 0")


class _Phased:
    """Trainer + cached phases, speaking the fit/sample/state protocol of stability.loop."""

    def __init__(
        self,
        cfg: DeepConfig,
        trainer: Trainer,
        folder: RunFolder,
        n_gen: int,
        progress: bool,
        status: StatusLog | None = None,
    ):
        self.cfg, self.trainer, self.folder = cfg, trainer, folder
        self.n_gen, self.progress, self.status = n_gen, progress, status
        self.t = -1
        self.losses: dict[int, float] = {}
        self._generated: dict[int, np.ndarray] = {}

    def fit(self, data: ImageSet) -> None:
        t = self.t + 1
        path = self.folder.file("checkpoints", f"train_t{t}.pt")
        loss_path = self.folder.file("checkpoints", f"train_t{t}.json")
        if path.exists() and loss_path.exists():
            self.trainer.load(path)
            self.losses[t] = json.loads(loss_path.read_text())["loss"]
        else:
            if t == 0 and self.cfg.init is not None:
                self.trainer.load(self.cfg.init, resume=False)
            loss = float("nan")
            kimg = self.cfg.kimg if t > 0 else self.cfg.init_kimg
            snapshot = self.folder.file("checkpoints", f"snap_t{t}.pt")
            if kimg > 0:
                if self.status is not None:
                    self.status.label = f"fit t={t}"
                loss = self.trainer.train(
                    data.x,
                    kimg,
                    progress=self.progress,
                    snapshot=snapshot if self.cfg.snap_kimg else None,
                    snap_kimg=self.cfg.snap_kimg,
                    status=self.status,
                )
            self.losses[t] = loss
            if dist.is_main():
                self.trainer.save(path)
                atomic_write_text(loss_path, json.dumps({"loss": loss, "images": data.size}))
                self.trainer.drop_snapshot(snapshot)
            dist.barrier()
        self.t = t

    def seeds(self, t: int) -> list[int]:
        if self.cfg.fixed_seeds:
            return list(range(self.n_gen))
        base = (self.cfg.seed * 100_000 + t + 1) * 10_000_000
        return list(range(base, base + self.n_gen))

    def generated(self, t: int) -> np.ndarray:
        """The n_gen images of theta_t (generated once, then read back from the run folder)."""
        from deep.data import load_images, save_zip

        if t in self._generated:
            return self._generated[t]
        path = self.folder.file("generated", f"gen_t{t}.zip")
        if not path.exists():
            clock = time.monotonic()
            images = self.trainer.generate(self.seeds(t), None, self.cfg.gen_batch, self.progress)
            if dist.is_main():
                path.parent.mkdir(parents=True, exist_ok=True)
                save_zip(images, path)
                if self.status is not None:
                    self.status.write(
                        f"[generate t={t}] {len(images)} images in "
                        f"{format_duration(time.monotonic() - clock)}"
                    )
            dist.barrier()
        self._generated = {t: load_images(f"zip={path}").images}
        return self._generated[t]

    def sample(self, k: int, rng) -> ImageSet:
        return ImageSet(self.generated(self.t)[:k])

    def state(self) -> dict:
        return {"t": self.t, "nimg_total": self.trainer.nimg_total}


def default_hooks() -> dict[str, Callable]:
    """Metrics recorded until the image metrics land: pixel statistics of generated images."""

    def pixel_mean_gap(gen: np.ndarray, real: np.ndarray) -> float:
        return float(abs(gen.mean() - real.mean()) / 255)

    def pixel_std_ratio(gen: np.ndarray, real: np.ndarray) -> float:
        return float(gen.std() / real.std())

    return {"pixel_mean_gap": pixel_mean_gap, "pixel_std_ratio": pixel_std_ratio}


def run_deep(
    cfg: DeepConfig,
    out: str | Path,
    progress: bool = False,
    hooks: dict[str, Callable] | None = None,
    status: bool = False,
    figures: bool = True,
) -> dict:
    """Run or resume the retraining loop in folder `out`; returns a description of the results.

    The folder is locked for the whole run (rank 0 holds the lock under torchrun): a second
    command on the same folder stops with a UsageError naming this process, before writing.

    progress : progress bars and a metrics line per iteration (for a terminal)
    status : status lines on stderr and in DIR/log.txt (deep.status; for a log file)
    figures : draw DIR/figures/*.png (a caller that draws its own figure from many runs, as
        `stability reproduce` does, saves their CPU time: about 3 s per run)
    """
    data, n, policy, net = _validate(cfg)
    folder = RunFolder(out, f"deep retrain ({cfg.model})", cfg.options())
    folder.check_writable()
    dist.init(cfg.device)
    with held_by_main(folder.locked):
        _write_config(cfg, folder, net)
        return _run_locked(cfg, folder, (data, n, policy, net), progress, hooks, status, figures)


def _run_locked(
    cfg: DeepConfig, folder: RunFolder, checked, progress, hooks, status, figures=True
) -> dict:
    """The loop of `run_deep` in its locked folder; `checked` is what `_validate` returned."""
    data, n, policy, net = checked
    real = ImageSet(data.images[:n])
    n_gen = max(cfg.n_gen or n, synthetic_count(policy.lam, n))
    trainer = Trainer(net, cfg.train_options(), cfg.seed, cfg.method())
    log = None
    if status and dist.is_main():
        log = StatusLog(
            sys.stderr, folder.file("log.txt"), cfg.status_kimg, cfg.status_sec, trainer.device
        )
    model = _Phased(cfg, trainer, folder, n_gen, progress, log)
    scores = _Scores(folder, model, real, progress, log)
    scores.drift = _ParameterDrift(cfg, net, folder)
    scores.scorer = _ImageScorer(cfg, data, real, folder)
    scores.hooks = {**default_hooks(), **(hooks or {})}

    def fresh(m, rng):
        return ImageSet(data.images[np.sort(rng.choice(len(data.images), size=m, replace=False))])

    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(11,)))
    retrain(model, real, policy, cfg.iterations, rng, on_iteration=scores, fresh_source=fresh)
    metrics = scores.metrics
    result = {"out": str(folder.path), "iterations": cfg.iterations, "metrics": metrics}
    if dist.is_main():
        rows = []
        for name in sorted({k for row in metrics.values() for k in row}):
            vals = np.array(
                [[metrics[str(t)].get(name, np.nan) for t in range(cfg.iterations + 1)]]
            )
            rows.extend(summary_rows(cfg.policy, policy.lam, name, vals))
        write_summary(folder.file("summary.csv"), rows)
        result["figures"] = run_figures(folder, metrics, model.generated, cfg) if figures else []
    dist.barrier()
    return result


class _Scores:
    """The metrics of every iteration (the loop's ``on_iteration``), kept in DIR/metrics.json:
    loss, the parameter drift (``drift``), the image scores (``scorer``) and the ``hooks``
    ``name(generated, real) -> float``."""

    def __init__(self, folder: RunFolder, model: _Phased, real: ImageSet, progress, log):
        self.model, self.real, self.progress, self.log = model, real, progress, log
        self.path = folder.file("metrics.json")
        self.metrics = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.drift: Callable | None = None
        self.scorer: Callable | None = None
        self.hooks: dict[str, Callable] = {}

    def __call__(self, t, wrapped, train_data) -> None:
        key, model = str(t), self.model
        if key not in self.metrics:
            gen = model.generated(t)
            row = {"loss": model.losses.get(t, float("nan")), "train_images": train_data.size}
            row.update(self.drift(model.trainer))
            row.update(self.scorer(gen))
            for name, fn in self.hooks.items():
                row[name] = float(fn(gen, self.real.x))
            self.metrics[key] = row
            if dist.is_main():
                atomic_write_text(self.path, json.dumps(self.metrics, indent=1))
        line = f"t = {t}: " + ", ".join(f"{k} = {v:.4g}" for k, v in self.metrics[key].items())
        if self.progress and dist.is_main():
            print(line, flush=True)
        if self.log is not None:
            self.log.write(f"[metrics] {line}")


def _write_config(cfg: DeepConfig, folder: RunFolder, net) -> None:
    """config.json of the locked run folder (main process), before the run."""
    if dist.is_main():
        network = {k: list(v) if isinstance(v, tuple) else v for k, v in net.__dict__.items()}
        folder.write_config(extra={"network": network})
    dist.barrier()


def resolve_features(cfg: DeepConfig) -> str:
    """The feature space of the image metrics: `auto` is the digits network on digits, none
    elsewhere (FID on natural images needs --features inception=FILE, a local weights file)."""
    if cfg.features == "auto":
        return "digits" if cfg.data.startswith("digits") else "none"
    return cfg.features


class _ImageScorer:
    """FID, precision and recall of generated images against the real ones (deep.metrics),
    in the feature space of the run; the real images' features are computed once."""

    def __init__(self, cfg: DeepConfig, data, real: ImageSet, folder: RunFolder):
        self.spec = resolve_features(cfg)
        self.cfg, self.data, self.real, self.folder = cfg, data, real, folder
        self._extractor = None
        self._real_features = None

    def __call__(self, gen: np.ndarray) -> dict:
        if self.spec == "none":
            return {}
        from deep.features import make_extractor
        from deep.metrics import evaluate

        if self._extractor is None:
            subset = self.data.subset(np.arange(self.real.size))
            with torch.random.fork_rng():
                self._extractor = make_extractor(
                    self.spec,
                    real=subset,
                    cache_dir=self.folder.file("features"),
                    device=self.cfg.device,
                )
                self._real_features = self._extractor(self.real.x)
        with torch.random.fork_rng():
            out = evaluate(self.real.x, gen, self._extractor, real_features=self._real_features)
        return {k: float(out[k]) for k in ("fid", "precision", "recall")}


class _ParameterDrift:
    """||theta_t - theta_0|| / sqrt(p) (Figure 8), and the same distance from theta_0 to a
    fresh random initialisation (the figure's dashed reference line)."""

    def __init__(self, cfg: DeepConfig, net, folder: RunFolder):
        self.cfg, self.net, self.folder = cfg, net, folder
        self._theta0 = None
        self._to_random = None

    @staticmethod
    def _flat(state: dict) -> torch.Tensor:
        return torch.cat(
            [
                v.detach().flatten().double().cpu()
                for k, v in sorted(state.items())
                if v.is_floating_point() and not k.endswith("resample_filter")
            ]
        )

    def __call__(self, trainer: Trainer) -> dict:
        now = self._flat(trainer.net.state_dict())
        if self._theta0 is None:
            path = self.folder.file("checkpoints", "train_t0.pt")
            self._theta0 = self._flat(load_weights(path)["net"]) if path.exists() else now
            with torch.random.fork_rng():  # leave the global stream as it was
                torch.manual_seed(self.cfg.seed + 7919)  # a fixed "random initialisation"
                fresh = self.cfg.method().build(self.net)
            self._to_random = float(
                (self._flat(fresh.state_dict()) - self._theta0).norm() / math.sqrt(now.numel())
            )
        scale = math.sqrt(now.numel())
        return {
            "param_distance": float((now - self._theta0).norm() / scale),
            "param_distance_random_init": self._to_random,
        }
