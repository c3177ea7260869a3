"""`stability sweep` and `stability collect` on the command line: dry runs, one-line errors that
write nothing, and a sweep collected into one table."""

from __future__ import annotations

import json

import pytest

from stability.app.cli import main
from stability.app.sweep.cli import main_collect, main_sweep
from tests.stability.runs.test_collect import lam_sweep


def test_dry_run_writes_nothing(tmp_path, capsys):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(
        'command = "simulate gaussian"\n[options]\nruns = 20\n[axes]\nlam = [0.5, inf]\nseeds = 2\n'
    )
    out = tmp_path / "out"
    assert main_sweep([str(spec_file), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 cells" in text and "lam=inf__seed=1" in text
    assert "stability simulate gaussian --runs 20 --lam inf --seed 1 --out" in text
    assert not out.exists()


def test_bad_spec_files_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('command = "simulate gaussian"\nout = "o"\n[axes]\nlam = [\n')
    with pytest.raises(ValueError, match="invalid TOML"):
        main_sweep([str(bad)])
    with pytest.raises(ValueError, match="cannot read spec"):
        main_sweep([str(tmp_path / "missing.toml")])
    good = tmp_path / "good.toml"
    good.write_text('command = "simulate gaussian"\n[options]\nruns = 20\n')
    with pytest.raises(ValueError, match="give --out"):
        main_sweep([str(good)])
    with pytest.raises(ValueError, match="unknown executor 'pbs'"):
        main_sweep([str(good), "--out", "o", "--executor", "pbs"])
    with pytest.raises(ValueError, match="retries must be"):
        main_sweep([str(good), "--out", "o", "--retries", "-1"])
    with pytest.raises(ValueError, match="stability sweep: argument --workers"):
        main_sweep([str(good), "--out", "o", "--workers", "two"])
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        main_sweep([str(good), "--out", "o", "--workers", "0"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "good.toml"]


def test_collect_reports_skipped_cells(tmp_path, capsys):
    sweep = lam_sweep(tmp_path / "sweep", **{"lam=2.0": "failed"})
    assert main_collect([str(sweep)]) == 0
    printed = capsys.readouterr()
    assert "skipped unfinished" in printed.err and "lam=2.0 (failed)" in printed.err
    assert "48 rows from 2 runs" in printed.out and (sweep / "results.csv").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no finished run folder"):
        main_collect([str(tmp_path / "empty")])


def test_the_stability_command_line_runs_sweep_and_collect(tmp_path, capsys):
    # Through the top-level CLI: bad specs are one line and exit 2, nothing written.
    bad = tmp_path / "bad.toml"
    bad.write_text('command = "simulate gaussian"\n[axes]\nlam = []\n')
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lam" in err
    assert not (tmp_path / "o").exists()
    good = tmp_path / "good.toml"
    good.write_text(
        'command = "simulate gaussian"\n[options]\nruns = 20\niterations = 2\n[axes]\nlam = [0, 1]\n'
    )
    assert main(["sweep", str(good), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "2 cells" in capsys.readouterr().out and not (tmp_path / "o").exists()
    assert main(["sweep", str(good), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    status = json.loads((tmp_path / "o" / "sweep.json").read_text())
    assert status["counts"] == {"pending": 0, "running": 0, "done": 2, "failed": 0}
    assert main(["collect", str(tmp_path / "o")]) == 0
    rows = (tmp_path / "o" / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:2] == ["run", "command"] and "lam" in header and len(rows) == 1 + 36
    assert main(["collect", str(tmp_path / "nothing")]) == 2
    # A second sweep in the same folder while one runs: one line, exit 2.
    from stability.runs.lock import lock_run_folder

    capsys.readouterr()
    with lock_run_folder(tmp_path / "o", command="sweep"):
        assert main(["sweep", str(good), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("stability: error: another sweep is running in")
