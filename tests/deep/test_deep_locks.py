"""`stability deep retrain|train|generate` lock their output: a second command on the same
--out, while the first runs, exits 2 naming the running process and writes nothing.

The first command is stood in for by another process holding the lock the real command takes
(`stability.runs.lock`): the run folder's for retrain, ``.NAME.lock`` beside the checkpoint or
the images for train and generate. Under torchrun only rank 0 takes the lock and every rank
learns the outcome (`deep.train.held_by_main`): a refused lock stops all ranks, none waits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fcntl")

from stability.app.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# Holds a lock (folder: the run folder's; output: .NAME.lock beside NAME) until killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from stability.runs.lock import lock_output, lock_run_folder

    take = lock_run_folder if sys.argv[1] == "folder" else lock_output
    with take(sys.argv[2], command=sys.argv[3]):
        print("held", flush=True)
        time.sleep(300)
    """
)

# A small but real retraining run: everything validate_run checks passes.
RETRAIN = ["--data", "digits:16", "--n", "64", "--iterations", "1", "--kimg", "0.01",
           "--init-kimg", "0.01", "--net", "tiny", "--batch", "8", "--features", "none"]  # fmt: skip


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


@pytest.fixture
def holder():
    """Start a process holding a lock: holder(kind, path, command) -> its pid."""
    procs = []

    def start(kind: str, path: Path, command: str) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, str(path), command],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def refused(capsys, argv, pid: int) -> str:
    code = main([str(a) for a in argv])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1, err
    assert f"pid {pid}" in err[0] and "Traceback" not in err[0], err[0]
    return err[0]


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_retrain_on_a_folder_in_use_exits_2_and_writes_nothing(tmp_path, capsys, holder):
    out = tmp_path / "run"
    pid = holder("folder", out, "deep retrain (edm)")
    before = tree(tmp_path)
    line = refused(capsys, ["deep", "retrain", *RETRAIN, "--out", out], pid)
    assert "another deep retrain (edm) is running in" in line
    assert tree(tmp_path) == before == ["run", "run/.lock"]


def test_train_and_generate_on_an_output_in_use_exit_2_and_write_nothing(tmp_path, capsys, holder):
    ckpt = tmp_path / "model.pt"
    argv = ["deep", "train", "--data", "digits:16", "--n", "64", "--net", "tiny", "--batch", "8"]
    # A real checkpoint first (the lock must not get in the way of a free output) ...
    assert main([*map(str, argv), "--kimg", "0.002", "--out", str(ckpt)]) == 0
    capsys.readouterr()
    # The status log (stderr is not a terminal here); the lock file went with its holder.
    assert tree(tmp_path) == ["model.pt", "model.pt.log"]
    # ... then the same output while another process writes it.
    pid = holder("output", ckpt, "deep train")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    line = refused(capsys, [*argv, "--kimg", "0.002", "--out", ckpt], pid)
    assert "another deep train is writing" in line and "model.pt" in line
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # no .log, no .snap
    for out in (tmp_path / "gen.zip", tmp_path / "pngs" / "sub"):
        pid = holder("output", out, "deep generate")
        gen = ["deep", "generate", "--ckpt", ckpt, "--n", "2", "--steps", "2", "--out", out]
        assert "another deep generate is writing" in refused(capsys, gen, pid)
        assert not out.exists()


def test_a_free_output_has_no_lock_left_and_no_folder_after_a_refusal(tmp_path, capsys):
    from stability.runs.lock import lock_output, output_lock_path

    nested = tmp_path / "a" / "b" / "model.pt"
    with lock_output(nested, command="deep train") as lock:
        assert lock.path == output_lock_path(nested) and lock.path.exists()
    assert list(tmp_path.iterdir()) == []  # parents it made were empty: removed


# Two ranks on CPU (gloo): rank 0 locks; when it cannot, every rank must stop, not wait.
RANKS = textwrap.dedent(
    """
    import contextlib, json, sys
    from pathlib import Path
    from deep import dist
    from deep.train import held_by_main
    from stability.errors import UsageError
    from stability.runs.lock import lock_output

    out = Path(sys.argv[1])
    dist.init("cpu")
    with held_by_main(lambda: lock_output(out / "free.pt", command="test")):
        free = "entered"
    dist.barrier()
    # Rank 0 itself holds busy.pt's lock (flock: another descriptor conflicts, in-process too).
    busy = out / "busy.pt"
    hold = lock_output(busy, command="holder") if dist.is_main() else contextlib.nullcontext()
    with hold:
        try:
            with held_by_main(lambda: lock_output(busy, command="test")):
                taken = "entered"
        except UsageError as exc:
            taken = "refused: " + str(exc)
    # One file per rank: two ranks printing to one pipe can interleave their lines.
    row = {"rank": dist.rank(), "free": free, "busy": taken}
    (Path(sys.argv[2]) / f"rank{dist.rank()}.json").write_text(json.dumps(row))
    dist.shutdown()
    """
)


def test_under_two_ranks_only_rank_0_locks_and_a_refusal_stops_every_rank(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    out, rows = tmp_path / "out", tmp_path / "rows"
    out.mkdir()
    rows.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(script), str(out), str(rows)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=child_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(f.read_text()) for f in sorted(rows.iterdir())]
    assert sorted(r["rank"] for r in lines) == [0, 1]
    assert all(r["free"] == "entered" for r in lines)
    # Both ranks refused with rank 0's message, which names the holder: rank 0's own process.
    messages = {r["busy"] for r in lines}
    assert len(messages) == 1 and messages.pop().startswith("refused: another holder is writing")
    assert list(out.iterdir()) == []  # lock files removed with their holders
