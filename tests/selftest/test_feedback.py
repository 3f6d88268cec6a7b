"""What a student sees from `make check` (tests/support/feedback.py), run as a student runs it
on broken copies of the reference: the diagnosis leads, errors are named once, endless loops
stop, banned calls and dependencies are announced, and all of it in Japanese too."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.selftest.mutants.catalogue import MUTANTS
from tests.selftest.mutants.run import apply
from tests.selftest.mutants.seen import table_row
from tests.support.feedback import display_width, wrap

ROOT = Path(__file__).resolve().parents[2]
BY_ID = {m.id: m for m in MUTANTS}
pytestmark = pytest.mark.slow


def broken_copy(tmp_path: Path, module: str, find: str, replace: str) -> Path:
    shutil.copytree(ROOT / "solutions" / "transformer", tmp_path / "transformer")
    path = tmp_path / "transformer" / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    assert source.count(find) == 1, f"the edit does not apply to {module}.py"
    path.write_text(source.replace(find, replace), encoding="utf-8")
    return tmp_path


def check(impl: Path, *args: str, lang: str = "en") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COURSE_LANGUAGE": lang, "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "tests.support.feedback", *args, "--impl", str(impl)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_syntax_error_is_named_once_with_file_line_and_code(tmp_path):
    impl = broken_copy(
        tmp_path,
        "feed_forward",
        "return self.w_2(self.dropout(self.w_1(x).relu()))",
        "return self.w_2(self.dropout(self.w_1(x).relu())",
    )
    result = check(impl)
    out = result.stdout
    assert result.returncode != 0
    row = table_row(out, "feed_forward")
    assert "SyntaxError in transformer/feed_forward.py, line" in row, out
    assert "self.w_2(self.dropout" in row, "the offending line is shown"
    assert out.count("SyntaxError") == 1, f"named once, on the part that owns the file:\n{out}"
    assert "builds on `feed_forward`, whose file does not import" in table_row(out, "layers")
    assert "Next: fix `feed_forward` first" in out


def test_an_import_error_is_named_once_with_file_line_and_code(tmp_path):
    impl = broken_copy(
        tmp_path, "layers", "from torch import nn\n", "from torch import nn\nfrom .masks import padding_maks\n"
    )
    out = check(impl, "-klayer").stdout  # the table, for the tests with "layer" in their name
    row = table_row(out, "layers")
    assert "ImportError in transformer/layers.py, line" in row and "from .masks import padding_maks" in row, out
    assert out.count("ImportError") == 1, f"named once, on the part that owns the file:\n{out}"
    assert "builds on `layers`, whose file does not import" in table_row(out, "model"), out


def test_an_endless_loop_stops_with_a_message(tmp_path):
    find = "    return torch.tril(torch.ones(size, size, dtype=torch.bool, device=device)).unsqueeze(0)"
    impl = broken_copy(tmp_path, "masks", find, "    while size > 0:\n        pass\n" + find)
    result = check(impl, "masks", "--timeout", "2", "--test", "lower_triangular")
    assert result.returncode != 0
    assert "stopped after 2 s — an endless loop?" in result.stdout, result.stdout
    assert "transformer/masks.py" in result.stdout


def test_a_banned_call_is_announced_before_grading(tmp_path):
    impl = broken_copy(
        tmp_path,
        "attention",
        "out, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout)",
        "out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask); weights = out",
    )
    source = impl / "transformer" / "attention.py"
    source.write_text("import torch.nn.functional as F\n" + source.read_text(encoding="utf-8"), encoding="utf-8")
    out = check(impl, "attention", "--test", "mha").stdout
    row = table_row(out, "attention")
    assert re.search(
        r"will score 0 when graded: uses F\.scaled_dot_product_attention at transformer/attention\.py:\d+", row
    ), out
    assert re.search(r"^attention\s+\d+/\d+\s+0\.0/16", out, re.M), "the table shows the grade's 0 points"


def test_dependencies_say_which_part_to_fix_first(tmp_path):
    mutant = BY_ID["sdpa-scale-by-dk"]
    apply(mutant, tmp_path)
    out = check(tmp_path, "--test", "test_encoder_layer or test_sdpa").stdout
    assert "first fix what this part builds on: `attention`" in table_row(out, "layers"), out
    assert "Next: fix `attention` first — make check PART=attention" in out


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_one_part_output_is_short_leads_with_the_bug_and_says_how_to_rerun(tmp_path, lang):
    mutant = BY_ID["sdpa-scale-by-dk"]
    apply(mutant, tmp_path)
    out = check(tmp_path, "attention", lang=lang).stdout
    lines = out.splitlines()
    phrase = mutant.hint_ja if lang == "ja" else mutant.hint
    assert phrase, f"mutant {mutant.id} has no hint for {lang}"

    def squash(text):
        return re.sub(r"\s+", "", text).lower()

    assert squash(phrase) in squash("\n".join(lines[:60])), out
    assert squash(phrase) in squash(table_row(out, "attention")), out
    assert len(lines) <= 150, f"{len(lines)} lines"
    assert "make check PART=attention TEST=" in out
    assert "reproduce_failure" not in out and "@reproduce" not in out
    assert "transformer/attention.py" in out, "the traceback reaches the student's file"
    assert "tests/support/checks.py" not in out, "the harness's frames are hidden"
    if lang == "ja":
        assert "最初の問題" in out and "バグの可能性" in out


def test_an_unknown_part_lists_the_parts():
    result = check(ROOT / "solutions", "mask")
    assert result.returncode == 2
    assert "there is no part “mask”" in result.stdout and "masks, attention, feed_forward" in result.stdout


def test_make_check_fails_without_makes_error_line(tmp_path):
    apply(BY_ID["mask-target-or"], tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    result = subprocess.run(
        ["make", "--no-print-directory", "check", "PART=masks", f"IMPL={tmp_path}", f"PY={sys.executable}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        # (where SIGINT is ignored, as in a script's background job, make cannot be interrupted:
        # the check's own exit status then makes make fail the usual way)
        assert "Error 1" not in result.stdout + result.stderr and "***" not in result.stderr, result.stderr
    assert "instead of &" in table_row(result.stdout, "masks"), result.stdout


def test_wrapping_counts_japanese_characters_as_two_columns():
    text = "このパートが使う `attention` も失敗しています。先にそちらを直してください"
    lines = wrap(text, 20)
    assert all(display_width(line) <= 20 for line in lines), lines
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert not any(line[:1] in "。、）" for line in lines), "no line starts with a closing mark"
