"""Progress on long work: the translation training's progress while ``grade`` waits for it,
and ``grade-all``'s k/N, time spent, time left and final summary."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import grade_all
from grader.i18n import set_language
from grader.translation import grading, progress

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _english():
    set_language("en")
    yield
    set_language(None)


# --- the progress line (worker side writes, judge side parses) -------------------------------------


def test_a_progress_line_round_trips_and_the_last_valid_one_wins():
    first = progress.format_line("train", 10, 5.5, 3.0)
    last = progress.format_line("train", 120, 3.41234, 35.25)
    assert last == "grader-progress: phase=train step=120 loss=3.4123 elapsed=35.2"
    text = f"student output\n{first}\nmore output\n{last}\nsome print without newline"
    assert progress.parse(text) == {"phase": "train", "step": 120, "loss": 3.4123, "elapsed": 35.2}
    decode = progress.format_line("decode", 700, None, 150.0)
    assert progress.parse(text + "\n" + decode + "\n") == {
        "phase": "decode",
        "step": 700,
        "loss": None,
        "elapsed": 150.0,
    }
    assert progress.parse("") is None and progress.parse("nothing here\n") is None


@pytest.mark.parametrize(
    "forged",
    [
        "grader-progress: phase=train step=1e30 loss=1 elapsed=1",  # out of range
        "grader-progress: phase=train step=5 loss=nan elapsed=1",  # not finite
        "grader-progress: phase=train step=-5 elapsed=1",  # negative
        "grader-progress: phase=pwned step=5 elapsed=1",  # unknown phase
        "grader-progress: phase=train step=5 elapsed=1 \x1b[2J\x1b]0;owned\x07",  # terminal escapes
        "grader-progress: phase=train step=5 note=hello elapsed=1",  # text in a field
    ],
)
def test_a_malformed_or_forged_line_is_ignored(forged):
    good = progress.format_line("train", 3, 4.0, 1.0)
    assert progress.parse(f"{good}\n{forged}\n") == {"phase": "train", "step": 3, "loss": 4.0, "elapsed": 1.0}


def test_stderr_progress_writes_at_most_every_few_seconds():
    now = [100.0]
    stream = io.StringIO()
    writer = progress.StderrProgress(every=2.0, stream=stream, clock=lambda: now[0])
    for step in range(1, 11):  # ten steps, half a second apart
        writer({"step": step, "loss": None if step < 5 else 4.0, "elapsed": (step - 1) * 0.5})
        now[0] += 0.5
    writer.decoding(10, 5.0)
    lines = stream.getvalue().splitlines()
    assert [progress.parse(line)["step"] for line in lines] == [1, 5, 9, 10]
    assert progress.parse(lines[0])["loss"] is None and progress.parse(lines[1])["loss"] == 4.0
    assert progress.parse(lines[-1])["phase"] == "decode"


def test_progress_py_is_worker_safe():
    """The worker's copy of grader/translation has no grader.i18n: the standard library only."""
    tree = ast.parse((ROOT / "grader" / "translation" / "progress.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(n.split(".")[0] in sys.stdlib_module_names | {"__future__"} for n in names), names


# --- what the judge shows -------------------------------------------------------------------------


def test_the_judge_estimates_the_time_left():
    info = {"phase": "train", "step": 100, "loss": 3.4567, "elapsed": 30.0}
    assert (
        grading.progress_text(info, 700, 480.0)
        == "translation: step 100/700, loss 3.457, 0:30 elapsed, about 3:00 left"
    )
    # a slow submission: the time cap comes first
    slow = {"phase": "train", "step": 10, "loss": None, "elapsed": 60.0}
    assert grading.progress_text(slow, 700, 480.0) == "translation: step 10/700, 1:00 elapsed, about 7:00 left"
    assert (
        grading.progress_text({"phase": "decode", "step": 700, "loss": None, "elapsed": 151.0}, 700, 480.0)
        == "translation: trained 700 steps in 2:31; translating the test sentences ..."
    )
    assert grading.format_duration(3725) == "1:02:05"


def test_the_display_rewrites_one_line_on_a_terminal_and_throttles_a_log():
    terminal = io.StringIO()
    shown = grading.ProgressDisplay(terminal, interactive=True)
    shown("step 1/700")
    shown("step 10/700")
    shown.close()
    assert terminal.getvalue() == "\rstep 1/700\rstep 10/700\n"
    now = [0.0]
    log = io.StringIO()
    shown = grading.ProgressDisplay(log, interactive=False, every=15.0, clock=lambda: now[0])
    for second in range(0, 40):
        now[0] = float(second)
        shown(f"step {second}", "train")
    shown("decoding", "decode")
    shown.close()
    assert log.getvalue().splitlines() == ["step 0", "step 15", "step 30", "decoding"]


class FakeSandbox:
    """A sandboxed implementation whose job takes a while and writes progress on its stderr."""

    def __init__(self, lines):
        self.lines, self.stderr = lines, ""

    def stderr_tail(self, limit=4096):
        return self.stderr[-limit:]

    def call_trusted(self, name, payload):
        import time

        assert name == grading.JOB_TARGET and payload["progress"] is True
        for line in self.lines:
            self.stderr += line + "\n"
            time.sleep(0.15)
        return {"done": True}


def test_the_judge_shows_the_progress_while_it_waits(monkeypatch):
    monkeypatch.setattr(grading, "PROGRESS_POLL_SECONDS", 0.02)
    lines = [
        progress.format_line("train", 1, None, 0.5),
        "print from the student",
        progress.format_line("train", 350, 2.5, 60.0),
        progress.format_line("decode", 700, None, 120.0),
    ]
    shown = []
    closed = []

    class Recorder:
        def __call__(self, text, phase="train"):
            shown.append((phase, text))

        def close(self):
            closed.append(True)

    job = {"steps": 700, "seconds": 480.0}
    assert grading._run_job(FakeSandbox(lines), job, Recorder()) == {"done": True}
    assert shown == [
        ("train", "translation: step 1/700, 0:00 elapsed, about 5:50 left"),
        ("train", "translation: step 350/700, loss 2.500, 1:00 elapsed, about 1:00 left"),
        ("decode", "translation: trained 700 steps in 2:00; translating the test sentences ..."),
    ]
    assert closed == [True] and "progress" not in job  # the caller's job is left as it was


def test_a_real_sandboxed_job_writes_progress_that_the_judge_shows(monkeypatch, tmp_path):
    """The real worker trains the reference for ~3 s; the judge shows steps and loss meanwhile."""
    from grader.sandbox.process import Limits
    from grader.sandbox.proxy import SandboxedImplementation
    from tests.selftest.test_translation import tiny_corpus

    monkeypatch.setattr(grading, "PROGRESS_POLL_SECONDS", 0.2)
    pairs = tiny_corpus()
    job = {
        "train": [[en, ja] for en, ja in pairs],
        "sources": [en for en, _ in pairs[:4]],
        "seed": 0,
        "steps": 100000,
        "seconds": 3.0,
        "threads": 1,
        "model": {"d_model": 32, "num_heads": 2, "num_layers": 1, "d_ff": 64, "max_len": 64},
        "training": {"max_tokens": 120, "warmup": 10, "log_every": 2},
        "attention_example": "",
    }
    shown = []
    proxy = SandboxedImplementation(
        ROOT / "solutions" / "transformer", "translation", Limits(call_s=180, threads=1), max_restarts=0
    )
    try:
        result = grading._run_job(proxy, job, lambda text, phase="train": shown.append(text))
        tail = proxy.stderr_tail()
    finally:
        proxy.close()
    assert result["stopped_by"] == "time"
    assert any(text.startswith("translation: step ") and "/100000" in text for text in shown), shown
    assert progress.parse(tail) == {
        "phase": "decode",
        "step": result["steps"],
        "loss": None,
        "elapsed": round(result["seconds"], 1),
    }


# --- grade-all -------------------------------------------------------------------------------------


def test_grade_many_counts_k_of_n_and_names_what_failed(monkeypatch, capsys):
    def fake_grade_one(student, path, args):
        return student, "grader-error: boom" if student == "bo" else ""

    monkeypatch.setattr(grade_all, "grade_one", fake_grade_one)
    todo = [("ana", Path("a")), ("bo", Path("b")), ("cy", Path("c"))]
    problems = grade_all.grade_many(todo, None, 1, started=time.monotonic())
    assert problems == {"bo": "grader-error: boom"}
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("]")[0] for line in lines] == ["[1/3", "[2/3", "[3/3"]
    failed = [line for line in lines if "bo: " in line]
    assert len(failed) == 1 and "bo: NOT GRADED after" in failed[0] and "(grader-error: boom)" in failed[0]
    assert any("ana: graded in" in line and "0:00 elapsed, about 0:00 left" in line for line in lines)
    assert grade_all.summary(5, 1, 1, 2, 75) == (
        "done in 1:15: 5 graded (1 of them in an earlier run), 1 failed to grade, 2 flagged for a human "
        "(see the flags column of gradebook.csv)"
    )


def test_grade_all_shows_k_of_n_and_a_summary(tmp_path):
    import shutil

    for name in ("ana", "bo"):
        shutil.copytree(ROOT / "solutions" / "transformer", tmp_path / "class" / name / "transformer")
    shutil.copytree(ROOT / "assignments" / "transformer", tmp_path / "class" / "cy" / "transformer")
    command = [
        sys.executable,
        "-m",
        "grader",
        "grade-all",
        str(tmp_path / "class"),
        "--out",
        str(tmp_path / "out"),
        "--jobs",
        "2",
        "--parts",
        "masks",
        "--no-train",
        "--no-lock-repo",
    ]
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "COURSE_LANGUAGE": "en"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "3 submissions, 0 already graded, grading 3 (2 at a time)" in lines
    counted = sorted(line.split("]")[0] for line in lines if line.startswith("["))
    assert counted == ["[1/3", "[2/3", "[3/3"], done.stderr
    assert any(
        line.startswith("done in ") and "3 graded (0 of them in an earlier run), 0 failed to grade" in line
        for line in lines
    ), done.stderr
