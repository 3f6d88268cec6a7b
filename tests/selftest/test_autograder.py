"""The Gradescope autograder (`python -m builders.release autograder`).

The zip is unpacked into a temporary folder standing in for /autograder (AUTOGRADER_ROOT), a
submission is put into its submission/ folder, and `run_autograder` runs as Gradescope runs
it — on the reference solution, on the stubs and on a submission with a syntax error in
attention.py. Each results.json must satisfy the Gradescope schema and score as expected.

To stay within the CI budget: only the parts `masks` and `attention` are graded
(AUTOGRADER_PARTS), no training (AUTOGRADER_NO_TRAIN=1), the three runs go in parallel, and
a small pytest plugin (loaded through PYTEST_ADDOPTS, for these runs only) gives the
grader's hypothesis profile 3 examples and no shrinking: a test that passes (reference) or
fails on every input (stubs, syntax error) does so either way.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from builders import release

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "grader" / "schemas" / "gradescope_results.schema.json"
PARTS = ("masks", "attention")
RUN_TIMEOUT = 900

pytestmark = pytest.mark.skipif(
    not (ROOT / "grader" / "grade.py").is_file() or not (ROOT / "grader" / "__main__.py").is_file(),
    reason="`python -m grader grade` is not available yet (grader/grade.py or grader/__main__.py missing)",
)

FAST_GRADING_PLUGIN = """
import pytest
from hypothesis import Phase, settings


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    settings.register_profile("autograder-selftest", parent=settings.default, max_examples=3,
                              phases=[Phase.explicit, Phase.generate])
    settings.load_profile("autograder-selftest")
"""


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("autograder-build") / "autograder.zip"
    release.build_autograder(path, release.load_course(), log=lambda message: None)
    return path


def unpack(archive: Path, source: Path) -> None:
    """Unpack as Gradescope does, keeping the executable bits."""
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            target = source / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            if (info.external_attr >> 16) & stat.S_IXUSR:
                target.chmod(0o755)


def submission_reference(folder: Path) -> None:
    shutil.copytree(ROOT / "solutions" / "transformer", folder / "transformer")


def submission_stubs(folder: Path) -> None:
    shutil.copytree(ROOT / "assignments" / "transformer", folder / "transformer")


def submission_broken(folder: Path) -> None:
    """The reference with a syntax error in attention.py: attention scores 0, masks still full."""
    submission_reference(folder)
    path = folder / "transformer" / "attention.py"
    path.write_text(path.read_text(encoding="utf-8") + "\ndef broken(:\n    pass\n", encoding="utf-8")


SUBMISSIONS = {"reference": submission_reference, "stubs": submission_stubs, "broken": submission_broken}


def run_autograder(
    archive: Path, root: Path, make_submission, plugins: Path
) -> tuple[dict, subprocess.CompletedProcess, float]:
    root.mkdir(parents=True)
    root.chmod(0o755)
    unpack(archive, root / "source")
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")  # Gradescope's image build does this
    (root / "submission").mkdir()
    make_submission(root / "submission")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AUTOGRADER_")},
        "AUTOGRADER_ROOT": str(root),
        "AUTOGRADER_PYTHON": sys.executable,  # setup.sh would have made source/.venv
        "AUTOGRADER_NO_TRAIN": "1",
        "AUTOGRADER_PARTS": ",".join(PARTS),
        "AUTOGRADER_ARGS": "--threads 1",  # three runs share the CI machine's cores
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(plugins), os.environ.get("PYTHONPATH", "")])),
        "PYTEST_ADDOPTS": "-p _autograder_selftest_plugin",
    }
    started = time.monotonic()
    process = subprocess.run(
        ["bash", str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    seconds = time.monotonic() - started
    results_path = root / "results" / "results.json"
    assert results_path.is_file(), (
        f"run_autograder wrote no results.json:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    )
    return json.loads(results_path.read_text(encoding="utf-8")), process, seconds


@pytest.fixture(scope="module")
def graded(autograder_zip, tmp_path_factory) -> dict:
    """{submission name: (results.json, completed process, seconds)}, the three run in parallel."""
    base = tmp_path_factory.mktemp("gradescope")
    plugins = base / "plugins"
    plugins.mkdir()
    (plugins / "_autograder_selftest_plugin.py").write_text(FAST_GRADING_PLUGIN, encoding="utf-8")
    with ThreadPoolExecutor(max_workers=len(SUBMISSIONS)) as pool:
        futures = {
            name: pool.submit(run_autograder, autograder_zip, base / name, make, plugins)
            for name, make in SUBMISSIONS.items()
        }
        return {name: future.result() for name, future in futures.items()}


def part_scores(results: dict) -> dict[str, tuple[float, float]]:
    """{part: (score, max_score)} from the tests' first tag (the part)."""
    scores: dict[str, list[float]] = {}
    for test in results.get("tests", []):
        part = (test.get("tags") or [test["name"].split(":")[0]])[0]
        entry = scores.setdefault(part, [0.0, 0.0])
        entry[0] += float(test.get("score", 0.0))
        entry[1] += float(test.get("max_score", 0.0))
    return {part: (round(s, 6), round(m, 6)) for part, (s, m) in scores.items()}


