"""Model plugins: build them for a block of runs and hold them to the loop's protocol.

A model plugin (loaded by `stability.plugins`) is one of

- a class or factory ``Factory(**params)`` returning a model; if it takes a ``runs`` keyword it
  is given the number of runs R of the block (for models that allocate per-run parameters);
- a ready model object (copied for every block; it takes no parameters).

The model follows `stability.loop.Retrainable` over point data (`stability.loop.PointSet`,
``x`` of shape (R, N, *features)):

    fit(data)          fit, or fine-tune, on data.x of shape (R, N, *features)
    sample(k, rng)     a PointSet (or array) of shape (R, k, *features)
    state()            dict of arrays with one row per run, shape (R, ...)

Optional:

    batched = False    the model handles one run (data.x of shape (1, N, ...)); the engine
                       builds one per run and joins them (`PerRun`)
    wasserstein = False  W1/W2 between samples and held-out data are meaningless (tokens)
    metrics(heldout)   its own metrics: dict name -> array (R,), e.g. a test error

`CheckedModel` checks every return against this (shape, dtype, finiteness, one row per run) and
names the plugin in a one-line error: a `UsageError` while the engine tries the model before
writing anything, a `RunError` during a run.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from stability.errors import RunError, UsageError
from stability.loop import PointSet
from stability.plugins import accepts, call, check_methods, first_line, load

MODEL_METHODS = ("fit", "sample", "state")
RESERVED_METRICS = frozenset({"w1", "w2", "param_distance"})


def _one_run(out) -> np.ndarray:
    """A one-run model's sample as an array (1, k, ...): (k, ...) arrays get the run axis."""
    x = np.asarray(getattr(out, "x", out))
    return x[None] if x.ndim == 2 else x


class PerRun:
    """R models of one run each, seen as one model batched over R runs.

    Run r's model sees only run r's data, ``PointSet(data.x[r : r + 1])``. All runs draw from
    the one generator the loop passes, in run order (deterministic for a given block).

    Parameters
    ----------
    models : list
        One model per run.
    """

    def __init__(self, models: list):
        self.models = list(models)

    @property
    def wasserstein(self) -> bool:
        """Whether W1/W2 to the data are meaningful for these models (the first model's flag)."""
        return bool(getattr(self.models[0], "wasserstein", True))

    @property
    def has_metrics(self) -> bool:
        """True when the models report their own metrics."""
        return callable(getattr(self.models[0], "metrics", None))

    def fit(self, data) -> None:
        """Fits model r on run r's data, data.x of shape (R, N, ...)."""
        for r, model in enumerate(self.models):
            model.fit(PointSet(data.x[r : r + 1]))

    def sample(self, k: int, rng: np.random.Generator) -> PointSet:
        """k samples of each run's model, stacked: PointSet (R, k, ...)."""
        return PointSet(np.concatenate([_one_run(m.sample(k, rng)) for m in self.models]))

    def state(self) -> dict:
        """Each key of the models' states stacked over runs, leading axis R."""
        states = [m.state() for m in self.models]
        return {key: np.stack([np.asarray(s[key]) for s in states]) for key in states[0]}

    def metrics(self, heldout) -> dict:
        """Each model's metrics on its run's held-out data, one value per run: arrays (R,)."""
        per = [m.metrics(PointSet(heldout.x[r : r + 1])) for r, m in enumerate(self.models)]
        return {key: np.array([np.ravel(p[key])[0] for p in per], float) for key in per[0]}


