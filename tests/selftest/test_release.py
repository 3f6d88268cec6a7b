"""The student release (`python -m builders.release student`): it builds, its own `make check`
works and reports 0 points on the untouched stubs, and it gives nothing away — no solution
code, no hidden test, no `solutions/` or `tests/hidden/` folder.

The leak search here is deliberately independent of the one in builders/release.py (which the
build runs too): every line of every BEGIN/END SOLUTION block and every line of every hidden
test file, whitespace-normalised, at least 20 characters, comments left out, and lines that
the public-by-design files (public tests, their support code, the grader's trusted runtime
shared by public and hidden tests) contain too left out — is searched in every file of the
release (notebooks: their cells' sources).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
import unicodedata
import zipfile
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po

from builders import release
from builders import stubs as stub_builder
from grader.rubric import load_rubric
from tests.selftest.test_stubs import code_without_texts

ROOT = Path(__file__).resolve().parents[2]
MIN_CHARS = 20
PUBLIC_BY_DESIGN = ["tests/public", "tests/support", "tests/conftest.py", "grader/runtime"]


def normalise(line: str) -> str:
    return " ".join(line.split())


def public_lines() -> str:
    text = []
    for name in PUBLIC_BY_DESIGN:
        path = ROOT / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            text += [normalise(line) for line in file.read_text(encoding="utf-8").splitlines()]
    return "\n".join(text)


def substantial(line: str) -> bool:
    return len(line) >= MIN_CHARS and not line.startswith("#")


def solution_lines() -> dict[str, str]:
    public = public_lines()
    found = {}
    for path in sorted((ROOT / "solutions" / "transformer").glob("*.py")):
        inside = False
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "# BEGIN SOLUTION" in raw:
                inside = True
            elif "# END SOLUTION" in raw:
                inside = False
            elif inside and substantial(line := normalise(raw)) and line not in public:
                found[line] = f"{path.name}:{number}"
    return found


def hidden_lines() -> dict[str, str]:
    """Code lines of the hidden tests that no public file has. A line that is only a string
    literal (a piece of a message split over lines) is left to
    test_release_catalogues_hold_no_hidden_test_message: its text may equal a catalogue line of
    a message the public tests share."""
    public = public_lines()
    found = {}
    for path in sorted((ROOT / "tests" / "hidden").rglob("*.py")):
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = normalise(raw)
            if re.fullmatch(r"[rbuf]*(\"[^\"]*\"|'[^']*')[,)]*", line):
                continue
            if substantial(line) and line not in public:
                found[line] = f"{path.name}:{number}"
    return found


def file_text(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        raw = "\n".join("".join(cell["source"]) for cell in cells)
    else:
        raw = path.read_bytes().decode("utf-8", "replace")
    return "\n".join(normalise(line) for line in raw.splitlines())


def leaks(folder: Path, needles: dict[str, str]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            text = file_text(path)
            found += [
                f"{path.relative_to(folder)}: {needle!r} ({where})"
                for needle, where in needles.items()
                if needle in text
            ]
    return found


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """The English and the Japanese release (`--lang ja`), built once for this module, one right
    after the other (their own `make check` runs in tests below)."""
    built = {}
    for lang in ("en", "ja"):
        out = tmp_path_factory.mktemp(f"release-{lang}") / "student"
        release.build_student(out, release.load_course(), lang=lang, verify=False, log=lambda message: None)
        built[lang] = out
    return built


@pytest.fixture(scope="module")
def built(releases) -> Path:
    return releases["en"]


def test_the_needles_are_real():
    """The search would find something if it were there."""
    needles = solution_lines()
    assert len(needles) > 50, "expected many solution lines to search for"
    assert any("softmax" in line for line in needles)


def test_no_solutions_or_hidden_tests_folder(built):
    assert not (built / "solutions").exists()
    assert not (built / "tests" / "hidden").exists()
    assert not list(built.rglob("*_hidden.py"))
    names = zipfile.ZipFile(built.with_suffix(".zip")).namelist()
    assert not [n for n in names if "/solutions/" in n or "/tests/hidden/" in n or n.endswith("_hidden.py")]


def test_zip_holds_the_folder(built):
    archive = built.with_suffix(".zip")
    names = zipfile.ZipFile(archive).namelist()
    prefix = release.load_course().release_name + "/"
    assert all(n.startswith(prefix) for n in names)
    on_disk = sorted(
        p.relative_to(built).as_posix()
        for p in built.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    assert sorted(n[len(prefix) :] for n in names) == on_disk


def test_no_solution_line_anywhere_in_the_release(built):
    found = leaks(built, solution_lines())
    assert not found, "solution code in the student release:\n  " + "\n  ".join(found[:20])


def test_no_hidden_test_line_anywhere_in_the_release(built):
    if not list((ROOT / "tests" / "hidden").rglob("*.py")):
        pytest.skip("no hidden tests written yet")
    found = leaks(built, hidden_lines())
    assert not found, "hidden test code in the student release:\n  " + "\n  ".join(found[:20])


def test_the_package_is_the_stubs(built):
    stubs = ROOT / "assignments" / "transformer"
    for path in stubs.glob("*.py"):
        assert (built / "transformer" / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    assert sorted(p.name for p in (built / "transformer").iterdir()) == sorted(p.name for p in stubs.glob("*.py"))


def test_the_grader_whole_no_builders_and_a_rubric_without_hidden_tests(built):
    assert not (built / "builders").exists(), "builders/ is the instructor's"
    shipped = {p.relative_to(built / "grader").as_posix() for p in (built / "grader").rglob("*.py")}
    in_checkout = {
        p.relative_to(ROOT / "grader").as_posix()
        for p in (ROOT / "grader").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert shipped == in_checkout - release.GRADING_ONLY, "the student release copies grader/ whole"
    text = (built / "grader" / "rubric.toml").read_text(encoding="utf-8")
    assert "hidden" in text.lower()  # the note that the real grade runs hidden tests too
    rubric = load_rubric(built / "grader" / "rubric.toml")
    for part in rubric.parts.values():
        assert all(t.startswith("tests/public/") and (built / t).is_file() for t in part.tests), part
    public = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "public").glob("test_*.py"))
    listed = sorted(t for part in rubric.parts.values() for t in part.tests)
    assert set(listed) <= set(public)


def test_readme_uses_the_course_config_and_names_the_banned_calls(built):
    course = release.load_course()
    readme = (built / "README.md").read_text(encoding="utf-8")
    assert course.name in readme and course.due in readme
    assert "$" not in readme.replace("$GITHUB", ""), "an unfilled template placeholder"
    for banned in (
        "nn.MultiheadAttention",
        "F.multi_head_attention_forward",
        "F.scaled_dot_product_attention",
        "nn.Transformer",
        "nn.LayerNorm",
        "F.layer_norm",
        "F.cross_entropy",
        "nn.CrossEntropyLoss",
    ):
        assert banned in readme, banned
    order = [
        readme.index(f"| `{part}` |")
        for part in (
            "masks",
            "attention",
            "feed_forward",
            "normalization",
            "embedding",
            "layers",
            "model",
            "decoding",
            "training",
        )
    ]
    assert order == sorted(order), "the parts must be listed in the order to implement them"


def test_course_overrides_reach_the_rubric_and_readme(tmp_path):
    config = tmp_path / "course.toml"
    config.write_text(
        '[course]\nname = "Test Course"\ndue = "tomorrow"\n[rubric.points]\nattention = 30\ntranslation = 10\n',
        encoding="utf-8",
    )
    course = release.load_course(config)
    rubric = tomllib.loads(release.render_rubric(course))
    assert rubric["parts"]["attention"]["points"] == 30
    assert max(p for _, p in rubric["parts"]["translation"]["bleu_thresholds"]) == 10
    assert rubric["total"] == sum(p["points"] for p in rubric["parts"].values())
    readme = release.render_readme(course, release.render_rubric(course))
    assert "Test Course" in readme and "| `attention` | `transformer/attention.py` | 30 |" in readme
    config.write_text("[rubric.points]\nno_such_part = 3\n", encoding="utf-8")
    with pytest.raises(release.ReleaseError, match="no_such_part"):
        release.render_rubric(release.load_course(config))


def make_dry_run(folder: Path, *args: str) -> str:
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=release.clean_make_env(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_student_makefile_targets_default_to_the_students_folder(built):
    py = f"PY={sys.executable}"
    # `make check` runs the public tests (through pytest, or the feedback runner that wraps it).
    check = make_dry_run(built, "check", py)
    assert "--impl . " in check and ("pytest tests/public " in check or "-m tests.support.feedback " in check), check
    part = make_dry_run(built, "check", "PART=attention", py)
    assert "--impl ." in part and (
        "tests/public/test_attention.py" in part or "-m tests.support.feedback attention " in part
    ), part
    grade = make_dry_run(built, "grade", py)
    assert "-m grader grade . --out out/grade --no-train" in grade
    assert "--no-train" not in make_dry_run(built, "grade", "TRAIN=1", py)
    assert "-m grader train --impl . " in make_dry_run(built, "train", py)
    # Without PY, the first target creates the virtual environment.
    assert "-m venv .venv" in make_dry_run(built, "check")


def test_workflow_informs_without_failing(built):
    workflow = (built / ".github" / "workflows" / "check.yml").read_text(encoding="utf-8")
    assert "on:" in workflow and "push" in workflow
    assert "make check" in workflow and "GITHUB_STEP_SUMMARY" in workflow
    assert "continue-on-error: true" in workflow
    assert "download.pytorch.org/whl/cpu" in workflow
    assert "\t" not in workflow, "YAML must not contain tabs"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_release_make_check_reports_zero_points_on_the_stubs(built):
    """The release's own `make check`, run with this interpreter (no venv is created)."""
    table = release.verify_student_release(built)
    assert table and all(row[2] == 0 for row in table.values())
    assert not (built / ".venv").exists()


