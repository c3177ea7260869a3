"""The commands a sweep can run, their options (read from their own parsers) and their argv.

A sweep spec sets a command's options by their argparse names (`n_fresh` or `n-fresh`); this
module reads those names, flags and arities from the command's parser, so that the parser stays
the one definition of a command's options, and writes option values back as argv tokens.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stability.errors import UsageError

# Options a spec may not set: the sweep chooses the folder and reads no JSON from stdout.
RESERVED = frozenset({"out", "json", "help"})


@dataclass(frozen=True)
class OptionInfo:
    """One option of a command.

    Parameters
    ----------
    dest : str
        Its argparse dest (``n_fresh``).
    flag : str
        Its longest flag (``--n-fresh``).
    kind : str
        ``"flag"`` (store_true), ``"one"`` (one value) or ``"many"`` (``nargs="+"``).
    """

    dest: str
    flag: str
    kind: str


def _kind(action: argparse.Action) -> str:
    # store_true is the only action without values whose constant is True.
    if action.nargs == 0 and action.const is True:
        return "flag"
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        return "many"
    return "one"


@dataclass(frozen=True)
class CommandInfo:
    """A command a sweep can run.

    Parameters
    ----------
    name : str
        Its name, the words after ``stability`` joined by a space (``"simulate gaussian"``).
    words : tuple of str
        Those words.
    make_parser : callable
        Returns the command's own argument parser.
    """

    name: str
    words: tuple[str, ...]
    make_parser: Callable[[], argparse.ArgumentParser]

    def parser(self) -> argparse.ArgumentParser:
        """A fresh instance of the command's parser."""
        return self.make_parser()

    def options(self) -> dict[str, OptionInfo]:
        """The options a spec may set, by dest (every optional argument but RESERVED ones)."""
        out = {}
        # argparse keeps its actions in `_actions` and has no public accessor for them.
        for action in self.parser()._actions:
            if not action.option_strings or action.dest in RESERVED:
                continue
            flag = max(action.option_strings, key=len)
            out[action.dest] = OptionInfo(action.dest, flag, _kind(action))
        return out

    def argv(self, options: dict[str, Any], table: dict[str, OptionInfo] | None = None):
        """The argv of options (dest -> value) for this command, in the given order.

        Parameters
        ----------
        options : dict
            dest -> value: True/False for a flag, a list for a multi-valued option.
        table : dict, optional
            `options()`, when the caller has it already.

        Returns
        -------
        list of str
            Flags and value tokens (`value_tokens`), without the command's words.
        """
        table = table or self.options()
        argv = []
        for dest, value in options.items():
            opt = table[dest]
            if opt.kind == "flag":
                if value:
                    argv.append(opt.flag)
                continue
            argv.append(opt.flag)
            argv.extend(value_tokens(value))
        return argv


def value_tokens(value) -> list[str]:
    """argv strings of a value: numbers as Python writes them, inf as 'inf', lists flattened."""
    if isinstance(value, list):
        return [t for v in value for t in value_tokens(v)]
    if isinstance(value, float):
        if math.isinf(value):
            return ["inf" if value > 0 else "-inf"]
        return [repr(value)]
    return [str(value)]


def name_token(value) -> str:
    """A value as written in a cell's folder name: ``true``/``false``, lists comma-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(value_tokens(value))


def _gaussian_parser():
    from stability.app.simulate import gaussian_parser

    return gaussian_parser()


def _flow_parser():
    from stability.app.simulate import twod_parser

    return twod_parser("flow")


def _diffusion_parser():
    from stability.app.simulate import twod_parser

    return twod_parser("diffusion")


def _model_parser():
    from stability.app.simulate import model_parser

    return model_parser()


def _retrain_parser():
    from stability.app.deep_commands import retrain_parser

    return retrain_parser()


COMMANDS = {
    c.name: c
    for c in (
        CommandInfo("simulate gaussian", ("simulate", "gaussian"), _gaussian_parser),
        CommandInfo("simulate flow", ("simulate", "flow"), _flow_parser),
        CommandInfo("simulate diffusion", ("simulate", "diffusion"), _diffusion_parser),
        CommandInfo("simulate model", ("simulate", "model"), _model_parser),
        CommandInfo("deep retrain", ("deep", "retrain"), _retrain_parser),
    )
}
# Commands that can run on several processes (torch.distributed under torchrun).
DISTRIBUTED = frozenset({"deep retrain"})


def command_info(name: str) -> CommandInfo:
    """The command called `name` (spaces normalised); UsageError naming the choices if none."""
    key = " ".join(str(name).split())
    if key not in COMMANDS:
        raise UsageError(f"unknown command {name!r}; choose one of: {', '.join(COMMANDS)}")
    return COMMANDS[key]


__all__ = [
    "COMMANDS",
    "DISTRIBUTED",
    "RESERVED",
    "CommandInfo",
    "OptionInfo",
    "command_info",
    "name_token",
    "value_tokens",
]
