"""R independent small networks trained as one batched ensemble, with one random stream per run.

The R runs of a setting share nothing but the arrays they are stored in: run r's weights are
slice r of every parameter tensor, its loss depends only on them, and Adam's update is
elementwise, so one optimizer over the stacked parameters is R independent Adam optimizers.
A forward pass is one batched matrix product (torch.bmm) per 64 x 64 hidden layer for all runs.
Everything else runs on compiled kernels (simulations._selu_kernels) with their own backward
passes: the first layer (3 inputs) with its SELU, the bias + SELU of the middle layer in place,
and the last SELU fused with the output layer (2 outputs). Those are the shapes where BLAS is
slow, and at these sizes (R = 50 runs x 256 points x 64 units, 3.3 MB per activation) each pass
is bound by memory traffic, so fusing passes is what saves time: one training step went from
10.5 to 7.7 ms (DDPM, R = 50, this machine). ``reference_forward`` is the same network with
torch's own operations, used for other dtypes and devices and as the tests' reference.

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

    Parameters
    ----------
    seed : the simulation seed
    key : a tuple of ints naming the stream family (e.g. (3, lam_key))
    runs : run indices (global indices, so a run's stream does not depend on the others)
    """

    def __init__(self, seed: int, key: tuple, runs):
        self.gens = [
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*key, int(r))))
            for r in runs
        ]

    def __len__(self):
        return len(self.gens)

    def random(self, shape):
        """Uniform [0, 1) draws of shape (R, *shape[1:]) (shape[0] must equal R)."""
        return np.stack([g.random(shape[1:]) for g in self.gens])

    def standard_normal(self, shape):
        return np.stack([g.standard_normal(shape[1:]) for g in self.gens])

    def integers(self, high, shape):
        return np.stack([g.integers(0, high, size=shape[1:]) for g in self.gens])

    def state(self) -> list:
        return [g.bit_generator.state for g in self.gens]

    def set_state(self, states: list) -> None:
        for g, s in zip(self.gens, states):
            g.bit_generator.state = s


