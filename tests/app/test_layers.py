"""The layer contracts of .importlinter hold, and break when someone adds an upward import."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = shutil.which(
    "lint-imports", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
)

pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed")


def _copy_tree(dest: Path) -> Path:
    for pkg in ("stability", "simulations", "deep"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", dest / ".importlinter")
    return dest


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run(
        [LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    copy = _copy_tree(tmp_path_factory.mktemp("layers"))
    clean = _lint(copy)
    assert clean.returncode == 0, clean.stdout[-2000:]
    return copy


@pytest.mark.parametrize(
    "module, line, contract",
    [
        ("stability/loop.py", "import stability.app.cli", "The core"),
        ("stability/rates.py", "import torch", "The core"),
        ("stability/runs/runfolder.py", "import simulations.data", "The run infrastructure"),
        ("simulations/data.py", "import deep.edm", "The engines never import each other"),
        (
            "deep/dist.py",
            "import stability.app.formatting",
            "The engines never import the application",
        ),
    ],
)
def test_an_upward_import_breaks_a_contract(tree, module, line, contract):
    path = tree / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # an upward import added by the test\n")
        broken = _lint(tree)
    finally:
        path.write_text(original)
    assert broken.returncode != 0
    # the report lists every contract; the broken ones are named again after this heading
    broken_part = " ".join(broken.stdout.split("Broken contracts", 1)[-1].split())
    assert "Broken contracts" in broken.stdout
    assert contract in broken_part
