"""Algorithm 1 and the data policies (stability.loop), with a recording model."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stability.loop import POLICIES, LoopState, PointSet, Policy, retrain, synthetic_count


class TagModel:
    """A model whose samples are tagged with the iteration that produced them."""

    def __init__(self):
        self.t = -1
        self.seen = []

    def fit(self, data):
        self.t += 1
        self.seen.append(data.x.copy())

    def sample(self, k, rng):
        return PointSet(np.full((1, k, 1), 100.0 + self.t))

    def state(self):
        return {"t": self.t}


def _real(n):
    return PointSet(np.arange(n, dtype=float).reshape(1, n, 1))


def _fresh(m, rng):
    return PointSet(-1.0 - rng.random((1, m, 1)))


@given(
    name=st.sampled_from(POLICIES),
    lam=st.sampled_from([0.0, 0.3, 1.0, 2.5]),
    n=st.integers(2, 30),
    iterations=st.integers(1, 6),
)
def test_training_set_sizes_match_policy_sizes(name, lam, n, iterations):
    policy = Policy(name, lam)
    model = TagModel()
    sizes = []
    retrain(
        model,
        _real(n),
        policy,
        iterations,
        np.random.default_rng(0),
        on_iteration=lambda t, m, data: sizes.append(data.size),
        fresh_source=_fresh,
    )
    assert sizes == policy.sizes(n, iterations)


def test_mix_uses_all_real_data_and_fresh_model_samples():
    model = TagModel()
    retrain(model, _real(10), Policy("mix", 0.5), 3, np.random.default_rng(0))
    for t, seen in enumerate(model.seen[1:], start=1):
        assert np.array_equal(seen[0, :10, 0], np.arange(10))  # D_real, every iteration
        assert np.all(seen[0, 10:, 0] == 100.0 + t - 1)  # floor(0.5 * 10) samples of theta_{t-1}
        assert seen.shape[1] == 15


def test_fully_synthetic_uses_model_samples_only():
    model = TagModel()
    retrain(model, _real(8), Policy("mix", math.inf), 2, np.random.default_rng(0))
    assert np.all(model.seen[2][0, :, 0] == 101.0) and model.seen[2].shape[1] == 8


def test_accumulate_keeps_every_batch():
    model = TagModel()
    retrain(model, _real(4), Policy("accumulate", 1.0), 3, np.random.default_rng(0))
    last = model.seen[3][0, :, 0]
    assert sorted(set(last[4:])) == [100.0, 101.0, 102.0]
    assert np.array_equal(last[:4], np.arange(4))


def test_accumulate_subsample_is_a_subset_of_the_pool():
    model = TagModel()
    retrain(model, _real(6), Policy("accumulate-subsample", 1.0), 4, np.random.default_rng(1))
    for seen in model.seen[1:]:
        assert seen.shape[1] == 6
        vals = seen[0, :, 0]
        assert set(vals) <= set(range(6)) | {100.0, 101.0, 102.0, 103.0}


def test_fresh_draws_new_real_data_each_iteration():
    model = TagModel()
    retrain(
        model,
        _real(5),
        Policy("fresh", 1.0, n_fresh=3),
        2,
        np.random.default_rng(2),
        fresh_source=_fresh,
    )
    a, b = model.seen[1][0, :3, 0], model.seen[2][0, :3, 0]
    assert np.all(a < 0) and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="fresh"):
        retrain(TagModel(), _real(5), Policy("fresh", 1.0), 1, np.random.default_rng(0))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(name="nope", lam=1.0),
        dict(name="mix", lam=-0.1),
        dict(name="accumulate", lam=math.inf),
        dict(name="fresh", lam=1.0, n_fresh=0),
        dict(name="mix", lam=float("nan")),
    ],
)
def test_policy_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        Policy(**kwargs)


def test_synthetic_count_is_floor():
    assert synthetic_count(0.5, 11) == 5 and synthetic_count(0.3, 10) == 3
    assert synthetic_count(math.inf, 7) == 7 and synthetic_count(0.0, 9) == 0


def test_subsample_without_replacement_per_run():
    x = np.arange(2 * 50, dtype=float).reshape(2, 50, 1)
    sub = PointSet(x).subsample(20, np.random.default_rng(0)).x
    for r in range(2):
        assert len(set(sub[r, :, 0])) == 20 and set(sub[r, :, 0]) <= set(x[r, :, 0])


class MeanModel:
    """A stochastic model (1D Gaussian with known variance) to test resume equality."""

    def fit(self, data):
        self.mu = data.x.mean(axis=1)

    def sample(self, k, rng):
        return PointSet(self.mu[:, None, :] + rng.standard_normal((self.mu.shape[0], k, 1)))

    def state(self):
        return {"mu": self.mu.copy()}


def test_resume_gives_the_numbers_of_an_uninterrupted_run():
    real = PointSet(np.random.default_rng(0).standard_normal((3, 10, 1)))
    full_trace = []
    retrain(
        MeanModel(),
        real,
        Policy("accumulate", 0.5),
        6,
        np.random.default_rng(7),
        on_iteration=lambda t, m, d: full_trace.append(m.state()["mu"]),
    )
    # Interrupt after t = 3, keep (model state, loop state, rng state), resume to t = 6.
    part = []
    rng = np.random.default_rng(7)
    model = MeanModel()
    state = retrain(
        model,
        real,
        Policy("accumulate", 0.5),
        3,
        rng,
        on_iteration=lambda t, m, d: part.append(m.state()["mu"]),
    )
    saved = (model.state(), LoopState(state.t, state.pool), rng.bit_generator.state)
    resumed_model = MeanModel()
    resumed_model.mu = saved[0]["mu"]
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = saved[2]
    retrain(
        resumed_model,
        real,
        Policy("accumulate", 0.5),
        6,
        rng2,
        on_iteration=lambda t, m, d: part.append(m.state()["mu"]),
        state=saved[1],
    )
    assert len(part) == len(full_trace)
    for a, b in zip(part, full_trace):
        assert np.array_equal(a, b)
