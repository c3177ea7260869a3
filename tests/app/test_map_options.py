"""`stability map`: every option checked at the boundary, whatever the path's mode.

A template --eps-family used to ignore --eps-steps (0, -1, words: exit 0); an N of 1e9 in
--lam-range was accepted and allocated. Each bad vector here must exit 2 with one line naming
its option and leave nothing behind.
"""

from __future__ import annotations

import pytest

from stability.app.cli import main
from stability.app.map import MAX_EPS_STEPS, MAX_LAMBDAS, eps_steps
from stability.errors import UsageError

TEMPLATE = ["--family", "student-t:nu=4", "--eps-family", "t:df={}", "--eps-values", "30", "4"]
CONTAMINATION = ["--family", "student-t:nu=4", "--data", "laplace"]


@pytest.mark.parametrize(
    "argv, named",
    [
        (TEMPLATE + ["--eps-steps", "0"], "--eps-steps"),
        (TEMPLATE + ["--eps-steps", "-1"], "--eps-steps"),
        (TEMPLATE + ["--eps-steps", "x"], "--eps-steps"),
        (TEMPLATE + ["--eps-steps", "2.5"], "--eps-steps"),
        (TEMPLATE + ["--eps-steps", "1000000000"], "--eps-steps"),
        (TEMPLATE + ["--eps-steps", "3"], "--eps-steps goes with --eps-family contamination"),
        (CONTAMINATION + ["--eps-steps", "0"], "--eps-steps"),
        (CONTAMINATION + ["--eps-steps", "1"], "--eps-steps"),
        (CONTAMINATION + ["--eps-steps", str(MAX_EPS_STEPS + 1)], "--eps-steps"),
        (CONTAMINATION + ["--eps-steps", ""], "--eps-steps"),
        (CONTAMINATION + ["--lam-range", "0.1", "1", "1000000000"], "--lam-range"),
        (TEMPLATE + ["--lam-range", "0.1", "1", str(MAX_LAMBDAS + 1)], "--lam-range"),
        (TEMPLATE + ["--lam-range", "0.1", "1", "1"], "--lam-range"),
        (CONTAMINATION + ["--eps-values", "1"], "--eps-values"),
        (["--family", "student-t", "--eps-family", "t:df=3"], "--eps-family"),
        (["--family", "student-t", "--eps-family", "t:df={}"], "--eps-values"),
        (["--family", "student-t"], "--data"),
        # Checked before the family is even built: a bad option wins over a bad family.
        (["--family", "nope", "--data", "laplace", "--eps-steps", "0"], "--eps-steps"),
    ],
)
def test_a_bad_option_is_refused_in_any_mode(argv, named, tmp_path, capsys):
    out = tmp_path / "map"
    code = main(["map", *argv, "--out", str(out)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and named in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_eps_steps_bounds_and_defaults():
    assert eps_steps(None, True) == 6 and eps_steps(None, False) is None
    assert eps_steps("2", True) == 2 and eps_steps(str(MAX_EPS_STEPS), True) == MAX_EPS_STEPS
    for bad in ("1", str(MAX_EPS_STEPS + 1), "1e3", "nan"):
        with pytest.raises(UsageError, match="--eps-steps"):
            eps_steps(bad, True)
    with pytest.raises(UsageError, match="goes with --eps-family contamination"):
        eps_steps("6", False)
