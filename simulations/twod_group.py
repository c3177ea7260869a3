"""Several lambdas of a 2D simulation trained as one ensemble, Algorithm 1 still written once.

At a few runs the training step of an ensemble costs about the same whatever the number of
members (it is bound by torch's per-operation dispatch, not by arithmetic), so lambdas trained
one after another pay that cost once per lambda. Here every (lambda, run) pair is a member of
one ``EnsembleMLP`` (member index p R + r for the p-th lambda of the group and run r), and
``stability.loop.retrain`` drives the group once:

- ``GroupedPolicy`` builds the group's training set of iteration t by calling each lambda's own
  policy (``stability.loop.Policy.train_set``) with that lambda's real data, random streams,
  accumulated pool and a per-lambda view of the model: the data policies are not rewritten.
- ``LambdaView`` is the view: its ``sample`` serves the samples the group drew for the metrics
  of iteration t - 1 (fresh draws from theta_{t-1}, as ``twod_sim`` reuses them for one lambda).
- ``GroupModel`` is the Retrainable that ``retrain`` fits: one ``fit`` of the joint ensemble on
  the lambdas' training sets, each member on its own lambda's set (the sets differ in size;
  ``minibatch_indices`` draws each member's minibatches from its own size).

Each member keeps exactly the random streams it has alone (training streams continued from the
t = 0 fit, sample streams keyed by lambda and run), so a group gives the numbers of its lambdas
run one by one (``tests/simulations/test_twod_group.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stability.errors import RunError
from stability.loop import LoopState, PointSet


@dataclass
class GroupSet:
    """The training sets of a group's lambdas, in group order.

    ``parts[p].x`` has shape (R, size_p, 2): the sets of the p-th lambda's R runs.
    """

    parts: list


class LambdaView:
    """One lambda's side of a group model, as its policy sees it (a Retrainable).

    ``sample(k, rng)`` returns the first k of the samples cached for this lambda, shape (R, k, 2),
    and forgets them (Algorithm 1 samples theta_t once per iteration).
    """

    def __init__(self, group: GroupModel, position: int):
        self.group = group
        self.position = position
        self.cache = None

    def fit(self, data):
        """Refused: the group's members are fitted together (``GroupModel.fit``)."""
        raise RunError("a lambda of a joint ensemble is fitted with its group (internal error)")

    def sample(self, k: int, rng) -> PointSet:
        """k samples per run of this lambda's members (cached, or drawn alone), (R, k, 2)."""
        if self.cache is None or self.cache.shape[1] < k:
            # more than the metrics drew (lam n > the t = 0 sample, at t = 1): this lambda's
            # members sample alone, from this lambda's streams
            self.cache = None
            return self.group.sample_lambda(self.position, k, rng)
        out, self.cache = self.cache[:, :k], None
        return PointSet(out)

    def state(self) -> dict:
        """The group model's state (all members)."""
        return self.group.state()


class GroupModel:
    """The joint ensemble of a group of L lambdas, R runs each, as ``retrain`` drives it.

    Parameters
    ----------
    model : FlowModel or DiffusionModel
        The ensemble of L R members (lambda-major: member p R + r).
    lambdas : int
        L.
    sample_lambda : callable
        ``sample_lambda(p, k, rng)``: k samples per run of the p-th lambda's members alone, as a
        PointSet of shape (R, k, 2).
    """

    def __init__(self, model, lambdas: int, sample_lambda):
        self.model = model
        self.sample_lambda = sample_lambda
        self.views = [LambdaView(self, p) for p in range(lambdas)]

    def fit(self, data: GroupSet) -> None:
        """One joint fit: member p R + r trains on ``data.parts[p].x[r]``."""
        self.model.fit(data)

    def sample(self, k: int, rng) -> PointSet:
        """Refused: a group samples through its lambdas' views."""
        raise RunError("a joint ensemble samples through its lambdas' views (internal error)")

    def state(self) -> dict:
        """The joint ensemble's state (``_EnsembleModel.state``), L R members."""
        return self.model.state()


class GroupedPolicy:
    """The training set of a group: each lambda's policy applied to its own side.

    Parameters
    ----------
    policies : list of DataPolicy
        The L lambdas' policies, in group order.
    reals : list of PointSet
        Each lambda's real data, shape (R, n, 2) (the same points; separate objects).
    rngs : list of RunStreams
        Each lambda's sample streams (R streams each).
    fresh : list of callables or None
        Each lambda's source of fresh real data (policy ``fresh``), or None.
    pools : list
        Each lambda's accumulated pool (None until an accumulating policy starts one); updated
        in place and saved with the group's checkpoints.
    """

    name = "group"
    lam = math.nan

    def __init__(self, policies, reals, rngs, fresh, pools):
        self.policies, self.reals, self.rngs, self.fresh = policies, reals, rngs, fresh
        self.pools = pools

    @property
    def label(self) -> str:
        """The lambdas' policies, e.g. ``group(mix(lam=0), mix(lam=1))``."""
        return "group(" + ", ".join(p.label for p in self.policies) + ")"

    def sizes(self, n: int, iterations: int) -> list[list[int]]:
        """Each lambda's training-set sizes at t = 0..iterations."""
        return [p.sizes(n, iterations) for p in self.policies]

    def train_set(self, t, real, model: GroupModel, rng, state, fresh_source=None) -> GroupSet:
        """The group's training set of iteration t >= 1 (``real``, ``rng``, ``fresh_source`` of
        the group call are unused: each lambda has its own)."""
        parts = []
        for p, policy in enumerate(self.policies):
            sub = LoopState(state.t, self.pools[p])
            fresh = None if self.fresh is None else self.fresh[p]
            parts.append(
                policy.train_set(t, self.reals[p], model.views[p], self.rngs[p], sub, fresh)
            )
            self.pools[p] = sub.pool
        return GroupSet(parts)


def joint_groups(policies, n: int, batch: int, iterations: int) -> list[list[int]]:
    """The lambdas (indices into ``policies``) that can share one ensemble, in order.

    Members of one ensemble must use the same minibatch size at every iteration
    (min(batch, training-set size)); lambdas differing in it are put in separate groups, which
    run one after another. (Sample counts may differ: each member draws its own,
    max(n_eval, floor(lam n)), padded to the largest.)
    """
    groups: dict = {}
    for i, policy in enumerate(policies):
        key = tuple(min(batch, s) for s in policy.sizes(n, iterations))
        groups.setdefault(key, []).append(i)
    return list(groups.values())
