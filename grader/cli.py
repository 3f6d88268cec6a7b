"""What every command line of the grader shares: plain-text help that shows each option's
default, and ``--version``.

    parser = argparse.ArgumentParser(prog="python -m grader.x", formatter_class=HelpFormatter)
    add_version(parser)

``HelpFormatter`` keeps the description's line breaks, drops reStructuredText markup (````x````
and ```x```: the docstrings are written for Sphinx, the help for a terminal) and appends
``(default: ...)`` to every option whose help does not already say it; flags (``store_true``)
and options without a default (``None``) get nothing appended.
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def plain(text: str) -> str:
    """``x`` and `x` -> x."""
    return _LITERAL.sub(lambda m: m.group(1) or m.group(2), text)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 30, width=None):
        super().__init__(prog, indent_increment, max_help_position, width)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.help is not argparse.SUPPRESS:
            # argparse measures the subcommands without their indent: "grade-all" would wrap
            longest = max((len(self._format_action_invocation(s)) for s in action._get_subactions()), default=0)
            self._action_max_length = max(
                self._action_max_length, longest + self._current_indent + 2 * self._indent_increment
            )

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        return (
            bool(action.option_strings)
            and action.default is not None
            and action.default is not False
            and action.default != argparse.SUPPRESS
            and action.help != argparse.SUPPRESS
            and not isinstance(action, (argparse._HelpAction, argparse._VersionAction, VersionAction))
        )

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and self._shows_default(action):  # argparse shows nothing for an option without help
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not self._shows_default(action) or "%(default)" in text or "default:" in text or "(default" in text:
            return text
        return f"{text} (default: %(default)s)"

    def _expand_help(self, action: argparse.Action) -> str:
        default = action.default
        if isinstance(default, float) and default.is_integer():  # 60, not 60.0
            default = int(default)
        elif isinstance(default, Path):  # paths in the repository read better relative to it
            try:
                default = default.resolve().relative_to(ROOT)
            except ValueError:
                pass
        if default is not action.default:
            action = argparse.Action(
                action.option_strings,
                action.dest,
                default=default,
                help=action.help,
                metavar=action.metavar,
                choices=action.choices,
                type=action.type,
            )
        return plain(super()._expand_help(action))


def version() -> str:
    """pyproject.toml's version, and ``git describe`` where this is a git checkout."""
    try:
        with open(ROOT / "pyproject.toml", "rb") as f:
            text = str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, ValueError):
        text = "unknown"
    if (ROOT / ".git").exists():
        try:
            described = subprocess.run(
                ["git", "describe", "--always", "--dirty", "--tags"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            described = ""
        if described:
            text += f" (git {described})"
    return text


class VersionAction(argparse.Action):
    """``--version``: computed only when asked (``git describe`` is a subprocess)."""

    def __init__(
        self,
        option_strings,
        dest=argparse.SUPPRESS,
        default=argparse.SUPPRESS,
        help="show the grader's version and exit",
    ):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog} {version()}", file=sys.stdout)
        parser.exit()


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=VersionAction)