# -- the zip ----------------------------------------------------------------------------------------


def test_zip_follows_the_gradescope_layout(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as z:
        infos = {info.filename: info for info in z.infolist()}
    for name in ("setup.sh", "run_autograder"):
        assert name in infos, f"{name} must be at the root of the zip"
        assert (infos[name].external_attr >> 16) & stat.S_IXUSR, f"{name} must be executable"
    names = set(infos)
    assert "requirements.txt" in names and "grader/grade.py" in names and "tests/conftest.py" in names
    public = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "public").glob("*.py")}
    hidden = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "hidden").glob("*.py")}
    assert public <= names and hidden <= names, "the autograder needs the public and the hidden tests"
    assert not [n for n in names if n.startswith("solutions/")], "never the reference solution"
    assert not [n for n in names if n.startswith("builders/")], "the instructor's tools stay home"
    grader = {p.relative_to(ROOT).as_posix() for p in (ROOT / "grader").rglob("*.py") if "__pycache__" not in p.parts}
    assert grader <= names, "the autograder copies grader/ whole"


def test_zip_holds_no_solution_code(autograder_zip, tmp_path):
    unpack(autograder_zip, tmp_path)
    found = release.find_leaks(tmp_path, release.solution_needles(), skip=release.autograder_private)
    assert not found, "\n".join(found[:20])
    # What is left alone: the hidden tests, and the grading-only modules (the batched decoder of the
    # validation looks), which the student release leaves out (test_release.py)
    assert release.GRADING_ONLY == {"data/synthetic.py", "translation/validation.py"}


