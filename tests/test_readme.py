"""The README's test command is what CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_test_command_is_in_ci():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_block = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text()
    for line in test_block.strip().splitlines():
        line = line.strip()
        if line.startswith(("python3 -m venv", ". .venv")):
            continue  # CI makes its own virtual environment
        assert line in ci, f"README test command line not in .ci/run: {line}"
