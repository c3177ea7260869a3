"""Plugins (stability.plugins, stability.plugin_models): loading by path, module and entry point,
and the one-line errors that name the plugin."""

import hashlib
import pickle
import sys
import textwrap

import numpy as np
import pytest

from stability import plugins
from stability.errors import RunError, UsageError
from stability.loop import PointSet
from stability.plugin_models import CheckedModel, ModelPlugin, PerRun
from stability.plugins import entries, format_params, load, parse_params

MEAN_MODEL = """
import numpy as np

class MeanModel:
    '''N(mean, 1) per run, batched.'''

    def __init__(self, shift=0.0):
        self.shift = shift

    def fit(self, data):
        self.mu = data.x.mean(axis=1) + self.shift

    def sample(self, k, rng):
        return self.mu[:, None, :] + rng.standard_normal((len(self.mu), k, self.mu.shape[1]))

    def state(self):
        return {"mu": self.mu}


class OneRun(MeanModel):
    batched = False


class NoSample:
    def fit(self, data):
        pass

    def state(self):
        return {}
"""


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(MEAN_MODEL)
    return path


def test_a_file_plugin_loads_with_a_stable_module_and_its_hash(plugin_file):
    cls, ref = load("model", f"{plugin_file}:MeanModel")
    assert cls.__name__ == "MeanModel" and ref.origin == "file"
    assert ref.sha256 == hashlib.sha256(plugin_file.read_bytes()).hexdigest()
    assert ref.target == f"{plugin_file.resolve()}:MeanModel"
    again, _ = load("model", f"{plugin_file}:MeanModel")
    assert again is cls  # unchanged file: the same module
    # Objects pickle by the module's name; a new process that loads the file unpickles them.
    obj = cls(shift=2.0)
    blob = pickle.dumps(obj)
    del sys.modules[cls.__module__]
    load("model", f"{plugin_file}:MeanModel")
    assert pickle.loads(blob).shift == 2.0
    plugin_file.write_text(MEAN_MODEL + "\nEXTRA = 1\n")
    changed, ref2 = load("model", f"{plugin_file}:MeanModel")
    assert changed is not cls and ref2.sha256 != ref.sha256


@pytest.mark.parametrize(
    "spec, message",
    [
        ("missing.py:Model", r"model plugin 'missing.py:Model': no such file 'missing.py'"),
        ("{dir}/my_models.py:Nope", r"my_models.py defines no 'Nope'"),
        ("{dir}/broken.py:Model", r"cannot import .*broken.py: SyntaxError"),
        ("{dir}/raising.py:Model", r"cannot import .*raising.py: ZeroDivisionError"),
        ("no_such_pkg.mod:Model", r"cannot import module 'no_such_pkg.mod': ModuleNotFoundError"),
        ("json:Nope", r"module 'json' defines no 'Nope'"),
        ("json:", r"expected FILE.py:NAME or package.module:NAME"),
        ("quantum", r"unknown model 'quantum'; registered: gaussian, gmm, kde"),
    ],
)
def test_load_errors_are_one_line_naming_the_plugin(tmp_path, plugin_file, spec, message):
    (tmp_path / "broken.py").write_text("def f(:\n")
    (tmp_path / "raising.py").write_text("1 / 0\n")
    spec = spec.format(dir=tmp_path)
    with pytest.raises(UsageError, match=message) as info:
        load("model", spec)
    assert "\n" not in str(info.value)


def test_shipped_plugins_are_registered_like_any_other():
    shipped = {
        "model": {"gaussian", "gmm", "kde", "ngram", "linear-regression"},
        "policy": {"mix", "accumulate", "accumulate-subsample", "fresh", "curate", "verify"},
        "data": {"mixture", "categorical", "markov", "linear"},
        "reward": {"first-coordinate", "data-likelihood"},
        "verifier": {"within-data-range", "likely-under-data"},
        "correction": {"gaussian-ot", "nearest-real"},
    }
    for kind, expected in shipped.items():
        found = entries(kind)
        assert expected <= set(found), kind
        for name in expected:
            obj, ref = load(kind, name)
            assert callable(obj) and ref.origin.startswith("entry point of retrain-stability")


def _install_dist(site, name, group_lines):
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(group_lines)


def test_entry_points_of_an_installed_distribution(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "tinyplug.py").write_text(MEAN_MODEL)
    _install_dist(site, "tinyplug", "[stability.models]\ntiny = tinyplug:MeanModel\n")
    _install_dist(site, "otherplug", "[stability.models]\ntiny = tinyplug:OneRun\n")
    monkeypatch.syspath_prepend(str(site))
    found = entries("model")["tiny"]
    assert {e.source for e in found} == {"tinyplug 0.1", "otherplug 0.1"}
    with pytest.raises(UsageError, match="model 'tiny' is registered twice"):
        load("model", "tiny")
    (site / "otherplug-0.1.dist-info" / "entry_points.txt").write_text("")
    cls, ref = load("model", "tiny")
    assert cls.__name__ == "MeanModel" and ref.origin == "entry point of tinyplug 0.1"


def test_model_plugin_builds_checked_models(plugin_file):
    real = PointSet(np.arange(12.0).reshape(3, 4, 1))
    model = ModelPlugin(f"{plugin_file}:MeanModel", {"shift": 1.0}).build(3, features=(1,))
    model.fit(real)
    np.testing.assert_allclose(model.state()["mu"][:, 0], real.x.mean(axis=1)[:, 0] + 1)
    assert model.sample(5, np.random.default_rng(0)).x.shape == (3, 5, 1)
    with pytest.raises(UsageError, match=r"MeanModel\(weight=2\) failed: TypeError"):
        ModelPlugin(f"{plugin_file}:MeanModel", {"weight": 2}).build(3)
    with pytest.raises(UsageError, match=r"is not a model: it lacks sample \(a model needs fit"):
        ModelPlugin(f"{plugin_file}:NoSample").build(2)


