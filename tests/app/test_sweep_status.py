"""OUT/sweep.json while a sweep runs: it follows the cells within about a second."""

from __future__ import annotations

import json
import math
import threading
import time

from stability.app.sweep.processes import Outcome
from stability.app.sweep.run import run_sweep
from stability.app.sweep.spec import parse_spec
from stability.app.sweep.status import SAVE_EVERY


def statuses(out) -> dict[str, str]:
    try:
        data = json.loads((out / "sweep.json").read_text())
    except FileNotFoundError:
        return {}
    return {r["name"]: r["status"] for r in data["cells"]}


def test_sweep_json_shows_finished_and_running_cells_while_the_sweep_runs(tmp_path):
    # Reported bug: saves are throttled to one a second, and an update held back was only
    # written by the next save, so a cell that finished shortly after another showed as
    # "pending" (or "running") until much later, or until the next run after a kill -9.
    spec = parse_spec(
        {"command": "simulate gaussian", "options": {"runs": 20}, "axes": {"lam": [0.5, math.inf]}}
    )
    release = threading.Event()

    def runner(cell, env, log, attempt):
        if cell.name == "lam=0.5":
            cell.folder.mkdir(parents=True)
            (cell.folder / "summary.csv").write_text("policy,lam,t,metric\n")
            return Outcome(0, None, 0.01)
        release.wait(60)  # lam=inf runs until the test has looked
        return Outcome(1, "stopped by the test", 0.0)

    out = tmp_path / "out"
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            report=run_sweep(spec, out, workers=2, retries=0, runner=runner, progress=False)
        )
    )
    thread.start()
    try:
        expected = {"lam=0.5": "done", "lam=inf": "running"}
        deadline = time.monotonic() + 5 * SAVE_EVERY + 5
        seen = statuses(out)
        while seen != expected and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = statuses(out)
        assert seen == expected
    finally:
        release.set()
        thread.join(60)
    assert result["report"].done == 1 and statuses(out) == {"lam=0.5": "done", "lam=inf": "failed"}
