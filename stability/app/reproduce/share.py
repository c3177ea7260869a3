"""Work that one ``deep retrain`` run of the deep part hands to another instead of repeating it.

A ``deep retrain`` run folder resumes from the files of its finished phases (`deep.retrain`):
``checkpoints/train_t{t}.pt`` and ``.json`` (the fit of iteration t), ``generated/gen_t{t}.zip``
(its images), ``metrics.json`` (one row per finished iteration) and ``features/`` (the digits
feature network and the real images' features, keyed by a hash of the real images). Writing
another run's files there before the run starts makes it load them as if it had computed them.

That is exact, not an approximation, for two things the deep part would otherwise compute over
and over:

- the t = 0 stage of a seed: every lambda of the seed starts from the baseline's t = 0 network
  (``--init`` from its checkpoint, no training of its own), generates its t = 0 images from the
  same seeds with the same network, and so gets the same images and the same t = 0 metrics;
  the checkpoint carries the whole training state (weights, EMA, Adam, image counts, the seed),
  so resuming it continues exactly as starting from it would;
- the digits feature network and the real images' features: a deterministic function of the real
  images (the same for every run of the part), cached under a key that names them.

The loss of the t = 0 fit, which a run started with ``--init`` and no training of its own records
as NaN, becomes the baseline's loss of that same fit.
"""

from __future__ import annotations

import json
from pathlib import Path

from stability.runs.runfolder import atomic_write_bytes, atomic_write_text

# The resume files of the t = 0 stage, relative to a run folder.
T0_FILES = (
    ("checkpoints", "train_t0.pt"),
    ("checkpoints", "train_t0.json"),
    ("generated", "gen_t0.zip"),
)


def started(folder: Path) -> bool:
    """Whether a run has written its config.json in `folder` (then it resumes on its own and
    nothing is handed to it)."""
    return (folder / "config.json").is_file()


def copy_absent(source: Path, target: Path) -> bool:
    """Copy file `source` to `target` (atomically) unless `target` exists; whether it copied."""
    if target.exists() or not source.is_file():
        return False
    atomic_write_bytes(target, source.read_bytes())
    return True


def share_features(source: Path, target: Path) -> int:
    """Hand the cached feature network and real features of run folder `source` to run folder
    `target` (before `target` starts); returns the number of files copied."""
    if started(target) or not (source / "features").is_dir():
        return 0
    return sum(
        copy_absent(f, target / "features" / f.name)
        for f in sorted((source / "features").iterdir())
    )


def share_t0(source: Path, target: Path) -> bool:
    """Hand the finished t = 0 stage of run folder `source` (the seed's baseline) to run folder
    `target` (another lambda of the seed, started from `source`'s t = 0 checkpoint), before
    `target` starts: its checkpoint, its images and its metrics row. Returns whether it did
    (False when `target` has started or `source` has no finished t = 0 stage).
    """
    metrics_path = source / "metrics.json"
    if started(target) or not metrics_path.is_file():
        return False
    metrics = json.loads(metrics_path.read_text())
    if "0" not in metrics or not all((source / Path(*f)).is_file() for f in T0_FILES):
        return False
    for parts in T0_FILES:
        copy_absent(source / Path(*parts), target / Path(*parts))
    # Written last: a run that finds its t = 0 row finds every file the row was computed from.
    if not (target / "metrics.json").exists():
        atomic_write_text(target / "metrics.json", json.dumps({"0": metrics["0"]}, indent=1))
    return True
