"""The command line: JSON contracts, exit codes, one-line errors, no torch in the core."""

import json
import subprocess
import sys

import pytest


def _one_line_error(proc, code=2):
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_check_list_json(cli):
    proc = cli("check", "--list", "--json")
    assert proc.returncode == 0
    names = [c["name"] for c in json.loads(proc.stdout)]
    assert "prop1-multivariate" in names and "theorem2-gaussian" in names
    assert len(names) == len(set(names))


def test_check_json_contract(cli):
    proc = cli("check", "alpha-symbolic", "lemma-e1-eq78", "--json", "--quick", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["name"] for r in out] == ["alpha-symbolic", "lemma-e1-eq78"]
    for r in out:
        assert {"name", "claim", "verdict", "measured", "expected"} <= set(r)
        assert r["verdict"] in ("holds", "fails", "inconclusive")
        assert isinstance(r["measured"], float) and isinstance(r["expected"], float)
        assert "eq" in r["claim"] + r["reference"]


def test_check_table_output(cli):
    proc = cli("check", "prop2", "--quick")
    assert proc.returncode == 0
    assert "verdict" in proc.stdout and "prop2-lipschitz" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("check", "no-such-check"),
        ("check", "--seed", "x"),
        ("check", "--quick", "--thorough"),
        ("alpha", "1"),
        ("alpha", "2.5"),
        ("alpha", "nan"),
        ("alpha", "10", "--dim", "0"),
        ("alpha", "ten"),
        ("jacobian", "--model", "nope", "--lam", "1"),
        ("jacobian", "--model", "student-t", "--lam", "-1"),
        ("jacobian", "--model", "student-t", "--lam", "inf"),
        ("jacobian", "--model", "student-t", "--lam", "nan"),
        ("simulate", "nothing"),
        ("frobnicate",),
    ],
)
def test_bad_input_one_line_exit_2(cli, args):
    line = _one_line_error(cli(*args))
    assert line.startswith("stability")


def test_alpha_json(cli):
    out = json.loads(cli("alpha", "1000000000", "--json").stdout)
    assert out["alpha"] < 1 and abs(out["one_minus_alpha"] - 2.5e-10) < 1e-18
    out = json.loads(cli("alpha", "10", "--dim", "2", "--json").stdout)
    assert out["alpha_d"] < out["alpha"] and out["alpha_d_method"] == "quadrature"
    out = json.loads(cli("alpha", "10", "--dim", "6", "--json").stdout)
    assert out["alpha_d"] < 1 and out["alpha_d_se"] < 1e-3


def test_jacobian_json_three_methods_agree(cli):
    proc = cli("jacobian", "--model", "mixture", "--lam", "0.05", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["lambda_max_theorem1"] < 0.5
    for row in out["rows"]:
        assert row["max_diff_implicit_vs_fd"] < 1e-6 and row["max_diff_formula_vs_fd"] < 1e-6
        assert row["spectral_radius"] < 1
    assert out["rows"][0]["theorem1_condition"] and not out["rows"][1]["theorem1_condition"]
    assert out["rows"][0]["norm_fd"] <= out["rows"][0]["theorem1_bound"]


def test_core_does_not_import_torch():
    code = (
        "import sys, stability, stability.app.cli as c; "
        "rc = c.main(['check', '--quick', 'alpha-bounds', 'prop4-fixed-point', '--json']); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
