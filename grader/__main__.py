"""``python -m grader <command>``: the grader's command line.

    grade SUBMISSION --out DIR [--parts a,b] [--no-train] [--lang en|ja]
                                                             grade one submission (grader/grade.py)
    grade-all SUBMISSIONS --out DIR [--jobs N] [--force] [--lang en|ja]
                                                             grade a folder of them (grader/grade_all.py)
    --version                                                pyproject.toml's version (+ git describe)
    train / translate / evaluate                             train and try a model (grader/translation/cli.py)

``--lang``: the language of what the student reads (report.md, the checks' messages); default:
``[course] language`` in course.toml, else English (never the machine's locale).

Help (grader/cli.py): plain text, every option's default shown; the subcommands' parsers get
that formatter here, ``train``, ``translate`` and ``evaluate`` included (their parsers come from
``grader.translation.cli.add_subcommands``; each sets ``func``, which gets the parsed namespace
and returns the exit status).
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


def build_parser() -> argparse.ArgumentParser:
    from grader import grade, grade_all

    parser = argparse.ArgumentParser(
        prog="python -m grader", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter
    )
    add_version(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    grade_parser = subparsers.add_parser(
        "grade",
        help="grade one submission",
        formatter_class=HelpFormatter,
        description="Grade one submission: results.json and report.md in --out.",
    )
    grade.add_arguments(grade_parser)
    grade_parser.set_defaults(func=grade.main)

    all_parser = subparsers.add_parser(
        "grade-all",
        help="grade every submission in a folder",
        formatter_class=HelpFormatter,
        description="Grade every submission in a folder (one sub-folder or .zip per "
        "student):\nOUT/<student>/ and OUT/gradebook.csv.",
    )
    grade_all.add_arguments(all_parser)
    all_parser.set_defaults(func=grade_all.main)

    from grader import export

    export_parser = subparsers.add_parser("export", help="grade a Moodle or Canvas download, write what it imports")
    export.add_arguments(export_parser)
    export_parser.set_defaults(func=export.main)

    from grader.translation import cli

    cli.add_subcommands(subparsers)
    # Every subcommand's help (train, translate, evaluate included) shows the defaults, in plain text.
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
