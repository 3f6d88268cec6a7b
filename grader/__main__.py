"""``python -m grader <command>``: the grader's command line.

    grade SUBMISSION --out DIR [--parts a,b] [--no-train] [--lang en|ja]
                                                             grade one submission (grader/grade.py)
    grade-all SUBMISSIONS --out DIR [--jobs N] [--force] [--lang en|ja]
                                                             grade a folder of them (grader/grade_all.py)
    --version                                                pyproject.toml's version (+ git describe)
    train / translate / evaluate                             from grader.translation.cli, when present

``--lang``: the language of what the student reads (report.md, the checks' messages); default:
``[course] language`` in course.toml, else English (never the machine's locale).

Help (grader/cli.py): plain text, every option's default shown; the subcommands' parsers get
that formatter here, the translation engineer's included.

Extension point for the translation engineer: ``grader/translation/cli.py`` defines

    def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
        '''Add `train`, `translate`, `evaluate` parsers; each sets `func=callable(args) -> int`.'''

Each parser must ``set_defaults(func=...)``; the callable gets the parsed namespace and returns
the exit status. An import error there disables only those commands (with the reason).
"""
from __future__ import annotations

import argparse
import sys

from grader.cli import HelpFormatter, add_version

DESCRIPTION = "The grader's command line: grade one submission or a class, train."
EPILOG = """\
Each command has its own help: python -m grader COMMAND --help.
  python -m grader grade SUBMISSION --out DIR [--parts masks,attention] [--no-train]
  python -m grader grade-all SUBMISSIONS --out DIR [--jobs N] [--no-train]

--lang (grade, grade-all): the language of what the student reads (report.md, the checks'
messages); default: [course] language in course.toml, else English (never the machine's locale).
"""


def _unavailable(reason: str):
    def run(args) -> int:
        print(f"grader: `{args.command}` is unavailable: {reason}", file=sys.stderr)
        return 1

    return run


def build_parser() -> argparse.ArgumentParser:
    from grader import grade, grade_all

    parser = argparse.ArgumentParser(prog="python -m grader", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    add_version(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    grade_parser = subparsers.add_parser("grade", help="grade one submission", formatter_class=HelpFormatter,
                                         description="Grade one submission: results.json and report.md in --out.")
    grade.add_arguments(grade_parser)
    grade_parser.set_defaults(func=grade.main)

    all_parser = subparsers.add_parser("grade-all", help="grade every submission in a folder",
                                       formatter_class=HelpFormatter,
                                       description="Grade every submission in a folder (one sub-folder or .zip per "
                                                   "student):\nOUT/<student>/ and OUT/gradebook.csv.")
    grade_all.add_arguments(all_parser)
    all_parser.set_defaults(func=grade_all.main)

    from grader import export

    export_parser = subparsers.add_parser("export", help="grade a Moodle or Canvas download, write what it imports")
    export.add_arguments(export_parser)
    export_parser.set_defaults(func=export.main)

    try:
        from grader.translation import cli
    except ImportError as error:
        reason = ("grader/translation is not part of this installation" if getattr(error, "name", "")
                  in ("grader.translation", "grader.translation.cli") else f"{type(error).__name__}: {error}")
        for name in ("train", "translate", "evaluate"):
            sub = subparsers.add_parser(name, help=f"(unavailable: {reason})", formatter_class=HelpFormatter)
            sub.add_argument("rest", nargs=argparse.REMAINDER)
            sub.set_defaults(func=_unavailable(reason))
    else:
        cli.add_subcommands(subparsers)
    # Every subcommand's help (the translation engineer's included) shows the defaults, in plain text.
    for sub in subparsers.choices.values():
        if sub.formatter_class is argparse.HelpFormatter:
            sub.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
