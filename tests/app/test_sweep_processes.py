"""One cell as one process: its log, its thread limits, and how it ended (signals included)."""

from __future__ import annotations

import os
import signal
import sys

from stability.app.sweep.processes import (
    THREAD_VARS,
    available_cores,
    first_line,
    last_line,
    run_command,
    stability_command,
    thread_env,
)


def test_a_killed_cell_is_reported_with_its_signal(tmp_path):
    cmd = [
        sys.executable,
        "-c",
        "import os, signal; print('working'); os.kill(os.getpid(), signal.SIGKILL)",
    ]
    outcome = run_command(cmd, dict(os.environ), tmp_path / "log", "attempt 1")
    assert outcome.returncode == -signal.SIGKILL
    assert outcome.error == "killed by SIGKILL (out of memory?); last output: working"
    ok = run_command([sys.executable, "-c", "print(1)"], dict(os.environ), tmp_path / "log", "a")
    assert (ok.returncode, ok.error) == (0, None)
    assert (tmp_path / "log").read_text().count("=== ") == 2


def test_a_failed_command_reports_its_last_line_and_its_environment(tmp_path):
    script = (
        "import os, sys; print(os.environ['OMP_NUM_THREADS'], os.environ['NUMBA_NUM_THREADS']);"
        "print('ValueError: the last line', file=sys.stderr); sys.exit(3)"
    )
    outcome = run_command([sys.executable, "-c", script], thread_env(3), tmp_path / "log", "a")
    assert (outcome.returncode, outcome.error) == (3, "ValueError: the last line")
    assert "3 3\n" in (tmp_path / "log").read_text()
    silent = run_command([sys.executable, "-c", "raise SystemExit(4)"], {}, tmp_path / "log", "b")
    assert silent.error == "exit code 4 and no output"


def test_descriptors_passed_to_the_cell_are_open_in_it(tmp_path):
    read, write = os.pipe()
    try:
        script = f"import os; os.write({write}, b'from the cell')"
        outcome = run_command(
            [sys.executable, "-c", script],
            dict(os.environ),
            tmp_path / "log",
            "a",
            pass_fds=(write,),
        )
        assert outcome.returncode == 0, (tmp_path / "log").read_text()
        assert os.read(read, 100) == b"from the cell"
    finally:
        os.close(read)
        os.close(write)


def test_thread_limits_and_the_command_of_a_cell():
    env = thread_env(2, base={"PATH": "/bin", "OMP_NUM_THREADS": "64"})
    assert env["PATH"] == "/bin" and all(env[v] == "2" for v in THREAD_VARS)
    assert "OMP_NUM_THREADS" in THREAD_VARS and 1 <= available_cores() <= (os.cpu_count() or 1)
    assert stability_command(["alpha", "10"]) == [sys.executable, "-m", "stability", "alpha", "10"]
    assert first_line("\n  one \ntwo\n") == "one" and last_line("one\ntwo  \n\n") == "two"
    assert len(last_line("x" * 1000)) == 300 and first_line("") == ""