class CheckedModel:
    """A model plugin held to the protocol: every return is checked, every error names it.

    Parameters
    ----------
    model : the plugin's model (batched over `runs`, or a `PerRun`)
    label : how errors name it, e.g. ``model plugin 'kde.py:KDE'``
    runs : R, the runs of the block
    checking : True while the engine tries the model before writing anything (errors are
        `UsageError`, exit 2); False during a run (`RunError`, exit 1)
    features : the shape of one data point (default: learnt from the first fit)
    """

    def __init__(
        self, model, label: str, runs: int, checking: bool = False, features: tuple | None = None
    ):
        self.model = model
        self.label = label
        self.runs = int(runs)
        self.checking = checking
        self.features = None if features is None else tuple(features)

    @property
    def wasserstein(self) -> bool:
        """Whether W1/W2 to held-out data are metrics of this model."""
        return bool(getattr(self.model, "wasserstein", True))

    @property
    def has_metrics(self) -> bool:
        """Whether the model computes metrics of its own (`metrics(heldout)`)."""
        inner = getattr(self.model, "has_metrics", None)
        if isinstance(inner, bool):
            return inner
        return callable(getattr(self.model, "metrics", None))

    def error(self, message: str) -> Exception:
        """The error to raise: UsageError while checking, RunError during a run."""
        return (UsageError if self.checking else RunError)(f"{self.label}: {message}")

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # any failure of the plugin's code, named with the plugin
            raise self.error(f"{what} failed: {first_line(exc)}") from exc

    def fit(self, data) -> None:
        """Fit the model (the loop's `fit`); remembers the shape of a point."""
        if self.features is None:
            self.features = tuple(np.shape(data.x)[2:])
        self._call(f"fit on {data.size} points per run", self.model.fit, data)

    def sample(self, k: int, rng: np.random.Generator) -> PointSet:
        """k samples per run, checked to be a finite array of shape (R, k, *features)."""
        out = self._call(f"sample({k}, rng)", self.model.sample, k, rng)
        try:
            x = np.asarray(getattr(out, "x", out))
        except Exception:  # an object numpy cannot read as an array
            raise self.error(f"sample({k}, rng) returned a {type(out).__name__}") from None
        want = (self.runs, k, *(self.features or ()))
        if x.shape != want and not (self.features is None and x.shape[:2] == want):
            hint = ""
            if self.runs > 1 and x.shape[:1] != (self.runs,):
                hint = " (a model of one run says so with the class attribute batched = False)"
            raise self.error(
                f"sample({k}, rng) returned shape {x.shape}, expected {want} "
                f"(runs, samples, *point shape){hint}"
            )
        if x.dtype.kind not in "biuf":
            raise self.error(f"sample({k}, rng) returned dtype {x.dtype}, expected numbers")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise self.error(f"sample({k}, rng) returned non-finite values (NaN or inf)")
        return out if isinstance(out, PointSet) else PointSet(x)

    def state(self) -> dict:
        """The parameters, checked to be numeric arrays with one row per run."""
        s = self._call("state()", self.model.state)
        if not isinstance(s, Mapping):
            raise self.error(f"state() returned a {type(s).__name__}, expected a dict of arrays")
        out = {}
        for key, value in s.items():
            a = np.asarray(value)
            if a.dtype.kind not in "biuf" or a.ndim == 0 or a.shape[0] != self.runs:
                raise self.error(
                    f"state()[{key!r}] has shape {a.shape} and dtype {a.dtype}; expected numbers "
                    f"with one row per run, shape ({self.runs}, ...)"
                )
            out[str(key)] = a
        return out

    def metrics(self, heldout) -> dict[str, np.ndarray]:
        """The model's own metrics against held-out real data, each of shape (R,)."""
        m = self._call("metrics(heldout)", self.model.metrics, heldout)
        if not isinstance(m, Mapping):
            raise self.error(f"metrics() returned a {type(m).__name__}, expected a dict")
        out = {}
        for key, value in m.items():
            a = np.asarray(value, dtype=float) if np.ndim(value) <= 1 else None
            if a is None or a.shape != (self.runs,) or key in RESERVED_METRICS:
                raise self.error(
                    f"metrics()[{key!r}] must be a new metric name with shape ({self.runs},), "
                    f"got shape {np.shape(value)}"
                )
            out[str(key)] = a
        return out


class ModelPlugin:
    """A model plugin, loaded once, that builds a checked model for any block of runs.

    Parameters
    ----------
    spec : str
        ``file.py:Name``, ``package.module:Name`` or a name of group ``stability.models``.
    params : dict
        Keyword arguments of its factory.
    """

    def __init__(self, spec: str, params: Mapping[str, Any] | None = None):
        self.obj, self.ref = load("model", spec)
        self.params = dict(params or {})
        self.ready = all(callable(getattr(self.obj, m, None)) for m in MODEL_METHODS)
        self.ready = self.ready and not inspect.isclass(self.obj)
        if self.ready and self.params:
            raise UsageError(f"{self.ref.label} is a ready model: it takes no parameters")
        if not self.ready and not callable(self.obj):
            check_methods(self.obj, self.ref, MODEL_METHODS, "model")

    def _make(self, runs: int):
        if self.ready:
            return copy.deepcopy(self.obj)
        kwargs = dict(self.params)
        if accepts(self.obj, "runs"):
            kwargs["runs"] = runs
        model = call(self.obj, self.ref, kwargs)
        check_methods(model, self.ref, MODEL_METHODS, "model")
        return model

    def build(
        self, runs: int, checking: bool = False, features: tuple | None = None
    ) -> CheckedModel:
        """A fresh model for a block of `runs` runs (one per run when it is not batched).

        Parameters
        ----------
        runs : R, the runs of the block
        checking : see `CheckedModel`
        features : the shape of one data point, checked in every sample
        """
        model = self._make(runs)
        if getattr(model, "batched", True) is False:
            model = PerRun([self._make(1) for _ in range(runs)])
        return CheckedModel(model, self.ref.label, runs, checking, features)

    def wrap(self, model, runs: int, features: tuple | None = None) -> CheckedModel:
        """A model restored from a checkpoint, checked as `build`'s are."""
        return CheckedModel(model, self.ref.label, runs, False, features)


__all__ = ["MODEL_METHODS", "CheckedModel", "ModelPlugin", "PerRun"]
