"""benchmarks/end_to_end.py in its cheap form: the table of the commands a user types, parsed."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "end_to_end.py"


def _module():
    spec = importlib.util.spec_from_file_location("end_to_end", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_times_each_command_in_its_own_process():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "help", "alpha"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"of {os.cpu_count()} cores" in lines[0] and "load average" in lines[0]
    assert lines[1] == "Command: python benchmarks/end_to_end.py --only help alpha"
    start = lines.index("| command | wall s | CPU s | |")
    assert lines[start + 1] == "|---|---:|---:|---|"
    rows = [
        re.fullmatch(r"\| `(.+)` \| ([\d.]+) \| ([\d.]+) \| (.*) \|", ln)
        for ln in lines[start + 2 :]
    ]
    assert all(rows) and [r.group(1) for r in rows] == ["stability --help", "stability alpha 10"]
    for r in rows:
        wall, cpu = float(r.group(2)), float(r.group(3))
        # a process starts Python and imports the toolkit: it takes time, on at most every core
        assert wall > 0.01 and 0.01 < cpu <= wall * os.cpu_count() + 0.01
        assert r.group(4) == ""  # exit 0


def test_a_failing_command_is_in_the_table_with_its_exit_code_and_line(tmp_path):
    e2e = _module()
    result = e2e.time_command("alpha 0", tmp_path)
    assert result["exit"] == 2 and "n must be an integer >= 2" in result["error"]
    row = e2e.table([result]).splitlines()[-1]
    assert row.startswith("| `stability alpha 0` |") and "exit 2: " in row
    assert not (tmp_path / "out").exists()  # bad input writes nothing