def _np(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor's memory (autograd Functions pass undetached inputs)."""
    return t.detach().numpy()


def _row_bias(b: torch.Tensor) -> np.ndarray:
    """(R, 1, H) bias -> (R, H) numpy view."""
    return _np(b).reshape(b.shape[0], b.shape[2])


def _writable(ctx, pre: torch.Tensor) -> torch.Tensor:
    """pre itself, marked as modified in place, or a contiguous copy if it is not contiguous."""
    if not pre.is_contiguous():
        return pre.contiguous()
    ctx.mark_dirty(pre)
    return pre


class _InputLayer(torch.autograd.Function):
    """SELU(x @ w + b) for a narrow input (x: (R, N, K), K = 3 here), in one compiled pass.

    w: (R, K, H), b: (R, 1, H) -> (R, N, H). A batched GEMM with 3 inner terms runs far below
    BLAS speed, and its output would be written and read again by the activation.
    """

    @staticmethod
    def forward(ctx, x, w, b):
        from simulations._selu_kernels import input_layer_forward

        x, w = x.contiguous(), w.contiguous()
        out = torch.empty(x.shape[0], x.shape[1], w.shape[2], dtype=x.dtype)
        input_layer_forward(_np(x), _np(w), _row_bias(b), out.numpy())
        ctx.save_for_backward(out, x, w)
        return out

    @staticmethod
    def backward(ctx, grad):
        from simulations._selu_kernels import input_layer_backward

        out, x, w = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        grad_x = torch.empty_like(x) if need_x else torch.empty(0, 0, 0, dtype=x.dtype)
        grad_w, grad_b = torch.empty_like(w), torch.empty(w.shape[0], 1, w.shape[2])
        input_layer_backward(
            _np(grad.contiguous()),
            _np(out),
            _np(x),
            _np(w),
            grad_x.numpy(),
            grad_w.numpy(),
            grad_b[:, 0].numpy(),
            need_x,
        )
        return (grad_x if need_x else None), grad_w, grad_b


class _BiasSELU(torch.autograd.Function):
    """SELU(pre + b), pre: (R, N, H) (a hidden layer's batched GEMM), b: (R, 1, H).

    Computed in place in pre: it is a temporary that no other node saves (bmm keeps its inputs),
    and these passes are bound by memory traffic at the ensembles' sizes. Backward gives the
    bias gradient in the same pass as SELU'.
    """

    @staticmethod
    def forward(ctx, pre, b):
        from simulations._selu_kernels import bias_selu_forward

        pre = _writable(ctx, pre)
        bias_selu_forward(_np(pre), _row_bias(b), _np(pre))
        ctx.save_for_backward(pre)
        return pre

    @staticmethod
    def backward(ctx, grad):
        from simulations._selu_kernels import selu_backward

        (out,) = ctx.saved_tensors
        grad_pre = torch.empty_like(out)
        grad_b = torch.empty(out.shape[0], 1, out.shape[2])
        selu_backward(_np(grad.contiguous()), _np(out), grad_pre.numpy(), grad_b[:, 0].numpy())
        return grad_pre, grad_b


class _Head(torch.autograd.Function):
    """The last activation and a narrow output layer: SELU(pre + b) @ w_out + b_out.

    pre: (R, N, H), b: (R, 1, H), w_out: (R, H, M), b_out: (R, 1, M) -> (R, N, M), M = 2 here.
    BLAS is slow for batched GEMMs with 2 output columns (and for their weight gradients), and
    fusing them with the activation reads the hidden layer once each way instead of three times.
    """

    @staticmethod
    def forward(ctx, pre, b, w_out, b_out):
        from simulations._selu_kernels import head_forward

        pre = _writable(ctx, pre)
        w_out = w_out.contiguous()
        y = torch.empty(pre.shape[0], pre.shape[1], w_out.shape[2], dtype=pre.dtype)
        head_forward(_np(pre), _row_bias(b), _np(w_out), _row_bias(b_out), y.numpy())
        ctx.save_for_backward(pre, w_out)
        # pre now holds the activation, an output of this node only in memory: marked dirty
        # for autograd's version check, not differentiable itself
        ctx.mark_non_differentiable(pre)
        ctx.set_materialize_grads(False)  # no zero-filled gradient for that second output
        return y, pre

    @staticmethod
    def backward(ctx, grad_y, _unused):
        from simulations._selu_kernels import head_backward

        out, w_out = ctx.saved_tensors
        if grad_y is None:
            return None, None, None, None
        runs, _, width = out.shape
        grad_pre = torch.empty_like(out)
        grad_b = torch.empty(runs, 1, width)
        grad_w = torch.empty_like(w_out)
        grad_b_out = torch.empty(runs, 1, w_out.shape[2])
        head_backward(
            _np(grad_y.contiguous()),
            _np(out),
            _np(w_out),
            grad_pre.numpy(),
            grad_b[:, 0].numpy(),
            grad_w.numpy(),
            grad_b_out[:, 0].numpy(),
        )
        return grad_pre, grad_b, grad_w, grad_b_out


class EnsembleMLP(torch.nn.Module):
    """R MLPs x -> out with the layout of torchcfm's MLP (Linear-SELU x3 - Linear), batched.

    in_dim -> w -> w -> w -> out_dim with SELU activations, as torchcfm.models.MLP(dim,
    time_varying=True, w=64) for flow matching (in_dim = dim + 1 for the time input).
    Weights are initialised like torch.nn.Linear (uniform in +-1/sqrt(fan_in)), from each run's
    own stream.

    Parameters
    ----------
    runs : R
    in_dim, out_dim, width : layer sizes
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
        """torch.nn.Linear's default initialisation, drawn from each run's stream."""
        with torch.no_grad():
            for w, b in zip(self.weights, self.biases):
                bound = 1.0 / math.sqrt(w.shape[1])
                w.copy_(torch.from_numpy((streams.random(tuple(w.shape)) * 2 - 1) * bound))
                b.copy_(torch.from_numpy((streams.random(tuple(b.shape)) * 2 - 1) * bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (R, N, in_dim) -> (R, N, out_dim); compiled kernels for float32 on the CPU."""
        tensors = [x, *self.weights, *self.biases]
        if not all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors):
            return self.reference_forward(x)
        (w1, w2, w3, w4), (b1, b2, b3, b4) = self.weights, self.biases
        h = _InputLayer.apply(x, w1, b1)
        h = _BiasSELU.apply(torch.bmm(h, w2), b2)
        return _Head.apply(torch.bmm(h, w3), b3, w4, b4)[0]

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function with torch's own operations (any dtype and device)."""
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.nn.functional.selu(h)
        return h

    def flat_params(self) -> torch.Tensor:
        """Each run's parameters as one vector, shape (R, p) (for parameter distances)."""
        parts = [p.detach().reshape(self.runs, -1) for p in self.parameters()]
        return torch.cat(parts, dim=1)

    @property
    def params_per_run(self) -> int:
        return sum(p[0].numel() for p in self.parameters())


def minibatch_indices(streams: RunStreams, size: int, batch: int, steps: int) -> np.ndarray:
    """Epoch-style minibatches for each run: shuffle, take batches, reshuffle when exhausted.

    Returns an int array of shape (steps, R, min(batch, size)) indexing each run's training set
    (size points); a partial batch at the end of an epoch is dropped, as with drop_last=True.
    """
    runs = len(streams)
    batch = min(batch, size)
    per_epoch = size // batch
    epochs = math.ceil(steps / per_epoch)
    out = np.empty((runs, epochs * per_epoch, batch), dtype=np.int64)
    for r, g in enumerate(streams.gens):
        perms = np.stack([g.permutation(size)[: per_epoch * batch] for _ in range(epochs)])
        out[r] = perms.reshape(epochs * per_epoch, batch)
    return np.ascontiguousarray(out[:, :steps].transpose(1, 0, 2))
