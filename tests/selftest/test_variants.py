"""The suite accepts every correct implementation, not just ours.

`variants/alternative/` is a second implementation of the contract written in another
style (einsum, -inf masking, reshape/permute, torch.pow, variance by hand, loss from
log_softmax, per-row beam search). Each run below is a separate pytest process, because
one process imports one `transformer` package.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALTERNATIVE = Path(__file__).resolve().parent / "variants" / "alternative"


def run_suite(impl: Path | str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/public", "tests/hidden", "--impl", str(impl),
         "-q", "--tb=short", "-p", "no:cacheprovider", "-p", "no:warnings", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )


def summary(result: subprocess.CompletedProcess) -> str:
    lines = result.stdout.strip().splitlines()
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return "\n".join(failures[:20] + lines[-1:])


@pytest.mark.slow
def test_alternative_implementation_gets_full_marks():
    result = run_suite(ALTERNATIVE)
    assert result.returncode == 0, f"a correct implementation in another style was rejected:\n{summary(result)}"


@pytest.mark.slow
def test_solutions_pass_with_deterministic_algorithms():
    result = run_suite("solutions", "--deterministic-algorithms")
    assert result.returncode == 0, f"the suite depends on non-deterministic algorithms:\n{summary(result)}"
