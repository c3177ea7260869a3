"""Training and generation of an EDM model: Adam, EMA with a half-life in images, lr ramp-up,
budgets in images seen (kimg), DDP across processes, checkpoints loaded with weights_only.

Conventions follow the EDM paper's training setup (Appendix F): Adam (beta1 = 0.9, beta2 = 0.999,
eps = 1e-8), learning rate ramped up linearly over ``lr_rampup_kimg`` thousand images, an EMA of
the weights with a half-life of ``ema_halflife_kimg`` thousand images, itself ramped up as
min(half-life, ratio x images seen); non-finite gradients are zeroed.

Ramp-up at retraining (``rampup``): EDM's official code counts images from 0 whenever training
resumes from a network pickle, so each retraining of the paper restarts the learning-rate
ramp-up and the EMA ramp (``"restart"``, the default, faithful to the paper); ``"continue"``
keeps counting across iterations; ``"none"`` uses the full rate from the first step.

Snapshots inside a fit (``Trainer.train(snapshot=PATH, snap_kimg=K)``): every K kimg the whole
training state is written atomically to PATH: network, EMA, Adam, image counters, the phase's
stream (it draws the minibatch indices and the method's noise: the data order), the global torch
stream of every process (dropout) and, on CUDA, the device streams. A fit started again with
the same PATH continues from the snapshot and ends with bitwise the same weights on a CPU as the
uninterrupted fit (on a GPU, up to its nondeterministic kernels).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deep import dist
from deep.edm import SamplerConfig, to_uint8
from deep.methods import EDMMethod, Method, net_to_dict
from deep.status import StatusLog
from stability.errors import RunError, UsageError

RAMPUPS = ("restart", "continue", "none")
FORMAT = "retrain-stability/deep-v1"
DTYPES = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings (see the module docstring)."""

    batch: int = 256
    lr: float = 1e-3
    lr_rampup_kimg: float = 10000.0
    # None: the model's default (OT-CFM: torchcfm's decay of 0.9999 per step; EDM and DDPM: a
    # half-life of 500 kimg). A half-life given here applies to every model; so does ema_decay
    # (per step), which overrides it. A fixed per-step decay leaves a short run's EMA near the
    # random initialisation (0.9999^1000 = 0.90), hence the half-life for short runs.
    ema_halflife_kimg: float | None = None
    ema_decay: float | None = None
    ema_rampup_ratio: float = 0.05
    rampup: str = "restart"
    device: str = "cpu"
    dtype: str = "fp32"
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self):
        if self.rampup not in RAMPUPS:
            raise UsageError(f"rampup must be one of {', '.join(RAMPUPS)}, got {self.rampup!r}")
        if self.dtype not in DTYPES:
            raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.batch < 1 or not self.lr > 0:
            raise UsageError("batch must be >= 1 and lr > 0")
        if self.ema_halflife_kimg is not None and not self.ema_halflife_kimg > 0:
            raise UsageError(f"ema half-life must be > 0 kimg, got {self.ema_halflife_kimg}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise UsageError(f"ema decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class _Phase:
    """One call of Trainer.train: its stream, its slice of the global batch, where it stands."""

    steps: int
    sl: slice
    gen: torch.Generator
    start: int = 0
    losses: list = field(default_factory=list)


class Trainer:
    """An EDM network, its EMA and Adam, trained on uint8 images (N, C, H, W).

    The global minibatch of every step (indices and the method's noise) comes from one stream
    seeded by (seed, phase), identical on every process; each process trains on its slice and DDP
    averages the gradients, so a run on W processes follows the single-process run.
    """

    def __init__(self, net_cfg, opts: TrainOptions, seed: int = 0, method: Method | None = None):
        self.method = method or EDMMethod()
        self.net_cfg = net_cfg
        self.opts = opts
        self.seed = seed
        self.device = dist.local_device(opts.device)
        if opts.dtype == "tf32" and self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(seed)  # initial weights: a function of the seed only
        self.net = self.method.build(net_cfg).to(self.device)
        if opts.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=opts.lr, betas=(0.9, 0.999), eps=1e-8)
        self.nimg_total = 0  # images seen since the first training
        self.nimg_phase = 0  # images seen since the ramp-ups last restarted
        self.phases = 0
        self._ddp = None

    # ---- training ---------------------------------------------------------------------------
    def _module(self):
        if dist.world() > 1:
            if self._ddp is None:
                ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda:") else None
                self._ddp = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
            return self._ddp
        return self.compiled()

    def compiled(self):
        """The network to train: `net`, or its ``torch.compile`` (built once) under opts.compile."""
        # Static shapes: a fit's batch never changes, and automatic dynamic shapes (a second
        # resolution in one process) failed in inductor (torch 2.13, CPU).
        if self.opts.compile and not hasattr(self, "_compiled"):
            self._compiled = torch.compile(self.net, dynamic=False)
        return getattr(self, "_compiled", self.net)

    def sampling_net(self):
        """The EMA network the samplers call (compiled too under opts.compile; it shares the
        EMA's parameters, so it follows their updates)."""
        if self.opts.compile and not hasattr(self, "_compiled_ema"):
            self._compiled_ema = torch.compile(self.ema, dynamic=False)
        return getattr(self, "_compiled_ema", self.ema)

    def train(
        self,
        images: np.ndarray,
        kimg: float,
        progress: bool = False,
        snapshot: str | Path | None = None,
        snap_kimg: float | None = None,
        status: StatusLog | None = None,
    ) -> float:
        """Train for kimg thousand images drawn from `images` (uint8 (N, C, H, W)); returns the
        mean loss (per image, summed over pixels) of the last tenth of the steps.

        snapshot : file of the fit's training state: written every `snap_kimg` kimg (atomically,
            by the main process) and, if it exists when the fit starts, resumed from; the caller
            removes it once the fit's result is saved (``drop_snapshot``).
        status : prints status lines as the fit goes (deep.status)
        """
        phase = self._begin_phase(images, kimg)
        if snapshot is not None and Path(snapshot).exists():
            self._resume(Path(snapshot), phase, images, kimg)
        module = self._module()
        module.train()
        x_all = torch.from_numpy(images)
        batch = self.opts.batch
        every = max(1, round(snap_kimg * 1000 / batch)) if snapshot and snap_kimg else 0
        bar = None
        if progress and dist.is_main():
            from tqdm import tqdm

            bar = tqdm(
                total=phase.steps, initial=phase.start, desc="train", unit="step", leave=False
            )
        if status is not None and dist.is_main():
            status.start(phase.steps * batch, phase.start * batch)
        for step in range(phase.start, phase.steps):
            phase.losses.append(self._step(module, x_all, phase))
            done = step + 1
            if every and done % every == 0 and done < phase.steps:
                self._write_snapshot(Path(snapshot), phase, done, images, kimg)
            if bar:
                bar.update()
            if status is not None and dist.is_main():
                status.update(done * batch, phase.losses[-1])
        if bar:
            bar.close()
        self.phases += 1
        tail = phase.losses[-max(1, len(phase.losses) // 10) :]
        return float(np.mean(tail))

    def _begin_phase(self, images: np.ndarray, kimg: float) -> _Phase:
        opts = self.opts
        if self.phases > 0 and opts.rampup == "restart":
            self.nimg_phase = 0
        steps = max(1, math.ceil(kimg * 1000 / opts.batch))
        w, r = dist.world(), dist.rank()
        if opts.batch % w:
            raise UsageError(f"batch {opts.batch} is not divisible by the {w} processes")
        local = opts.batch // w
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.phases)
        # Dropout draws from torch's global stream: seed it per (phase, process) so that a
        # resumed phase replays the same masks.
        torch.manual_seed((self.seed * 1_000_003 + self.phases) * 1009 + r)
        return _Phase(steps, slice(r * local, (r + 1) * local), gen)

    def _step(self, module, x_all: torch.Tensor, phase: _Phase) -> float:
        """One optimiser step on the phase's next global minibatch; returns its mean loss."""
        opts = self.opts
        idx = torch.randint(0, len(x_all), (opts.batch,), generator=phase.gen)
        x = x_all[idx[phase.sl]].to(self.device, torch.float32) / 127.5 - 1
        if opts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = opts.lr
        if opts.rampup != "none" and opts.lr_rampup_kimg > 0:
            lr *= min(self.nimg_phase / (opts.lr_rampup_kimg * 1000), 1.0)
        for g in self.opt.param_groups:
            g["lr"] = lr
        autocast = torch.autocast(
            device_type=self.device.split(":")[0],
            dtype=torch.bfloat16,
            enabled=opts.dtype == "bf16",
        )
        with autocast:
            per_image = self.method.loss(module, x, phase.gen, opts.batch, phase.sl)
        loss = per_image.float().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in self.net.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        if self.method.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.method.grad_clip)
        self.opt.step()
        # EDM updates the EMA with the image count before this step's increment.
        self._update_ema()
        self.nimg_total += opts.batch
        self.nimg_phase += opts.batch
        return float(loss.detach())

    # ---- snapshots inside a fit -------------------------------------------------------------
    def _fit_key(self, phase: _Phase, images: np.ndarray, kimg: float) -> dict:
        """What identifies a fit: a snapshot resumes only the fit it was taken from."""
        return {
            "phase": self.phases,
            "seed": self.seed,
            "steps": phase.steps,
            "kimg": float(kimg),
            "batch": self.opts.batch,
            "world": dist.world(),
            "images": len(images),
            "crc32": zlib.crc32(np.ascontiguousarray(images).data),
        }

    def _write_snapshot(self, path: Path, phase: _Phase, done: int, images, kimg) -> None:
        from stability.runs.runfolder import atomic_write_bytes

        torch_states = dist.gather_objects(torch.get_rng_state())
        cuda_states = dist.gather_objects(
            torch.cuda.get_rng_state(self.device) if self.device.startswith("cuda") else None
        )
        if dist.is_main():
            state = self.state_dict()
            state["snapshot"] = {
                **self._fit_key(phase, images, kimg),
                "done": done,
                "losses": torch.tensor(phase.losses, dtype=torch.float64),
                "gen": phase.gen.get_state(),
                "torch_rng": torch_states,
                "cuda_rng": cuda_states if cuda_states[0] is not None else [],
            }
            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write_bytes(path, buf.getvalue())
        dist.barrier()

    def _resume(self, path: Path, phase: _Phase, images, kimg) -> None:
        state = load_weights(path, self.device)
        snap = state.get("snapshot")
        key = self._fit_key(phase, images, kimg)
        if state.get("format") != FORMAT or snap is None:
            raise UsageError(f"{path} is not a training snapshot of this toolkit")
        differs = [k for k in key if snap.get(k) != key[k]]
        if differs or state.get("method") != self.method.name:
            raise UsageError(
                f"{path} is a snapshot of another fit ({', '.join(differs) or 'model'} differ); "
                "delete it to start this fit from its beginning"
            )
        self.net.load_state_dict(state["net"], strict=True)
        self.ema.load_state_dict(state["ema"], strict=True)
        self.opt.load_state_dict(state["opt"])
        self.nimg_total, self.nimg_phase = int(state["nimg_total"]), int(state["nimg_phase"])
        phase.start, phase.losses = int(snap["done"]), snap["losses"].tolist()
        phase.gen.set_state(snap["gen"])
        torch.set_rng_state(snap["torch_rng"][dist.rank()])
        if snap["cuda_rng"] and self.device.startswith("cuda"):
            torch.cuda.set_rng_state(snap["cuda_rng"][dist.rank()], self.device)

    @staticmethod
    def drop_snapshot(path: str | Path | None) -> None:
        """Remove a fit's snapshot once its result is saved (main process; idempotent)."""
        if path is not None and dist.is_main():
            Path(path).unlink(missing_ok=True)

    @torch.no_grad()
    def _update_ema(self):
        opts = self.opts
        decay = opts.ema_decay
        if decay is None and opts.ema_halflife_kimg is None:
            decay = self.method.ema_decay
        if decay is not None:  # a fixed decay per step (torchcfm's training)
            for pe, p in zip(self.ema.parameters(), self.net.parameters()):
                pe.copy_(p.detach().lerp(pe, decay))
            return
        half = (opts.ema_halflife_kimg if opts.ema_halflife_kimg is not None else 500.0) * 1000
        nimg = self.nimg_phase if opts.rampup != "none" else self.nimg_total
        if opts.ema_rampup_ratio is not None and opts.ema_rampup_ratio > 0:
            half = min(half, nimg * opts.ema_rampup_ratio)
        beta = 0.5 ** (opts.batch / max(half, 1e-8))
        for pe, p in zip(self.ema.parameters(), self.net.parameters()):
            pe.copy_(p.detach().lerp(pe, beta))

    # ---- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        seeds: list[int],
        sampler: SamplerConfig | None = None,
        batch: int = 256,
        progress: bool = False,
    ) -> np.ndarray:
        """uint8 images (len(seeds), C, H, W) from the EMA network, one seed per image; split
        across processes (rank r draws seeds[r::W]) and gathered in seed order."""
        if sampler is not None and isinstance(self.method, EDMMethod):
            self.method.sampler = sampler
        w, r = dist.world(), dist.rank()
        mine = seeds[r::w]
        shape = self.method.shape(self.net_cfg)
        net = self.sampling_net()
        dtype = torch.bfloat16 if self.opts.dtype == "bf16" else torch.float32
        chunks = []
        starts = range(0, len(mine), batch)
        if progress and dist.is_main():
            from tqdm import tqdm

            starts = tqdm(starts, desc="generate", unit="batch", leave=False)
        for s in starts:
            imgs = self.method.sample(net, mine[s : s + batch], shape, self.device, dtype)
            chunks.append(to_uint8(imgs))
        local = np.concatenate(chunks) if chunks else np.zeros((0, *shape), np.uint8)
        counts = [len(seeds[k::w]) for k in range(w)]
        gathered = dist.gather_rows(local, counts)
        # Undo the round-robin split: rank k holds seeds k, k + W, ...
        order = np.concatenate([np.arange(k, len(seeds), w) for k in range(w)])
        out = np.empty_like(gathered)
        out[order] = gathered
        return out

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a checkpoint holds, to resume training or rebuild the network.

        Returns
        -------
        dict
            ``format`` (FORMAT), ``method`` and ``method_options``, ``net_cfg`` (the network's
            size, so a checkpoint is read without knowing it), the state dicts ``net``, ``ema``
            and ``opt``, the images seen ``nimg_total`` and ``nimg_phase``, ``phases`` (fits
            completed) and ``seed``.
        """
        return {
            "format": FORMAT,
            "method": self.method.name,
            "method_options": self.method.options(),
            "net_cfg": net_to_dict(self.net_cfg),
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "nimg_total": self.nimg_total,
            "nimg_phase": self.nimg_phase,
            "phases": self.phases,
            "seed": self.seed,
        }

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically (torch.save of tensors and plain types only)."""
        from stability.runs.runfolder import atomic_write_bytes

        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        atomic_write_bytes(Path(path), buf.getvalue())

    def load(self, path: Path, resume: bool = True) -> None:
        """Load our checkpoint, a plain state dict of the network (e.g. exported official EDM
        weights) or torchcfm's checkpoint dict (net_model, ema_model, optim, step):
        torch.load(weights_only=True) or safetensors; never arbitrary unpickling.

        resume=True continues the checkpoint's run (its seed keys the training streams);
        resume=False starts this run from its weights (--init), keeping this run's seed.
        """
        state = load_weights(path, self.device)
        if "net_model" in state and "ema_model" in state:  # torchcfm's CIFAR-10 checkpoints
            self.net.load_state_dict(_strip_module(state["net_model"]), strict=True)
            self.ema.load_state_dict(_strip_module(state["ema_model"]), strict=True)
            return
        if state.get("format") == FORMAT:
            if state.get("method", "edm") != self.method.name:
                raise UsageError(
                    f"{Path(path).name} holds a {state.get('method')} model, not {self.method.name}"
                )
            self.net.load_state_dict(state["net"], strict=True)
            self.ema.load_state_dict(state["ema"], strict=True)
            self.opt.load_state_dict(state["opt"])
            self.nimg_total = int(state["nimg_total"])
            self.nimg_phase = int(state["nimg_phase"])
            self.phases = int(state["phases"])
            if resume:  # the training streams are keyed by (seed, phase)
                self.seed = int(state.get("seed", self.seed))
        else:
            self.net.load_state_dict(state, strict=True)
            self.ema.load_state_dict(state, strict=True)


