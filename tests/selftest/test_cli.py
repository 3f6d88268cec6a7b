"""The command lines' conventions (issue #15): every ``--help`` has a real program name, shows
the defaults, names the parts, explains every option, is plain text; ``--version``; the
Makefile's TRAIN / PARTS / JOBS; the authenticity line only where it is used.

Fast: the parsers are built in-process; nothing is graded."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from builders import bench, catalogues, notebooks, release, stubs
from grader import __main__ as entry
from grader import grade, grade_all
from grader.contract import find_seal
from grader.rubric import load_rubric

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]

# (how to print the help, the usage line it must start with)
TOOLS = {
    "builders.stubs": (stubs.main, "python -m builders.stubs"),
    "builders.catalogues": (catalogues.main, "python -m builders.catalogues"),
    "builders.notebooks": (notebooks.main, "python -m builders.notebooks"),
    "builders.release": (release.main, "python -m builders.release"),
    "builders.bench": (bench.main, "python -m builders.bench"),
}
# Parsers whose every option must explain itself (the translation commands are the translation
# engineer's: their prog, plain text and defaults are checked with the others, not their wording).
OWN_COMMANDS = ("grade", "grade-all")


def help_of(run, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        run(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def every_help(capsys) -> dict[str, tuple[str, str]]:
    """name -> (help text, expected usage prefix) of every command line the grader has."""
    helps = {"grader": (help_of(entry.main, ["--help"], capsys), "python -m grader")}
    for name, _sub in subparsers_of(entry.build_parser()).items():
        argv = [name, "--help"]
        helps[f"grader {name}"] = (help_of(entry.main, argv, capsys), f"python -m grader {name}")
    for name, (run, prog) in TOOLS.items():
        helps[name] = (help_of(run, ["--help"], capsys), prog)
    for name in ("student", "autograder"):
        helps[f"builders.release {name}"] = (
            help_of(release.main, [name, "--help"], capsys),
            f"python -m builders.release {name}",
        )
    return helps


def test_every_help_has_a_real_prog_and_is_plain_text(capsys):
    helps = every_help(capsys)
    assert {"grader grade", "grader grade-all", "builders.stubs", "builders.catalogues"} <= set(helps)
    for name, (text, prog) in helps.items():
        assert text.startswith(f"usage: {prog} "), (name, text[:200])
        assert "__main__.py" not in text and "`" not in text, (name, text)


def test_every_option_of_grade_and_the_tools_explains_itself():
    parsers = {name: p for name, p in subparsers_of(entry.build_parser()).items() if name in OWN_COMMANDS}
    # The tools build their parser inside main(): catch it as it parses.
    for name, (run, _prog) in TOOLS.items():
        seen = []
        original = argparse.ArgumentParser.parse_args

        def catch(self, *args, **kwargs):
            seen.append(self)  # noqa: B023 — catch is called within this iteration only
            raise SystemExit(0)

        argparse.ArgumentParser.parse_args = catch
        try:
            with pytest.raises(SystemExit):
                run([])
        finally:
            argparse.ArgumentParser.parse_args = original
        parsers[name] = seen[0]
        parsers.update({f"{name} {k}": v for k, v in subparsers_of(seen[0]).items()})
    assert "builders.release student" in parsers
    for name, parser in parsers.items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), (name, action.option_strings or action.dest)


def test_grade_help_shows_the_defaults_and_the_parts(capsys):
    parts = list(load_rubric().parts)
    for command in ("grade", "grade-all"):
        text = " ".join(help_of(entry.main, [command, "--help"], capsys).split())
        for option, default in (
            ("--call-timeout", "60"),
            ("--part-timeout", "600"),
            ("--train-timeout", "1800"),
            ("--total-timeout", "3600"),
            ("--memory-gib", "6"),
        ):
            pattern = re.escape(option) + r" \w+ (?:(?! --).)*\(default: " + default + r"\)"
            assert re.search(pattern, text), (command, option)
        assert ", ".join(parts) in text, (command, "the part names")
    text = " ".join(help_of(entry.main, ["grade-all", "--help"], capsys).split())
    assert re.search(r"--jobs N grades running at once \(default: one per core, here \d+\)", text), text
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize("run, prog", [(entry.main, "python -m grader"), (stubs.main, "python -m builders.stubs")])
def test_version(run, prog, capsys):
    out = help_of(run, ["--version"], capsys)
    assert out.startswith(f"{prog} {VERSION}"), out


def test_the_seal_is_printed_only_when_asked(monkeypatch, capsys, tmp_path):
    seal = {"nonce": "ab" * 16, "sha256": "cd" * 32}
    monkeypatch.setattr(
        grade, "grade", lambda args, log: (SimpleNamespace(flags=[]), {"extra_data": {"authenticity": seal}})
    )
    monkeypatch.setattr(grade, "parts_table", lambda result: "TABLE")
    parser = entry.build_parser()
    for extra, shown in (([], False), (["--print-seal"], True)):
        args = parser.parse_args(["grade", str(tmp_path), "--out", str(tmp_path / "out"), "--quiet", *extra])
        assert args.func(args) == 0
        out = capsys.readouterr().out
        assert "TABLE" in out and ("authenticity: nonce=" in out) == shown, (extra, out)
        if shown:
            assert find_seal(out) == (seal["nonce"], seal["sha256"])


def test_grade_all_and_run_autograder_ask_for_the_seal(monkeypatch, tmp_path):
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        raise subprocess.TimeoutExpired(command, 1)

    monkeypatch.setattr(grade_all.subprocess, "run", run)
    args = entry.build_parser().parse_args(["grade-all", str(tmp_path), "--out", str(tmp_path / "out")])
    grade_all.grade_one("alice", tmp_path, args)
    assert commands and commands[0][3] == "grade" and "--print-seal" in commands[0]
    script = (ROOT / "release" / "autograder" / "run_autograder").read_text(encoding="utf-8")
    assert re.search(r'-m grader grade "\$SUBMISSION" --out "\$RESULTS_DIR" --print-seal', script)


def make_dry_run(*args: str, folder: Path = ROOT) -> str:
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", *args, "PY=python"],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**release.clean_make_env()},
    )
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_grade_takes_train_parts_and_jobs(tmp_path):
    assert "-m grader grade assignments --out out/grade" in make_dry_run("grade")
    assert "--no-train" not in make_dry_run("grade") and "--parts" not in make_dry_run("grade")
    assert "-m grader grade sub --out o --no-train --parts masks" in make_dry_run(
        "grade", "SUBMISSION=sub", "OUT=o", "TRAIN=0", "PARTS=masks", "JOBS=2"
    )
    assert "--parts attention" in make_dry_run("grade", "PART=attention")
    everyone = make_dry_run("grade-all", "SUBMISSIONS=class", "OUT=o", "TRAIN=0", "PARTS=masks,attention", "JOBS=2")
    assert "-m grader grade-all class --out o --no-train --parts masks,attention --jobs 2" in everyone
    assert "--no-train" not in make_dry_run("grade-all", "SUBMISSIONS=class", "TRAIN=1")
    # The student's Makefile: no training unless TRAIN is given, and TRAIN=0 means none.
    student = tmp_path / "student"  # laid out as the release lays it out: the Makefile includes mk/check.mk
    shutil.copytree(ROOT / "release" / "student", student)
    shutil.copytree(ROOT / "mk", student / "mk")
    assert "--no-train" in make_dry_run("grade", "TRAIN=0", folder=student)
    assert "--no-train" not in make_dry_run("grade", "TRAIN=1", folder=student)
