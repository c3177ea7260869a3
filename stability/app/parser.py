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


def int_at_least(minimum: int, why: str = ""):
    """An argparse ``type`` accepting an integer >= `minimum` (e.g. --seed 0, --jobs 1).

    Parameters
    ----------
    minimum : int
        The smallest value accepted.
    why : str
        Said after the message, in parentheses, when given.

    Returns
    -------
    callable
        ``text -> int``, raising `argparse.ArgumentTypeError` (one line) otherwise.
    """
    note = f" ({why})" if why else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}{note}, got {text!r}"
            ) from None
        return value

    return parse
