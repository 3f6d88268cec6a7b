"""The companion notebooks (`python -m grader.notebooks`): one per part in English and in
Japanese, valid nbformat, their formulas taken from the stubs' docstrings — and the English
set runs from top to bottom against the reference solution.

Execution budget: all notebooks run in ONE kernel (grader.notebooks.execute_notebooks:
torch is imported once; each notebook starts from a cleared namespace). The cells that run
a part's public tests are skipped (NOTEBOOK_RUN_TESTS=0), except in the masks notebook,
which runs one tiny test. The same kernel also runs the Japanese embedding notebook (the
CJK font path) and the masks notebook against the stubs (the "not implemented yet" notes).
"""
from __future__ import annotations

import ast
import os
import re
import time

import nbformat
import pytest

from grader import notebooks

ROOT = notebooks.ROOT
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, list]:
    out = tmp_path_factory.mktemp("notebooks")
    return {lang: notebooks.build_notebooks(lang, out / lang) for lang in notebooks.LANGS}


@pytest.mark.parametrize("lang", notebooks.LANGS)
def test_one_valid_notebook_per_part(built, lang):
    paths = built[lang]
    assert [p.name for p in paths] == [notebooks.notebook_name(part) for part in notebooks.PARTS]
    for path, part in zip(paths, notebooks.PARTS):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata["kernelspec"]["name"] == "python3"
        assert notebook.metadata["transformer_assignment"] == {"part": part, "lang": lang}
        tags = [tag for cell in notebook.cells for tag in cell.metadata.get("tags", [])]
        for needed in ("setup", "formula", "spec", "tests"):
            assert needed in tags, f"{path.name}: no {needed} cell"
        assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert len(code) >= 4, f"{path.name}: setup, pictures and tests expected"
        for cell in code:
            compile(cell.source, f"{path.name}", "exec")  # valid Python (no IPython magics needed)
        tests = next(c for c in code if "tests" in c.metadata.get("tags", []))
        assert "subprocess.run" in tests.source and f"test_{part}.py" in tests.source and "--impl" in tests.source
        assert "!" not in "".join(line[:1] for line in tests.source.splitlines())


def test_formulas_and_specification_come_from_the_stub_docstrings(built):
    stub = ast.parse((ROOT / "assignments" / "transformer" / "attention.py").read_text(encoding="utf-8"))
    function = next(n for n in stub.body if isinstance(n, ast.FunctionDef) and n.name == "scaled_dot_product_attention")
    docstring = ast.get_docstring(function)
    notebook = nbformat.read(built["en"][notebooks.PARTS.index("attention")], as_version=4)
    formula = next(c for c in notebook.cells if "formula" in c.metadata.get("tags", []))
    spec = next(c for c in notebook.cells if "spec" in c.metadata.get("tags", []))
    assert docstring.splitlines()[0] in formula.source  # "Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V ..."
    assert docstring in spec.source


def test_japanese_notebooks_have_japanese_prose(built):
    for path in built["ja"]:
        notebook = nbformat.read(path, as_version=4)
        prose = [c.source for c in notebook.cells if c.cell_type == "markdown"
                 and not {"formula", "spec"} & set(c.metadata.get("tags", []))]
        assert prose, path.name
        for text in prose:
            assert JAPANESE.search(text), f"{path.name}: a markdown cell without Japanese: {text[:80]!r}"


def test_release_notebooks_default_to_the_students_folder(tmp_path):
    [path] = notebooks.build_notebooks("en", tmp_path, default_impl=".", parts=["masks"])
    setup = next(c for c in nbformat.read(path, as_version=4).cells if "setup" in c.metadata.get("tags", []))
    assert 'IMPL = os.environ.get("IMPL", \'.\')' in setup.source


def test_notebooks_run_against_the_solutions(built):
    """English set against solutions/, plus the Japanese embedding notebook, plus the masks
    notebook against the stubs — all in one kernel."""
    english = built["en"]
    masks = notebooks.PARTS.index("masks")
    quiet = 'import os\nos.environ.update(IMPL="solutions", NOTEBOOK_RUN_TESTS="0", NOTEBOOK_STRICT="1")\n'
    one_test = ('import os\nos.environ.update(IMPL="solutions", NOTEBOOK_RUN_TESTS="1", NOTEBOOK_STRICT="1", '
                'NOTEBOOK_TESTS_SELECT="length_one or requested_device")\n')
    stubs = 'import os\nos.environ.update(IMPL="assignments", NOTEBOOK_RUN_TESTS="0", NOTEBOOK_STRICT="0")\n'
    paths = [*english, built["ja"][notebooks.PARTS.index("embedding")], english[masks]]
    pre = [one_test if i == masks else quiet for i in range(len(english))] + [quiet, stubs]
    started = time.monotonic()
    runs = notebooks.execute_notebooks(paths, pre_cells=pre, env={"PYTHONDONTWRITEBYTECODE": "1"})
    total = time.monotonic() - started
    print(f"\nexecuted {len(runs)} notebooks in {total:.1f} s: "
          + ", ".join(f"{p.parent.name}/{p.stem} {s:.1f}s" for p, _, s in runs))

    def outputs(notebook, kind):
        return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind]

    def text(notebook):
        return "".join(o.get("text", "") for o in outputs(notebook, "stream"))

    for path, notebook, _ in runs[: len(english) + 1]:
        assert not outputs(notebook, "error"), path.name
        images = [o for o in outputs(notebook, "display_data") if "image/png" in o.get("data", {})]
        assert len(images) >= 2, f"{path.parent.name}/{path.name}: expected at least two pictures"
        assert "Not implemented yet" not in text(notebook) and "まだ実装されていません" not in text(notebook)
        assert f"{os.sep}solutions{os.sep}transformer" in text(notebook)
    masks_text = re.sub(r"\x1b\[[0-9;]*m", "", text(runs[masks][1]))  # pytest's colours
    # The test cell ran a tiny subset of the masks tests.
    assert re.search(r"\b[1-9]\d* passed", masks_text) and "failed" not in masks_text, masks_text[-2000:]
    embedding_text = text(runs[len(english)][1])
    assert "True" in embedding_text and "False" in embedding_text  # same multiset without positions, not with
    stub_run = runs[-1][1]
    assert not outputs(stub_run, "error")
    assert "Not implemented yet" in text(stub_run) and f"{os.sep}assignments{os.sep}transformer" in text(stub_run)
