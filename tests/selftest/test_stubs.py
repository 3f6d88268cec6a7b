"""The stubs in assignments/ are generated from solutions/ and give nothing away."""
import ast
import re

import pytest

from grader.stubs import ASSIGNMENTS, SOLUTIONS, MarkerError, make_stub, stale_stubs


def test_assignments_are_up_to_date_with_solutions():
    stale = stale_stubs()
    assert not stale, f"assignments/ is out of date with solutions/ for {stale}: run `make stubs`"


def solution_blocks(source: str) -> list[list[str]]:
    blocks, current = [], None
    for line in source.splitlines():
        if "# BEGIN SOLUTION" in line:
            current = []
        elif "# END SOLUTION" in line:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line.strip())
    return blocks


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.py")), ids=lambda p: p.name)
def test_stub_contains_no_solution_line(path):
    stub = (ASSIGNMENTS / path.name).read_text(encoding="utf-8")
    stub_lines = {line.strip() for line in stub.splitlines()}
    leaked = [
        line
        for block in solution_blocks(path.read_text(encoding="utf-8"))
        for line in block
        if line and not line.startswith("#") and line in stub_lines and len(line) > 12
    ]
    assert not leaked, f"{path.name}: solution lines leaked into the stub: {leaked[:3]}"


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.py")), ids=lambda p: p.name)
def test_stub_keeps_every_signature_and_docstring(path):
    def api(source):
        """Module-level functions and classes, and the methods of those classes (helpers
        nested inside a solution body are the student's own business)."""
        found = {}
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                found[node.name] = (ast.dump(getattr(node, "args", ast.arguments())), ast.get_docstring(node))
            if isinstance(node, ast.ClassDef):
                for method in node.body:
                    if isinstance(method, ast.FunctionDef):
                        found[f"{node.name}.{method.name}"] = (ast.dump(method.args), ast.get_docstring(method))
        return found

    solution = api(path.read_text(encoding="utf-8"))
    stub = api((ASSIGNMENTS / path.name).read_text(encoding="utf-8"))
    missing = sorted(set(solution) - set(stub))
    assert not missing, f"{path.name}: the stub lost {missing}"
    changed = sorted(name for name in solution if solution[name] != stub[name])
    assert not changed, f"{path.name}: the stub changed the signature or docstring of {changed}"


def test_every_marked_block_becomes_a_todo_and_a_not_implemented_error():
    source = (
        "def f(x):\n"
        '    """Doc."""\n'
        "    # BEGIN SOLUTION: square it\n"
        "    return x * x\n"
        "    # END SOLUTION\n"
    )
    stub = make_stub(source, "demo")
    assert "return x * x" not in stub
    assert "    # TODO: square it" in stub
    assert re.search(r"raise NotImplementedError\('demo\.f: square it'\)", stub), stub
    namespace = {}
    exec(compile(stub, "demo.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="demo.f: square it"):
        namespace["f"](3)


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    # BEGIN SOLUTION\n    return 1\n",
        "def f():\n    return 1\n    # END SOLUTION\n",
        "def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n",
    ],
    ids=["unclosed", "unopened", "nested"],
)
def test_unbalanced_markers_are_rejected(source):
    with pytest.raises(MarkerError):
        make_stub(source, "demo")
