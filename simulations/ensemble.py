"""R independent small networks trained as one batched ensemble, with one random stream per run.

The R runs of a setting share nothing but the arrays they are stored in: run r's weights are
slice r of every parameter tensor, its loss depends only on them, and Adam's update is
elementwise, so one optimizer over the stacked parameters is R independent Adam optimizers.

The network (``EnsembleMLP``) is torchcfm's MLP, Linear - SELU three times then Linear, written
with torch's own operations only: one batched affine map per layer for all runs
(``torch.baddbmm``: bias + (R, N, a) @ (R, a, b)), ``torch.nn.functional.selu`` between layers,
and torch's autograd for the gradients. It runs in any dtype and on any device, and changing the
network means editing ``EnsembleMLP.forward`` and nothing else. SELU is applied in place on the
output of baddbmm, which no autograd node keeps (baddbmm's backward needs only its inputs, and
SELU's backward is written in terms of its output): the activation reuses baddbmm's buffer
instead of a new allocation, which made the training step about 10% faster (CPU time, R = 50).

Speed (``python benchmarks/twod_ensemble.py --runs 50 --steps 30 --threads 1``, CPU time per
step of 50 runs): DDPM 0.018-0.019 s, CFM 0.018-0.019 s, 2.8-3.0x faster than 50 sequential
torchcfm MLPs (OT-CFM 7.7-7.8x). Hand-written fused numba kernels for the SELU layers (removed)
made it 0.013 s, but tied the network's shape to their code. ``torch.compile`` makes the
network's step 20-24% faster but costs 30 s of compilation per process from a cold cache and
needs a C++ compiler at run time, more than it saves on small runs; it is not used (numbers in
``benchmarks/twod_ensemble.py``).

Randomness comes from one numpy Generator per run (``RunStreams``), so a run's numbers do not
depend on how many other runs share its ensemble, and the streams' states are part of the
checkpoints.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class RunStreams:
    """One numpy Generator per run, drawn as stacked arrays whose first axis is the run.

    Run r's Generator is seeded by ``SeedSequence(seed, spawn_key=(*key, r))``, with r its
    global index, so its draws do not depend on which other runs share the object.

    Parameters
    ----------
    seed : int
        The simulation seed.
    key : tuple of int
        Names the stream family (e.g. ``(3, lam_key)``), so that different uses of a run's
        randomness (initialisation, training, sampling) are independent streams.
    runs : iterable of int
        Global run indices, length R.
    """

    def __init__(self, seed: int, key: tuple, runs):
        self.gens = [
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*key, int(r))))
            for r in runs
        ]

    @classmethod
    def joined(cls, parts: list[RunStreams]) -> RunStreams:
        """The streams of several RunStreams, in order, as one (the same Generator objects).

        Drawing from the joined object advances the parts' streams, so the parts can keep being
        used for their own runs (a joint ensemble samples all lambdas at once, each lambda's
        policy draws from its own streams).
        """
        out = cls.__new__(cls)
        out.gens = [g for p in parts for g in p.gens]
        return out

    def __len__(self) -> int:
        """R, the number of runs (streams)."""
        return len(self.gens)

    def random(self, shape: tuple) -> np.ndarray:
        """Uniform draws on [0, 1), run r's slice from run r's stream.

        Parameters
        ----------
        shape : tuple of int
            ``(R, *rest)``; ``shape[0]`` must equal R.

        Returns
        -------
        ndarray, float64, shape ``(R, *rest)``
        """
        return np.stack([g.random(shape[1:]) for g in self.gens])

    def standard_normal(self, shape: tuple) -> np.ndarray:
        """Standard normal draws, run r's slice from run r's stream.

        Parameters
        ----------
        shape : tuple of int
            ``(R, *rest)``; ``shape[0]`` must equal R.

        Returns
        -------
        ndarray, float64, shape ``(R, *rest)``
        """
        return np.stack([g.standard_normal(shape[1:]) for g in self.gens])

    def standard_normal_ragged(self, counts, tail: tuple) -> np.ndarray:
        """Standard normal draws of a different count per run, zero-padded to the largest.

        Run r draws ``counts[r]`` rows from its stream, exactly what ``standard_normal`` draws
        for a single run of that count, so its stream does not depend on the other runs' counts.

        Parameters
        ----------
        counts : sequence of int
            R counts.
        tail : tuple of int
            Shape of one row.

        Returns
        -------
        ndarray, float64, shape ``(R, max(counts), *tail)``
            Rows ``counts[r]:`` of run r are 0.
        """
        out = np.zeros((len(self.gens), max(counts), *tail))
        for r, (g, c) in enumerate(zip(self.gens, counts)):
            out[r, :c] = g.standard_normal((c, *tail))
        return out

    def integers(self, high: int, shape: tuple) -> np.ndarray:
        """Uniform integers in [0, high), run r's slice from run r's stream.

        Parameters
        ----------
        high : int
            Exclusive upper bound.
        shape : tuple of int
            ``(R, *rest)``; ``shape[0]`` must equal R.

        Returns
        -------
        ndarray, int64, shape ``(R, *rest)``
        """
        return np.stack([g.integers(0, high, size=shape[1:]) for g in self.gens])

    def state(self) -> list:
        """The R bit generators' states (plain dicts, for checkpoints), in run order."""
        return [g.bit_generator.state for g in self.gens]

    def set_state(self, states: list) -> None:
        """Restore the states returned by ``state`` (a list of R dicts, in run order)."""
        for g, s in zip(self.gens, states):
            g.bit_generator.state = s


