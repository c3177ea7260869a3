"""The argument parser every command uses: errors become `UsageError` (one line, exit 2)."""

from __future__ import annotations

import argparse

from stability.errors import UsageError


class ArgParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` that raises `UsageError` instead of printing and exiting.

    The application's `main` prints the error's one line and exits with code 2, so that every
    command reports bad usage the same way and nothing is written before the check.
    """

    def error(self, message):  # noqa: D401 - argparse API
        """Raises `UsageError` with ``prog: message`` instead of printing usage and exiting."""
        raise UsageError(f"{self.prog}: {message}")