# -- the Japanese hand-out (`make release LANG=ja`) --------------------------------------------

BANNED = (
    "nn.MultiheadAttention",
    "F.multi_head_attention_forward",
    "F.scaled_dot_product_attention",
    "nn.Transformer",
    "nn.LayerNorm",
    "F.layer_norm",
    "F.cross_entropy",
    "nn.CrossEntropyLoss",
)
PARTS_IN_ORDER = (
    "masks",
    "attention",
    "feed_forward",
    "normalization",
    "embedding",
    "layers",
    "model",
    "decoding",
    "training",
)


def japanese_share(text: str) -> float:
    letters = [ch for ch in text if ch.isalpha()]
    japanese = [ch for ch in letters if unicodedata.name(ch, "").startswith(("HIRAGANA", "KATAKANA", "CJK UNIFIED"))]
    return len(japanese) / max(1, len(letters))


@pytest.fixture(scope="module")
def built_ja(releases) -> Path:
    """The Japanese release (`python -m builders.release student --lang ja`)."""
    return releases["ja"]


def test_japanese_release_holds_the_japanese_stubs(built_ja):
    stubs = ROOT / "assignments" / "transformer"
    package = built_ja / "transformer"
    assert sorted(p.name for p in package.iterdir()) == sorted(p.name for p in stubs.glob("*.py"))
    for path in sorted(stubs.glob("*.py")):
        english = path.read_text(encoding="utf-8")
        japanese = (package / path.name).read_text(encoding="utf-8")
        assert japanese != english, f"transformer/{path.name} is the English stub"
        assert code_without_texts(japanese) == code_without_texts(english), f"transformer/{path.name}: the code differs"
        for node in ast.walk(ast.parse(japanese)):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node):
                doc = ast.get_docstring(node)
                assert japanese_share(doc) > 0, f"transformer/{path.name}: an English docstring: {doc[:80]!r}"
    masks = (package / "masks.py").read_text(encoding="utf-8")
    assert "Pitfall" not in masks and "よくある間違い" in masks
    assert re.search(r"# TODO: .*[\u3040-\u30ff\u4e00-\u9fff]", masks), "the TODO hints are not in Japanese"


