"""Sweep specs: the documented format, ranges and seeds, and one-line errors for bad specs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stability.app.sweep import spec as spec_module
from stability.app.sweep.cells import expand
from stability.app.sweep.registry import COMMANDS, command_info
from stability.app.sweep.spec import load_spec, parse_spec


def axis(value, name: str = "lam") -> list:
    """The values a spec's axis takes (ranges and seeds are read by parse_spec)."""
    return parse_spec({"command": "simulate gaussian", "axes": {name: value}}).axes[
        "seed" if name == "seeds" else name
    ]


def test_options_come_from_the_commands_own_parsers():
    options = command_info("simulate  gaussian").options()  # spaces normalised
    assert options["keep_blocks"].kind == "flag" and options["keep_blocks"].flag == "--keep-blocks"
    assert options["lam"].kind == "many" and options["n"].kind == "one"
    assert options["n_fresh"].flag == "--n-fresh"
    assert not {"out", "json", "help"} & set(options)  # set by the sweep itself
    assert set(COMMANDS) == {
        "simulate gaussian",
        "simulate flow",
        "simulate diffusion",
        "simulate model",
        "deep retrain",
    }
    assert COMMANDS["simulate gaussian"].argv({"lam": [0, math.inf], "keep_blocks": True}) == [
        "--lam",
        "0",
        "inf",
        "--keep-blocks",
    ]


def test_documented_and_example_specs_are_valid(tmp_path):
    import tomllib

    doc = spec_module.__doc__
    example = doc.split("::")[1].split("\n\n", 1)[1].split("\nOption names")[0]
    spec = parse_spec(tomllib.loads(example.replace("\n    ", "\n")))
    assert len(expand(spec, tmp_path)) == 4 * 3 * 3 - 3
    root = Path(__file__).resolve().parents[2] / "examples" / "sweeps"
    files = sorted(root.glob("*.toml"))
    assert files
    for path in files:
        spec = load_spec(path)
        assert spec.out and expand(spec, tmp_path)