def test_scripts_are_valid_bash_and_use_the_cpu_wheel(autograder_zip, tmp_path):
    unpack(autograder_zip, tmp_path)
    for name in ("setup.sh", "run_autograder"):
        result = subprocess.run(["bash", "-n", str(tmp_path / name)], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"
    setup = (tmp_path / "setup.sh").read_text(encoding="utf-8")
    assert "https://download.pytorch.org/whl/cpu" in setup
    assert "useradd --system --no-create-home graderworker || true" in setup
    assert "requirements.txt" in setup
    run = (tmp_path / "run_autograder").read_text(encoding="utf-8")
    assert "-m grader grade" in run and "AUTOGRADER_ROOT" in run


def test_course_grade_args_reach_run_autograder(tmp_path):
    course = release.Course(grade_args=("--part-timeout", "600"), language="ja")
    archive = release.build_autograder(tmp_path / "a.zip", course, log=lambda message: None)
    with zipfile.ZipFile(archive) as z:  # the course's language first: a --lang in grade_args wins
        assert z.read("grade_args.txt").decode().splitlines() == ["--lang", "ja", "--part-timeout", "600"]
    with pytest.raises(release.ReleaseError, match="does not know"):
        release.build_autograder(
            tmp_path / "b.zip", release.Course(grade_args=("--part-timeot", "6")), log=lambda message: None
        )


def test_a_grader_crash_still_leaves_a_results_json(autograder_zip, tmp_path):
    root = tmp_path / "autograder"
    unpack(autograder_zip, root / "source")
    (root / "source" / "grader" / "__main__.py").write_text("raise SystemExit(3)\n", encoding="utf-8")
    (root / "submission").mkdir(parents=True)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    process = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0
    results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    assert results["score"] == 0 and "could not grade" in results["output"]


@pytest.mark.parametrize(
    "status, seal",
    [(0, "none"), (0, "wrong"), (9, "right")],
    ids=["exit-0-without-seal", "exit-0-wrong-seal", "killed-after-sealing"],
)
def test_a_forged_results_json_is_replaced(autograder_zip, tmp_path, status, seal):
    """A worker that writes results.json itself and then kills or fakes the judge gets the fallback."""
    root = tmp_path / "autograder"
    unpack(autograder_zip, root / "source")
    results_dir = root / "results"
    forged = {"score": 100, "output": "all good", "tests": [], "extra_data": {}}
    (root / "source" / "grader" / "__main__.py").write_text(
        "import json, sys\n"
        "from grader.results import seal\n"
        f"results = json.loads({json.dumps(json.dumps(forged))})\n"
        "seal(results, 'ab' * 16)\n"
        f"open({str(results_dir / 'results.json')!r}, 'w').write(json.dumps(results))\n"
        f"line = {{'none': '', 'wrong': 'authenticity: nonce={'cd' * 16} sha256={'0' * 64}',\n"
        f"        'right': 'authenticity: nonce=' + 'ab' * 16 + ' sha256=' + "
        f"results['extra_data']['authenticity']['sha256']}}[{seal!r}]\n"
        "print(line)\n"
        f"sys.exit({status})\n",
        encoding="utf-8",
    )
    (root / "submission").mkdir(parents=True)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    process = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0
    results = json.loads((results_dir / "results.json").read_text(encoding="utf-8"))
    assert results["score"] == 0 and "could not grade" in results["output"], (
        f"forged results.json survived ({seal=}, {status=}):\n{process.stdout[-2000:]}\n{process.stderr[-2000:]}"
    )
    assert "not the judge's own" in process.stderr


# -- grading through run_autograder -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SUBMISSIONS))
def test_results_json_follows_the_gradescope_schema(graded, name):
    results, process, _ = graded[name]
    assert process.returncode == 0, process.stderr[-2000:]
    assert isinstance(results.get("tests"), list) and results["tests"], results
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA.relative_to(ROOT)} does not exist yet: schema validation skipped")
    import jsonschema

    jsonschema.validate(results, json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_reference_scores_full_points(graded):
    results, process, _ = graded["reference"]
    scores = part_scores(results)
    assert set(scores) == set(PARTS), (scores, process.stdout[-2000:])
    for part, (score, max_score) in scores.items():
        assert max_score > 0 and score == pytest.approx(max_score, abs=0.01), (part, scores)
    # The checks' scores are rounded in results.json; the total is not.
    assert results["score"] == pytest.approx(sum(m for _, m in scores.values()), abs=0.01)


def test_stubs_score_zero(graded):
    results, process, _ = graded["stubs"]
    scores = part_scores(results)
    assert set(scores) == set(PARTS), (scores, process.stdout[-2000:])
    assert all(score == 0 for score, _ in scores.values()), scores
    assert results["score"] == 0


def test_syntax_error_costs_only_its_part(graded):
    results, process, _ = graded["broken"]
    scores = part_scores(results)
    assert scores["attention"][0] == 0, scores
    assert scores["masks"][0] == pytest.approx(scores["masks"][1], abs=0.01) and scores["masks"][1] > 0, scores