def test_one_run_models_are_replicated_per_run(plugin_file):
    real = PointSet(np.arange(12.0).reshape(3, 4, 1))
    model = ModelPlugin(f"{plugin_file}:OneRun").build(3, features=(1,))
    assert isinstance(model.model, PerRun) and len(model.model.models) == 3
    model.fit(real)
    for r, m in enumerate(model.model.models):  # run r's model saw only run r's data
        assert m.mu.shape == (1, 1) and m.mu[0, 0] == real.x[r].mean()
    assert model.state()["mu"].shape == (3, 1, 1)
    assert model.sample(4, np.random.default_rng(0)).x.shape == (3, 4, 1)


class _Returns:
    """A model whose sample, state and metrics return what the test sets."""

    def __init__(self, sample=None, state=None, metrics=None):
        self.out = dict(sample=sample, state=state, metrics=metrics)

    def fit(self, data):
        pass

    def sample(self, k, rng):
        return self.out["sample"]

    def state(self):
        return self.out["state"]

    def metrics(self, heldout):
        return self.out["metrics"]


@pytest.mark.parametrize(
    "kwargs, call, message",
    [
        (
            dict(sample=np.zeros((1, 5, 1))),
            "sample",
            r"returned shape \(1, 5, 1\), expected \(3, 5, 1\).*batched = False",
        ),
        (
            dict(sample=np.zeros((3, 4, 1))),
            "sample",
            r"returned shape \(3, 4, 1\), expected \(3, 5, 1\)",
        ),
        (dict(sample=np.full((3, 5, 1), np.nan)), "sample", "non-finite"),
        (dict(sample=np.full((3, 5, 1), "a")), "sample", "dtype <U1, expected numbers"),
        (dict(state=[1, 2]), "state", "state\\(\\) returned a list, expected a dict"),
        (dict(state={"w": np.zeros(2)}), "state", r"state\(\)\['w'\] has shape \(2,\)"),
        (dict(metrics={"mse": np.zeros(2)}), "metrics", r"metrics\(\)\['mse'\] must be .* \(3,\)"),
        (
            dict(metrics={"w1": np.zeros(3)}),
            "metrics",
            r"metrics\(\)\['w1'\] must be a new metric name",
        ),
    ],
)
def test_checked_model_names_the_plugin_for_wrong_returns(kwargs, call, message):
    heldout = PointSet(np.zeros((3, 2, 1)))
    args = {"sample": (5, None), "state": (), "metrics": (heldout,)}[call]
    checking = CheckedModel(_Returns(**kwargs), "model plugin 'x.py:M'", 3, True, (1,))
    with pytest.raises(UsageError, match=f"model plugin 'x.py:M': .*{message}"):
        getattr(checking, call)(*args)
    running = CheckedModel(_Returns(**kwargs), "model plugin 'x.py:M'", 3, False, (1,))
    with pytest.raises(RunError, match=message):
        getattr(running, call)(*args)


def test_failures_inside_the_model_are_named():
    class Fails(_Returns):
        def fit(self, data):
            raise ValueError("singular matrix\nmore detail")

    model = CheckedModel(Fails(), "model plugin 'f.py:F'", 2, True)
    with pytest.raises(
        UsageError,
        match=r"^model plugin 'f.py:F': fit on 3 points per run failed: ValueError: singular matrix$",
    ):
        model.fit(PointSet(np.zeros((2, 3, 1))))


@pytest.mark.parametrize(
    "items, expected",
    [
        (
            ["a=1", "b=0.5", "c=inf", "d=true", "e=text"],
            dict(a=1, b=0.5, c=float("inf"), d=True, e="text"),
        ),
        (
            ["w=1,0", "v=[1, 2]", 's="3"', "dash-key=x=y"],
            dict(w=[1, 0], v=[1, 2], s="3", dash_key="x=y"),
        ),
    ],
)
def test_params_parse_and_format_round_trip(items, expected):
    parsed = parse_params(items, "--param")
    assert parsed == expected
    assert parse_params(format_params(parsed), "--param") == parsed
    assert format_params(parsed) == sorted(format_params(parsed))


@pytest.mark.parametrize("item", ["novalue", "=1", "1x=2"])
def test_malformed_params_are_usage_errors(item):
    with pytest.raises(UsageError, match=f"--param: expected KEY=VALUE, got '{item}'"):
        parse_params([item], "--param")


def test_a_ready_instance_is_copied_and_takes_no_params(plugin_file, tmp_path):
    path = tmp_path / "inst.py"
    path.write_text(
        textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("base_{id(path)}", {str(plugin_file)!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        MODEL = mod.MeanModel(shift=5.0)
    """)
    )
    plugin = ModelPlugin(f"{path}:MODEL")
    a, b = plugin.build(1), plugin.build(1)
    assert a.model is not b.model and a.model.shift == 5.0
    with pytest.raises(UsageError, match="is a ready model: it takes no parameters"):
        ModelPlugin(f"{path}:MODEL", {"shift": 1})
    assert plugins.accepts(lambda runs, x=1: 0, "runs") and not plugins.accepts(
        lambda **kw: 0, "runs"
    )
