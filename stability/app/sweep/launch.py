"""The process torchrun starts for each rank of a multi-GPU cell: the `stability` command line.

``python -m stability.app.sweep.launch '["deep", "retrain", ...]'`` runs ``stability deep
retrain ...``. The argv travels as one JSON argument because torchrun's own parser reads every
option after the module too, and rejects `--n` as an ambiguous prefix of its --nnodes.
"""

from __future__ import annotations

import json
import sys


def main_json(args: list[str]) -> int:
    """Run the `stability` command line on the argv given as one JSON list.

    Parameters
    ----------
    args : list of str
        One element: a JSON list of strings, the words after ``stability``.

    Returns
    -------
    int
        The command's exit code.
    """
    from stability.app.cli import main

    return main(json.loads(args[0]))


if __name__ == "__main__":  # pragma: no cover - run by torchrun in a multi-process cell
    sys.exit(main_json(sys.argv[1:]))
