"""Mutation testing of the core math (benchmarks/mutations.py): every curated error in rates,
gaussian, families, operator, loop and the checks' reference formulas must change a verdict of
`stability check --quick` or fail a test of the mutated file. Slow (about an hour on 2 cores):
`pytest -m slow tests/stability/test_mutations.py`."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "mutations.py"


def _harness():
    spec = importlib.util.spec_from_file_location("mutations", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutations", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_catalogue_is_curated_and_applies():
    h = _harness()
    ids = [m.id for m in h.MUTATIONS]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    root = HARNESS.parents[1]
    files = {m.path for m in h.MUTATIONS}
    for name in ("rates", "gaussian", "operator", "loop"):
        assert f"stability/{name}.py" in files
    assert any(f.startswith("stability/families/") for f in files)
    assert any(f.startswith("stability/checks/") for f in files)
    for m in h.MUTATIONS:
        assert (root / m.path).read_text().count(m.old) == 1, m.id  # applies to one place
        assert m.old != m.new, m.id
        assert h._tests_for(m.path, root), m.id  # every mutated file has tests to run


@pytest.mark.slow
def test_every_mutation_is_caught():
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "-j", "2"], capture_output=True, text=True, timeout=3 * 3600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