def test_ranges_and_seeds():
    assert axis({"start": 0, "stop": 5}) == [0, 1, 2, 3, 4]
    assert axis({"start": 0.1, "stop": 0.5, "step": 0.1}) == [0.1, 0.2, 0.3, 0.4]
    assert axis({"start": 0, "stop": 1, "num": 5}) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert axis({"start": 0, "stop": 10, "num": 3}) == [0, 5, 10]  # integers stay integers
    assert axis({"start": 10, "stop": 1000, "num": 3, "log": True}) == [10, 100, 1000]
    assert axis({"start": 5, "stop": 0, "step": -2}) == [5, 3, 1]
    assert axis(3, "seeds") == [0, 1, 2] and axis([7, 9], "seeds") == [7, 9]
    top = parse_spec({"command": "simulate gaussian", "seeds": 2})
    assert top.axes == {"seed": [0, 1]}


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"command": "simulate gaussian", "options": {"bogus": 1}}, "unknown option 'bogus'"),
        ({"command": "simulate gaussian", "axes": {"lam": []}}, "axis 'lam' is empty"),
        ({"command": "simulate gaussian", "axes": {"n": {"start": 5, "stop": 5}}}, "is empty"),
        ({"command": "simulate quantum"}, "unknown command 'simulate quantum'"),
        ({"options": {}}, "names no command"),
        ({"command": "simulate gaussian", "colour": 1}, "unknown key 'colour'"),
        (
            {"command": "simulate gaussian", "options": {"runs": [1, 2]}},
            "put the list under [axes]",
        ),
        ({"command": "simulate gaussian", "options": {"out": "x"}}, "set by the sweep"),
        ({"command": "simulate gaussian", "options": {"keep_blocks": 1}}, "is a flag"),
        (
            {"command": "simulate gaussian", "options": {"n": 5}, "axes": {"n": [1, 2]}},
            "both fixed",
        ),
        ({"command": "simulate gaussian", "axes": {"lam": [1, 1.0, 1]}}, "repeats"),
        ({"command": "simulate gaussian", "axes": {"seeds": 0}}, "seeds must be >= 1"),
        ({"command": "simulate flow", "options": {"diffusion_steps": 5}}, "unknown option"),
        ({"command": "deep retrain", "options": {"lam": [0, 1]}}, "takes one value"),
        (
            {
                "command": "simulate gaussian",
                "axes": {"n": {"start": 1, "stop": 9, "num": 3, "step": 2}},
            },
            "give step or num, not both",
        ),
        (
            {"command": "simulate gaussian", "axes": {"n": {"start": 1, "stop": 9, "log": True}}},
            "log needs num",
        ),
        (
            {"command": "simulate gaussian", "axes": {"lam": [0, math.nan]}},
            "nan is not a value",
        ),
        ({"command": "simulate gaussian", "exclude": [{"dim": 2}]}, "'dim' is not an axis"),
    ],
)
def test_bad_specs_are_one_line_value_errors(spec, message):
    with pytest.raises(ValueError) as err:
        parse_spec(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_spec_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('command = "simulate gaussian"\n[axes]\nlam = [\n')
    with pytest.raises(ValueError, match="invalid TOML"):
        load_spec(bad)
    with pytest.raises(ValueError, match="cannot read spec"):
        load_spec(tmp_path / "missing.toml")


HUGE_SPECS = [
    {"seeds": 100_000_000, "axes": {"lam": [0, math.inf]}},
    {"axes": {"seeds": 100_000_000}},
    {"axes": {"n": {"start": 2, "stop": 10**8, "num": 10**8}}},
    {"axes": {"n": {"start": 2, "stop": 1e12}}},
    {"axes": {"lam": {"start": -1e308, "stop": 1e308, "step": 1e-300}}},  # count overflows
    {"axes": {k: list(range(2, 102)) for k in ("n", "dim", "runs", "iterations", "seed")}},
]


@pytest.mark.parametrize("extra", HUGE_SPECS)
def test_a_huge_grid_is_refused_before_any_axis_is_built(extra):
    import tracemalloc

    spec = {"command": "simulate gaussian", **extra}
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as err:
            parse_spec(spec, source="big.toml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert "cells" in message and "at most 100,000" in message and "\n" not in message
    # A list of 1e8 seeds alone is 800 MB of pointers (4.6 GB during --dry-run before this
    # bound); the refusal itself allocates a few kilobytes.
    assert peak < 1_000_000, peak


def test_the_grid_size_is_exact_at_the_limit():
    at_limit = {"command": "simulate gaussian", "seeds": spec_module.MAX_CELLS // 2,
                "axes": {"lam": [0, 1]}}  # fmt: skip
    assert spec_module.grid_size(at_limit) == spec_module.MAX_CELLS
    assert len(parse_spec(at_limit).axes["seed"]) == spec_module.MAX_CELLS // 2
    over = {**at_limit, "seeds": spec_module.MAX_CELLS // 2 + 1}
    with pytest.raises(ValueError, match="100,002 cells"):
        parse_spec(over)


@pytest.mark.parametrize(
    "value",
    [
        {"start": 0, "stop": 5},
        {"start": 0.1, "stop": 0.5, "step": 0.1},
        {"start": 0, "stop": 1, "step": 0.1},
        {"start": 0.3, "stop": 0.0, "step": -0.1},
        {"start": 5, "stop": 0, "step": -2},
        {"start": 1, "stop": 1e3, "step": 7.3},
        {"start": 0, "stop": 1, "num": 5},
        {"start": 10, "stop": 1000, "num": 3, "log": True},
        {"start": 0, "stop": 1, "num": 1},
        [0, 0.5, 1, "x"],
    ],
)
def test_the_claimed_size_is_the_number_of_values_built(value):
    # Independent of the claim: the values parse_spec actually builds, counted.
    built = len(axis(value, "n" if isinstance(value, dict) else "policy"))
    spec = {"command": "simulate gaussian", "axes": {"n": value}}
    assert spec_module.grid_size(spec) == built
    assert spec_module.grid_size({**spec, "seeds": 3}) == 3 * built


def test_a_dry_run_of_a_huge_sweep_is_refused_in_one_line(tmp_path, capsys):
    from stability.app.cli import main

    spec = tmp_path / "huge.toml"
    spec.write_text('command = "simulate gaussian"\nseeds = 100000000\n[axes]\nlam = [0, inf]\n')
    assert main(["sweep", str(spec), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "200,000,000 cells" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.toml"]


def test_only_the_seeds_axis_takes_a_count():
    # An integer on another axis is not a count of values: its own check names the mistake.
    with pytest.raises(ValueError, match="give a list of values or a range"):
        parse_spec({"command": "simulate gaussian", "axes": {"n": 100_000_000}})
    assert spec_module.axis_sizes({"axes": {"seeds": 7, "n": 9}, "seeds": 3}) == {
        "seeds": 3,
        "n": 1,
    }
