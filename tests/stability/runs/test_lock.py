"""Folder locks: one process at a time, released on exit, stale locks of dead processes taken
over, and kept by the child processes a holder hands its lock to."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stability.errors import UsageError
from stability.runs.lock import LOCK_FILE, lock_run_folder, read_holder, remove_partial_writes

pytest.importorskip("fcntl")

# A process that locks FOLDER, optionally starts a child that keeps the lock, prints its pid
# (and the child's) and waits to be killed.
HOLDER = textwrap.dedent(
    """
    import subprocess, sys, time
    from stability.runs.lock import lock_run_folder

    with lock_run_folder(sys.argv[1], command="test holder") as lock:
        child = None
        if sys.argv[2] == "child":
            child = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=(lock.fd,)
            )
        print(child.pid if child else 0, flush=True)
        time.sleep(120)
    """
)


# A process killed by SIGKILL in the middle of an atomic write (while its data is being flushed).
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from stability.runs import runfolder

    def stuck(fd):
        print("writing", flush=True)
        time.sleep(120)

    os.fsync = stuck
    runfolder.atomic_write_bytes(Path(sys.argv[1]), b"partial")
    """
)


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]))


def killed_during_atomic_write(path: Path) -> Path:
    """Kill a process while it writes `path` atomically; returns the temporary file it leaves."""
    before = set(path.parent.glob(f".{path.name}.*")) if path.parent.exists() else set()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout.readline() == "writing\n"
    finally:
        proc.kill()
        proc.wait()
    (left,) = set(path.parent.glob(f".{path.name}.*")) - before
    assert not path.exists()
    return left


def start_holder(folder: Path, child: bool) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), "child" if child else "alone"],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        start_new_session=True,  # one process group: the test can stop the child too
    )
    line = proc.stdout.readline()
    assert line, "the holder process did not start"
    return proc, int(line)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def test_one_holder_at_a_time_and_released_on_exit(tmp_path):
    folder = tmp_path / "run"
    with lock_run_folder(folder, command="sweep") as lock:
        assert lock.path == folder / LOCK_FILE and lock.fd is not None
        holder = read_holder(folder)
        assert (holder.pid, holder.host, holder.command) == (
            os.getpid(),
            socket.gethostname(),
            "sweep",
        )
        # flock locks belong to an open file, so the same process is refused a second one.
        with pytest.raises(UsageError) as err:
            with lock_run_folder(folder):
                pass
        message = str(err.value)
        assert message.startswith(f"another sweep is running in {str(folder)!r}")
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message and "\n" not in message
    assert not (folder / LOCK_FILE).exists()
    with pytest.raises(RuntimeError, match="inside"):
        with lock_run_folder(folder):
            raise RuntimeError("inside")
    with lock_run_folder(folder):  # released by the exception too
        pass


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    folder = tmp_path / "run"
    folder.mkdir()
    stale = {"pid": pid, "host": socket.gethostname(), "command": "sweep", "started": "then"}
    (folder / LOCK_FILE).write_text(json.dumps(stale))
    assert read_holder(folder).pid == pid and read_holder(folder).alive() is False
    with lock_run_folder(folder, command="new"):
        assert read_holder(folder).pid == os.getpid() and read_holder(folder).command == "new"
    (folder / LOCK_FILE).write_text("")  # a lock file being written, or not ours
    with lock_run_folder(folder):
        pass
    assert read_holder(tmp_path) is None


def test_a_holder_killed_with_sigkill_releases_the_lock(tmp_path):
    folder = tmp_path / "run"
    proc, _ = start_holder(folder, child=False)
    try:
        with pytest.raises(UsageError, match=rf"another test holder is running .*pid {proc.pid} "):
            with lock_run_folder(folder):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert (folder / LOCK_FILE).exists()  # stale: nobody removed it
        with lock_run_folder(folder, command="after"):
            assert read_holder(folder).command == "after"
    finally:
        kill_group(proc)


def test_children_given_the_lock_keep_it_after_their_parent_is_killed(tmp_path):
    folder = tmp_path / "run"
    proc, child = start_holder(folder, child=True)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with pytest.raises(UsageError) as err:
            with lock_run_folder(folder):
                pass
        assert f"pid {proc.pid} on {socket.gethostname()}" in str(err.value)
        assert "which has exited; processes it started still hold the lock" in str(err.value)
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:  # the child is gone once the kernel has closed its descriptors
            try:
                with lock_run_folder(folder):
                    break
            except UsageError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        kill_group(proc)


def test_taking_the_lock_removes_what_killed_writers_left(tmp_path):
    folder = tmp_path / "run"
    left = killed_during_atomic_write(folder / "blocks" / "lam0_block00000.npz")
    kept_partial = killed_during_atomic_write(folder / "figures" / "w2.png")
    (folder / "figures" / "w1.png").write_bytes(b"a finished figure")
    (folder / ".hidden.tmp").write_text("not an atomic write's name")
    nested = folder / "cell"
    nested.mkdir()
    (nested / LOCK_FILE).write_text("")  # a folder with its own lock: left to its holder
    inside = killed_during_atomic_write(nested / "summary.csv")
    with lock_run_folder(folder) as lock:
        assert sorted(lock.removed) == sorted([left, kept_partial])
    assert not (folder / "blocks").exists()  # it held nothing else
    assert sorted(p.name for p in (folder / "figures").iterdir()) == ["w1.png"]
    assert (folder / ".hidden.tmp").exists() and inside.exists()
    with lock_run_folder(nested, clean=False) as lock:
        assert lock.removed == () and inside.exists()
    assert remove_partial_writes(nested) == [inside] and not inside.exists()


def test_an_output_lock_sits_beside_its_output_and_refuses_a_second_writer(tmp_path):
    from stability.runs.lock import lock_output, output_lock_path

    out = tmp_path / "new" / "model.pt"
    assert output_lock_path(out) == tmp_path / "new" / ".model.pt.lock"
    with lock_output(out, command="deep train") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        # flock conflicts between two descriptors, in one process too.
        with pytest.raises(UsageError, match=rf"another deep train is writing .*pid {os.getpid()}"):
            with lock_output(out, command="deep train"):
                pass  # pragma: no cover
        out.write_bytes(b"weights")
    # The lock file is gone; the folder made for it stays because the output is in it.
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["model.pt"]
    with pytest.raises(RuntimeError), lock_output(tmp_path / "x" / "y" / "z.zip"):
        raise RuntimeError("the run failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]  # x/y were made and empty
    # A relative name and a folder with a trailing slash have a lock file beside them too.
    assert output_lock_path("pngs/").name == ".pngs.lock"
    assert output_lock_path(".").parent == Path(os.getcwd()).parent
