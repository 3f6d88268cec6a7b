"""Test-suite wiring: which implementation is under test, hypothesis profiles, rubric parts,
the per-part summary of `make check`, and the stub-inversion mode of `make test`.

Options:
    --impl assignments|solutions|PATH   the `transformer/` package under test (default: assignments)
    --student-view table|part           what `make check` prints at the end (tests/support/feedback.py);
                                        --part-summary is --student-view table
    --test-timeout S                    stop a test after S seconds (in-process only; 0: no limit)
    --part-results-json FILE            every test's outcome and diagnosis, per part (for tools)
    --expect-stub-failures              invert outcomes: a test that *passes* is reported as a
                                        failure ("no teeth"), one that fails as a pass
    --deterministic-algorithms          torch.use_deterministic_algorithms(True) for the whole run
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings

from grader.contract import find_package_root
from grader.rubric import load_rubric
from tests.support.feedback import FeedbackPlugin
from tests.support.implementation import InProcessImplementation

ROOT = Path(__file__).resolve().parent.parent

# Deterministic by default (CI, students); `make test-deep` / HYPOTHESIS_PROFILE=deep explores more.
# The default profile does not shrink: on half-finished code every example fails, and
# shrinking them made `make check` take minutes. Derandomised generation already starts
# from small examples; `HYPOTHESIS_PROFILE=shrink` gives the minimal one when debugging.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    print_blob=False,  # its advice (decorate the test with @reproduce_failure) means editing a test file
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "shrink",
    derandomize=True,
    deadline=None,
    max_examples=25,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "deep",
    deadline=None,
    max_examples=400,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The tensors here are tiny: extra threads only wait on each other, and on a busy 2-core
# machine they made the suite 2-4x slower.
torch.set_num_threads(1)


def pytest_addoption(parser):
    group = parser.getgroup("transformer assignment")
    group.addoption("--impl", default="assignments", help="assignments, solutions, or a directory holding transformer/")
    group.addoption(
        "--part-summary",
        action="store_const",
        const="table",
        dest="student_view",
        help="print a per-part summary table (same as --student-view table)",
    )
    group.addoption(
        "--student-view",
        choices=("table", "part"),
        default=None,
        dest="student_view",
        help="print the student's view at the end: the per-part table, or one part in detail",
    )
    group.addoption("--student-part", default="", help="with --student-view part: the part shown")
    group.addoption(
        "--test-timeout",
        type=float,
        default=0.0,
        help="seconds one test may run (in-process transport only; 0: no limit)",
    )
    group.addoption("--expect-stub-failures", action="store_true", help="every test must fail (run against the stubs)")
    group.addoption("--part-results-json", default=None, help="write per-part results (for tools) to this file")
    group.addoption(
        "--deterministic-algorithms",
        action="store_true",
        help="run with torch.use_deterministic_algorithms(True): correct code must not depend on it",
    )


def resolve_impl_path(value: str) -> Path:
    """`assignments`/`solutions` name the repository's packages; anything else is a path.
    A submission zipped with one extra folder level (`alice/transformer/`) is accepted."""
    path = ROOT / value if value in ("assignments", "solutions") else Path(value).expanduser().resolve()
    root = find_package_root(path)
    if root is not None:
        return root
    raise pytest.UsageError(f"--impl {value}: no transformer/__init__.py in {path} (or one folder below it)")


def pytest_configure(config):
    config.addinivalue_line("markers", "part(name): rubric part")
    config._rubric = load_rubric()
    if config.getoption("--deterministic-algorithms"):
        torch.use_deterministic_algorithms(True)
    config.pluginmanager.register(FeedbackPlugin(config), "transformer-feedback")


@pytest.fixture(scope="session")
def impl(request):
    """The implementation under test (see tests/support/implementation.py for the rules)."""
    factory = getattr(request.config, "transformer_implementation_factory", None)
    if factory is not None:  # the grader's sandboxed transport
        return factory()
    return InProcessImplementation(resolve_impl_path(request.config.getoption("--impl")))


@pytest.fixture(autouse=True)
def _fresh_torch_state():
    """Every test starts from the same global state, whatever ran before it."""
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(default_dtype)


def part_of(item) -> str | None:
    rel = Path(str(item.fspath)).resolve()
    try:
        rel = rel.relative_to(ROOT)
    except ValueError:
        pass
    return item.config._rubric.part_of_test_file(str(rel))


def pytest_collection_modifyitems(config, items):
    for item in items:
        part = part_of(item)
        if part:
            item.add_marker(pytest.mark.part(part))
