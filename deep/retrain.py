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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deep import dist
from deep.config import (  # noqa: F401 (public names of deep.retrain, kept)
    NETS,
    DeepConfig,
    check_run_options,
    net_config,
    quick_config,
    validate_run,
)
from deep.figures import run_figures
from deep.status import StatusLog, format_duration
from deep.train import Trainer, held_by_main, load_weights
from stability.loop import retrain, synthetic_count
from stability.runs.runfolder import RunFolder, atomic_write_text, summary_rows, write_summary


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
    data, n, policy, net = validate_run(cfg)
    folder = RunFolder(out, f"deep retrain ({cfg.model})", cfg.options())
    folder.check_writable()
    dist.init(cfg.device)
    with held_by_main(folder.locked):
        _write_config(cfg, folder, net)
        return _run_locked(cfg, folder, (data, n, policy, net), progress, hooks, status, figures)


def _run_locked(
    cfg: DeepConfig, folder: RunFolder, checked, progress, hooks, status, figures=True
) -> dict:
    """The loop of `run_deep` in its locked folder; `checked` is what `deep.config.validate_run` returned."""
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