def test_the_japanese_release_is_the_english_one_but_for_the_stubs(built, built_ja):
    def content(path: Path):
        if path.suffix == ".ipynb":  # the cells, less their random ids
            return [
                {k: v for k, v in cell.items() if k != "id"}
                for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]
            ]
        return path.read_bytes()

    def files(folder):
        # Left out: what a test run leaves behind (the release's `make check` runs in tests above).
        return {
            p.relative_to(folder).as_posix(): content(p)
            for p in folder.rglob("*")
            if p.is_file() and not release._ignored(p.relative_to(folder)) and p.suffix != ".zip"
        }

    english, japanese = files(built), files(built_ja)
    assert sorted(english) == sorted(japanese)
    differ = sorted(name for name in english if english[name] != japanese[name])
    assert differ and all(name.startswith("transformer/") for name in differ), differ


@pytest.mark.parametrize("which", ["en", "ja"])
def test_every_release_holds_both_readmes(which, built, built_ja):
    folder = built if which == "en" else built_ja
    course = release.load_course()
    english = (folder / "README.md").read_text(encoding="utf-8")
    japanese = (folder / "README.ja.md").read_text(encoding="utf-8")
    assert japanese_share(english) < 0.05, "README.md must be the English one"
    assert japanese_share(japanese) > 0.3, "README.ja.md must be in Japanese"
    assert course.name in japanese and course.due in japanese and course.submission_site in japanese
    assert "$" not in japanese.replace("$GITHUB", ""), "an unfilled template placeholder in README.ja.md"
    for banned in BANNED:
        assert banned in japanese, banned
    order = [japanese.index(f"| `{part}` |") for part in PARTS_IN_ORDER]
    assert order == sorted(order), "the parts must be listed in the order to implement them"

    def rows(text):
        return [re.findall(r"^\| (\d+) \| `(\w+)` \| .*? \| ([\d.]+) \|", line) for line in text.splitlines()]

    assert [r for r in rows(japanese) if r] == [r for r in rows(english) if r], "the two READMEs' points differ"
    assert (
        f"**{release.tomllib.loads((folder / 'grader' / 'rubric.toml').read_text(encoding='utf-8'))['total']:g} 点**"
        in japanese
    )


