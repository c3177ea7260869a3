"""The cells of a sweep: the grid, exclusions, folder names, each argv checked by the command."""

from __future__ import annotations

import math
import re

import pytest

from stability.app.sweep.cells import MAX_NAME, cell_name, expand
from stability.app.sweep.run import run_sweep
from stability.app.sweep.spec import parse_spec


def test_spec_expands_to_a_grid_with_sorted_safe_names(tmp_path):
    spec = parse_spec(
        {
            "command": "simulate gaussian",
            "options": {"runs": 20, "n-fresh": 30, "keep_blocks": True, "lam": [0, 1]},
            "axes": {"seeds": 2, "n": {"start": 10, "stop": 31, "step": 10}, "policy": ["mix"]},
        }
    )
    assert spec.fixed == {"runs": 20, "n_fresh": 30, "keep_blocks": True, "lam": [0, 1]}
    assert spec.axes == {"seed": [0, 1], "n": [10, 20, 30], "policy": ["mix"]}
    cells = expand(spec, tmp_path)
    assert len(cells) == 6
    assert cells[0].name == "n=10__policy=mix__seed=0"  # keys sorted, whatever the spec order
    assert cells[1].name == "n=20__policy=mix__seed=0"  # the last axis varies fastest
    assert cells[0].argv[:2] == ["simulate", "gaussian"]
    argv = cells[0].argv
    assert argv[argv.index("--lam") + 1 : argv.index("--lam") + 3] == ["0", "1"]
    assert "--keep-blocks" in argv and argv[argv.index("--n-fresh") + 1] == "30"
    assert argv[-2:] == ["--out", str(tmp_path.absolute() / cells[0].name)]
    assert cells[0].folder == tmp_path.absolute() / cells[0].name and not cells[0].finished
    assert not any(tmp_path.iterdir())  # expanding writes nothing


def test_exclude_leaves_combinations_out(tmp_path):
    spec = parse_spec(
        {
            "command": "simulate gaussian",
            "exclude": [{"lam": math.inf, "policy": "accumulate"}, {"lam": 1.0, "n": 5}],
            "axes": {"lam": [1, math.inf], "policy": ["mix", "accumulate"], "n": [5, 10]},
        }
    )
    names = [c.name for c in expand(spec, tmp_path)]
    assert len(names) == 8 - 2 - 2  # lam=inf with accumulate (2 cells), lam=1 with n=5 (2)
    assert "lam=inf__n=5__policy=accumulate" not in names and "lam=1__n=5__policy=mix" not in names
    assert "lam=inf__n=5__policy=mix" in names
    with pytest.raises(ValueError, match="'dim' is not an axis"):
        parse_spec({"command": "simulate gaussian", "exclude": [{"dim": 2}]})
    every = parse_spec({"command": "simulate gaussian", "exclude": [{"n": 5}], "axes": {"n": [5]}})
    with pytest.raises(ValueError, match="every cell of the grid is excluded"):
        expand(every, tmp_path)


def test_cell_names_are_filesystem_safe_and_distinct():
    assert cell_name({}) == "run"
    assert cell_name({"seed": 1, "lam": 0.5}) == "lam=0.5__seed=1"
    assert cell_name({"lam": math.inf}) == "lam=inf"
    assert cell_name({"lam": [0, 1.5]}) == "lam=0,1.5"
    assert cell_name({"keep_blocks": True}) == "keep_blocks=true"
    a = cell_name({"data": "dir/a b.npy"})
    b = cell_name({"data": "dir_a_b.npy"})
    assert "/" not in a and " " not in a and a != b and re.fullmatch(r"[\w.,+=~-]+", a)
    assert len(cell_name({"data": "x" * 500})) <= MAX_NAME
    assert not cell_name({"data": ".hidden"}).startswith(".")


def test_a_value_the_command_rejects_is_caught_before_running(tmp_path):
    spec = parse_spec({"command": "simulate gaussian", "axes": {"runs": ["many"]}})
    with pytest.raises(ValueError, match="cell runs=many: .*invalid int value"):
        run_sweep(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()