class EnsembleMLP(torch.nn.Module):
    """R MLPs with the layout of torchcfm's MLP (Linear - SELU x3 - Linear), batched over runs.

    in_dim -> width -> width -> width -> out_dim with SELU activations, as
    ``torchcfm.models.MLP(dim, time_varying=True, w=width)`` for flow matching (in_dim = dim + 1
    for the time input). Layer l of run r computes ``x @ weights[l][r] + biases[l][r]``, the
    transposed convention of torch.nn.Linear (whose weight is ``weights[l][r].T``).

    Parameters
    ----------
    runs : int
        R, the number of independent networks.
    in_dim, out_dim : int
        Input and output sizes.
    width : int
        Size of the three hidden layers (the paper's 2D experiments use 64).

    Attributes
    ----------
    weights : ParameterList
        Four tensors of shapes (R, in_dim, width), (R, width, width), (R, width, width),
        (R, width, out_dim).
    biases : ParameterList
        Four tensors of shapes (R, 1, width) x3 and (R, 1, out_dim).
    """

    def __init__(self, runs: int, in_dim: int, out_dim: int, width: int = 64):
        super().__init__()
        self.runs = runs
        sizes = [in_dim, width, width, width, out_dim]
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.empty(runs, a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.empty(runs, 1, b)) for b in sizes[1:]]
        )

    def reset_parameters(self, streams: RunStreams) -> None:
        """torch.nn.Linear's default initialisation, drawn from each run's own stream.

        Every weight and bias of a layer with fan_in inputs is uniform on
        [-1/sqrt(fan_in), 1/sqrt(fan_in)].

        Parameters
        ----------
        streams : RunStreams
            R streams, one per network.
        """
        with torch.no_grad():
            for w, b in zip(self.weights, self.biases):
                bound = 1.0 / math.sqrt(w.shape[1])
                w.copy_(torch.from_numpy((streams.random(tuple(w.shape)) * 2 - 1) * bound))
                b.copy_(torch.from_numpy((streams.random(tuple(b.shape)) * 2 - 1) * bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply run r's network to x[r], for every r.

        Parameters
        ----------
        x : Tensor, shape (R, N, in_dim)
            N inputs per run, in the parameters' dtype and on their device.

        Returns
        -------
        Tensor, shape (R, N, out_dim)
        """
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                # in place: baddbmm's output is saved by no autograd node (see module docstring)
                h = torch.nn.functional.selu(h, inplace=True)
        return h

    def flat_params(self) -> torch.Tensor:
        """Each run's parameters as one detached vector, shape (R, p) (for parameter distances)."""
        parts = [p.detach().reshape(self.runs, -1) for p in self.parameters()]
        return torch.cat(parts, dim=1)

    @property
    def params_per_run(self) -> int:
        """p, the number of parameters of one run's network."""
        return sum(p[0].numel() for p in self.parameters())


def minibatch_indices(streams: RunStreams, size, batch: int, steps: int) -> np.ndarray:
    """Epoch-style minibatches for each run: shuffle, take batches, reshuffle when exhausted.

    A partial batch at the end of an epoch is dropped, as with ``drop_last=True``. Run r's
    minibatches depend only on its stream and its own training-set size, so runs of different
    sizes (the lambdas of a joint ensemble: n real points, n + lam n, or n synthetic) draw
    exactly what each would draw alone.

    Parameters
    ----------
    streams : RunStreams
        R streams; run r's permutations come from run r's stream.
    size : int or sequence of int
        Number of points in each run's training set: one size for all runs, or R sizes.
    batch : int
        Minibatch size (capped at each run's size; the capped sizes must be equal).
    steps : int
        Number of minibatches per run.

    Returns
    -------
    ndarray, int64, shape (steps, R, min(batch, size))
        Indices into each run's training set; ``out[k, r]`` is run r's k-th minibatch.
    """
    runs = len(streams)
    sizes = [int(size)] * runs if np.ndim(size) == 0 else [int(s) for s in size]
    if len(sizes) != runs:
        raise ValueError(f"{len(sizes)} training-set sizes for {runs} runs")
    batches = {min(batch, s) for s in sizes}
    if len(batches) != 1:
        raise ValueError(f"runs of sizes {sorted(set(sizes))} give different minibatch sizes")
    batch = batches.pop()
    out = np.empty((runs, steps, batch), dtype=np.int64)
    for r, (g, s) in enumerate(zip(streams.gens, sizes)):
        per_epoch = s // batch
        epochs = math.ceil(steps / per_epoch)
        perms = np.stack([g.permutation(s)[: per_epoch * batch] for _ in range(epochs)])
        out[r] = perms.reshape(epochs * per_epoch, batch)[:steps]
    return np.ascontiguousarray(out.transpose(1, 0, 2))