def test_japanese_readme_follows_the_course_config(tmp_path):
    config = tmp_path / "course.toml"
    config.write_text(
        '[course]\nname = "テストの講義"\ndue = "明日"\ncontact = "ta@example.com"\n[rubric.points]\nattention = 30\n',
        encoding="utf-8",
    )
    course = release.load_course(config)
    readme = release.render_readme(course, release.render_rubric(course), "ja")
    assert "テストの講義" in readme and "明日" in readme and "質問先: ta@example.com" in readme
    assert "| `attention` | `transformer/attention.py` | 30 |" in readme
    assert "（学習させたあなたのモデル）" in readme and "BLEU ≥" in readme


def test_no_solution_or_hidden_test_line_in_the_japanese_release(built_ja):
    found = leaks(built_ja, solution_lines())
    if list((ROOT / "tests" / "hidden").rglob("*.py")):
        found += leaks(built_ja, hidden_lines())
    assert not found, "the Japanese student release gives away:\n  " + "\n  ".join(found[:20])


def test_release_catalogues_hold_no_hidden_test_message(built):
    """A message only the hidden tests use stays out of the student release (its text tells
    what the hidden tests check, and some quote the specification's code)."""
    hidden_only, public = set(), set()
    for path in sorted((ROOT / "grader" / "locale").glob("*/LC_MESSAGES/*.po")):
        with path.open("rb") as handle:
            for message in read_po(handle):
                if message.id and message.locations:
                    places = [loc[0] for loc in message.locations]
                    (hidden_only if all(p.startswith("tests/hidden/") for p in places) else public).add(message.id)
    shipped = set()
    for path in sorted((built / "grader" / "locale").glob("*/LC_MESSAGES/*.po")):
        text = path.read_text(encoding="utf-8")
        assert "tests/hidden/" not in text, f"{path.relative_to(built)} names hidden test files"
        with path.open("rb") as handle:
            shipped |= {m.id for m in read_po(handle) if m.id}
    leaked = sorted(hidden_only - public & shipped)
    assert not leaked, f"hidden tests' messages in the student release: {leaked[:5]}"
    assert public <= shipped | {m for m in public if not m}, "messages of the public tests went missing"


