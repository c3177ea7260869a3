"""The examples (examples/) run at small sizes and produce their figures."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from simulations.plugin_sim import PluginSimConfig, run_plugin_simulation
from stability.runs.runfolder import read_summary
from tests.conftest import run_cli

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
GALLERY = ROOT / "examples" / "gallery"
SCRIPTS = sorted(p.stem for p in GALLERY.glob("*.py") if p.stem != "common")


def test_every_gallery_script_is_in_the_gallery_page():
    page = (ROOT / "docs" / "gallery.md").read_text()
    assert SCRIPTS and all(f"examples/gallery/{s}.py" in page for s in SCRIPTS)
    figures = sorted((GALLERY / "figures").glob("*.png"))
    assert [f.stem for f in figures] == SCRIPTS  # one committed figure per script
    assert all(f"examples/gallery/figures/{f.name}" in page for f in figures)


@pytest.mark.parametrize("script", SCRIPTS)
def test_gallery_script_runs_quick_and_draws_its_figure(script, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(GALLERY))
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--quick", "--out", str(tmp_path)])
    runpy.run_path(str(GALLERY / f"{script}.py"), run_name="__main__")
    figure = tmp_path / f"{script}.png"
    assert figure.stat().st_size > 10_000 and f"wrote {figure}" in capsys.readouterr().out
    if script == "stability_table":
        table = (tmp_path / script / "stability_table.md").read_text().splitlines()
        assert len(table) == 2 + 5 and all(line.count("|") == 9 for line in table)


def test_the_example_file_plugin_runs(tmp_path):
    config = PluginSimConfig(
        model=str(ROOT / "examples" / "plugins" / "my_kde.py") + ":KDE",
        dim=2, n=30, lams=(0.0, float("inf")), iterations=2, runs=2,
    )  # fmt: skip
    run_plugin_simulation(config, tmp_path / "run", figures=False)
    rows = read_summary(tmp_path / "run" / "summary.csv")
    assert {r["metric"] for r in rows} == {"w1", "w2", "param_distance"}


def test_the_file_plugin_sweep_spec_runs_small_and_collects(tmp_path):
    spec = tomllib.loads((ROOT / "examples" / "sweeps" / "kde_file_plugin.toml").read_text())
    options = spec["options"] | dict(n=20, iterations=2, runs=2)
    lines = ['command = "simulate model"', "[options]"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in options.items()]
    lines += ["[axes]", "lam = [0, inf]", 'param = [["bandwidth=0.1"]]']
    small = tmp_path / "small.toml"
    small.write_text("\n".join(lines) + "\n")
    out = tmp_path / "sweep"
    # The spec names the model relative to the repository root, as its comment says.
    res = subprocess.run(
        [sys.executable, "-m", "stability", "sweep", str(small), "--out", str(out)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert run_cli("collect", out).returncode == 0
    assert (out / "results.csv").exists() and list(out.glob("results_*.png"))