def _strip_module(sd: dict) -> dict:
    """A state dict saved from a DDP-wrapped network, with its "module." prefixes removed."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_weights(path, device="cpu") -> dict:
    """A dict of tensors from a .pt (weights_only=True) or .safetensors file.

    Raises
    ------
    UsageError
        With one line naming the file when it is missing, empty, truncated, corrupt, refused
        by the weights-only unpickler (it asks for code to run) or holds no dict.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"checkpoint {str(p)!r} does not exist")
    if p.stat().st_size == 0:
        raise UsageError(f"checkpoint {str(p)!r} is empty (0 bytes)")
    try:
        if p.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise UsageError("reading .safetensors needs the safetensors package") from None
            state = load_file(str(p), device=device)
        else:
            state = torch.load(p, map_location=device, weights_only=True)
    except UsageError:
        raise
    except Exception as exc:  # refused pickles and corrupt or truncated files are bad input
        raise UsageError(f"cannot load checkpoint {str(p)!r}: {_load_failure(exc)}") from None
    if not isinstance(state, dict):
        raise UsageError(
            f"checkpoint {str(p)!r} holds a {type(state).__name__}, not a dict of tensors"
        )
    return state


def _load_failure(exc: Exception) -> str:
    """One line saying why torch.load or safetensors refused a file.

    torch's weights-only refusal opens with several lines of advice (re-run with
    weights_only=False: never, here); the reason is on the line of the unpickler's error.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            reason = line.partition("WeightsUnpickler error:")[2].strip()
            if not reason and i + 1 < len(lines):
                reason = lines[i + 1]
            # Drop torch's advice to allowlist the global: a checkpoint never needs one here.
            reason = reason.partition(" Please use")[0]
            return (
                f"refused by torch.load(weights_only=True): corrupt, truncated or unsafe ({reason})"
            )
    if not lines:
        return f"corrupt or truncated ({type(exc).__name__})"
    return f"corrupt or truncated ({type(exc).__name__}: {lines[0]})"


@contextlib.contextmanager
def held_by_main(acquire: Callable[[], AbstractContextManager]) -> Iterator[None]:
    """Hold a lock (``acquire()``: a run folder's or an output's) on rank 0 only, for a block
    that every rank runs; every rank learns whether rank 0 got it.

    Under torchrun only rank 0 writes files, so only it locks the output. Its outcome is
    broadcast before anything else happens, so that a refused lock makes every rank stop with
    the same error instead of leaving ranks 1.. waiting at the next collective. Without a
    process group this is ``with acquire():``.

    Parameters
    ----------
    acquire : callable
        Returns the lock's context manager (e.g. ``folder.locked``).

    Raises
    ------
    UsageError
        On every rank when rank 0 could not take the lock (another process holds it: the
        message names it).
    RunError
        On ranks 1.. when taking the lock failed otherwise on rank 0 (rank 0 raises its own
        exception).
    """
    stack = contextlib.ExitStack()
    failure, error = None, None
    if dist.is_main():
        try:
            stack.enter_context(acquire())
        except Exception as exc:  # every rank must hear of it: the others wait for the outcome
            error = exc
            failure = (isinstance(exc, UsageError), str(exc).splitlines()[0] if str(exc) else "")
    failure = dist.broadcast_object(failure)
    if error is not None:
        raise error
    if failure is not None:
        usage, message = failure
        raise UsageError(message) if usage else RunError(f"rank 0 could not lock: {message}")
    with stack:
        yield