def test_a_missing_translation_fails_the_japanese_build(tmp_path, monkeypatch, capsys):
    with stub_builder.catalogue_path("ja").open("rb") as handle:
        catalogue = read_po(handle, locale="ja", domain="stubs")
    [message] = [m for m in catalogue if m.id and m.id.startswith("The decoder self-attention mask")]
    message.string = ""
    locale = tmp_path / "locale"
    (locale / "ja" / "LC_MESSAGES").mkdir(parents=True)
    with (locale / "ja" / "LC_MESSAGES" / "stubs.po").open("wb") as handle:
        write_po(handle, catalogue, width=100)
    monkeypatch.setattr(stub_builder, "LOCALE_DIR", locale)
    out = tmp_path / "student"
    with pytest.raises(release.ReleaseError, match=re.escape(message.id.splitlines()[0])):
        release.build_student(out, release.load_course(), lang="ja", verify=False, log=lambda m: None)
    assert not out.exists(), "the build must fail before it writes anything"
    assert release.main(["student", "--lang", "ja", "--out", str(out), "--no-verify", "--no-zip"]) == 1
    assert message.id.splitlines()[0] in capsys.readouterr().err
    # The English release does not need the catalogue.
    release.build_student(out, release.load_course(), lang="en", verify=False, make_zip=False, log=lambda m: None)
    assert (out / "transformer" / "masks.py").read_text(encoding="utf-8") == (
        ROOT / "assignments" / "transformer" / "masks.py"
    ).read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_release_takes_the_language_from_the_command_line():
    def dry(*args, env=None):
        result = subprocess.run(
            ["make", "-n", "--no-print-directory", "release", f"PY={sys.executable}", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env or release.clean_make_env(),
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "-m builders.release student --lang ja " in dry("LANG=ja") and "--out dist/student-ja" in dry("LANG=ja")
    english = dry()
    assert "-m builders.release student --lang en " in english and "--out dist/student\n" in english
    # The locale of the environment is not a hand-out language.
    assert "--lang en " in dry(env=release.clean_make_env(LANG="ja_JP.UTF-8"))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_japanese_release_make_check_reports_zero_points_on_the_stubs(built_ja):
    table = release.verify_student_release(built_ja)
    assert table and all(row[2] == 0 for row in table.values())


# -- the built-in task's data: public splits only (issue #14) ------------------------------------


def test_the_release_ships_the_public_splits_and_not_the_test_split(built):
    """No grammar translator or test-split generator, and no held-out test sentence: the
    train/valid/length splits come as data files that read back as the grader's own."""
    from grader.data.corpus import read_public_splits
    from grader.data.synthetic import generate_corpus

    assert not (built / "grader" / "data" / "synthetic.py").exists()
    for path in built.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "def translate_english" not in text and "def generate_corpus" not in text, path
    shipped, corpus = read_public_splits(built / "grader" / "data" / "synthetic_data"), generate_corpus(seed=0)
    assert (shipped.train, shipped.valid, shipped.length) == (corpus.train, corpus.valid, corpus.length)
    assert shipped.test == []
    shipped_sources = {
        line.split("\t")[0]
        for p in (built / "grader" / "data").rglob("*.tsv")
        for line in p.read_text(encoding="utf-8").splitlines()
    }
    assert len(shipped_sources) > 20000 and not shipped_sources & {en for en, _ in corpus.test}
    release.check_no_test_split(built)  # what the build runs


def test_a_test_sentence_in_the_hand_out_fails_the_build(tmp_path):
    from grader.data.synthetic import generate_corpus

    (tmp_path / "notes.py").write_text(f"EXAMPLE = {generate_corpus(seed=0).test[7][0]!r}\n", encoding="utf-8")
    with pytest.raises(release.ReleaseError, match="test split"):
        release.check_no_test_split(tmp_path)


def test_the_hand_out_trains_and_translates_from_the_shipped_data(built, tmp_path):
    """`make train` / `make translate` of the hand-out: the grader there reads the shipped
    splits (no generator) and evaluates on the validation split."""
    run = tmp_path / "run"
    tiny = ["--d-model", "16", "--heads", "2", "--layers", "1", "--d-ff", "32", "--threads", "1"]
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "train",
            "--impl",
            str(ROOT / "solutions"),
            "--steps",
            "2",
            "--beam",
            "0",
            "--no-progress",
            "--out",
            str(run),
            *tiny,
        ],
        cwd=built,
        capture_output=True,
        text=True,
        timeout=600,
        env=release.clean_make_env(),
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "no test split" in trained.stderr and "valid (greedy)" in trained.stdout
    translated = subprocess.run(
        [
            sys.executable,
            "-m",
            "grader",
            "translate",
            "--checkpoint",
            str(run / "checkpoint.pt"),
            "--impl",
            str(ROOT / "solutions"),
            "this is a pen .",
        ],
        cwd=built,
        capture_output=True,
        text=True,
        timeout=300,
        env=release.clean_make_env(),
    )
    assert translated.returncode == 0 and translated.stdout.strip(), translated.stderr[-3000:]
