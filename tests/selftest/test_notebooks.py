"""The companion notebooks (`python -m builders.notebooks`): one per part in English and in
Japanese, valid nbformat, their formulas taken from the stubs' docstrings — and the English
set runs from top to bottom against the reference solution.

Execution budget: all notebooks run in ONE kernel (builders.notebooks.execute_notebooks:
torch is imported once; each notebook starts from a cleared namespace). The cells that run
a part's public tests are skipped (NOTEBOOK_RUN_TESTS=0), except in the masks notebook,
which runs one tiny test. The same kernel also runs the Japanese embedding notebook (the
CJK font path) and the masks notebook against the stubs (the "not implemented yet" notes).
"""

from __future__ import annotations

import ast
import io
import os
import re
import time
import tokenize

import nbformat
import pytest

from builders import notebooks

ROOT = notebooks.ROOT
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
JAPANESE_TEXT = re.compile(r"[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]")  # with Japanese punctuation
# Four or more English words in a row, outside ``code`` spans: a sentence, not an identifier.
ENGLISH_PROSE = re.compile(r"[A-Za-z]{2,}(?:[ ,;'-]+[A-Za-z]{2,}){3,}")


def english_prose_lines(text: str) -> list[str]:
    """The lines of ``text`` that read as English prose, stripped."""
    return [line.strip() for line in text.splitlines() if ENGLISH_PROSE.search(re.sub(r"``.*?``|`[^`]*`", " ", line))]


def tagged(notebook, tag: str):
    return next(c for c in notebook.cells if tag in c.metadata.get("tags", []))


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
        prose = [
            c.source
            for c in notebook.cells
            if c.cell_type == "markdown" and not {"formula", "spec"} & set(c.metadata.get("tags", []))
        ]
        assert prose, path.name
        for text in prose:
            assert JAPANESE.search(text), f"{path.name}: a markdown cell without Japanese: {text[:80]!r}"


def test_japanese_spec_and_formula_cells_show_the_japanese_docstrings(built):
    """The ja spec cell shows every docstring of the stubs in Japanese — the translations of the
    ``stubs`` catalogue, as in the Japanese stubs (``python -m builders.stubs --lang ja``) — and no
    line of English prose of the English docstrings is left in it or in the formula cell.
    Fails while grader/locale/ja/LC_MESSAGES/stubs.po lacks a translation."""
    untranslated = notebooks.untranslated_docstrings("ja")
    assert not untranslated, (
        f"{len(untranslated)} docstrings have no Japanese translation in "
        "grader/locale/ja/LC_MESSAGES/stubs.po:\n  " + "\n  ".join(untranslated)
    )
    problems = []
    for part, path in zip(notebooks.PARTS, built["ja"]):
        notebook = nbformat.read(path, as_version=4)
        spec, formula = tagged(notebook, "spec").source, tagged(notebook, "formula").source
        blocks = re.findall(r"```text\n(.*?)\n```", spec, flags=re.S)
        docs = notebooks.module_docs(part)
        assert len(blocks) == len(docs), (
            f"{path.name}: {len(blocks)} docstrings in the spec cell, {len(docs)} in the stub"
        )
        for (title, doc), block in zip(docs, blocks):
            if not JAPANESE.search(block):
                problems.append(f"{path.name} {title}: no Japanese in {block[:60]!r}")
            for line in english_prose_lines(doc):
                for cell, text in (("spec", spec), ("formula", formula)):
                    if line in text:
                        problems.append(f"{path.name} {cell} {title}: English line left: {line!r}")
        assert "### module " not in spec and "### モジュール `transformer." in spec, path.name
    assert not problems, "\n".join(problems)

    try:  # the same texts as the Japanese stubs, when builders.stubs can write them
        from builders.stubs import expected_stubs
    except ImportError:
        return
    japanese_stubs = expected_stubs(lang="ja")
    for part, path in zip(notebooks.PARTS, built["ja"]):
        spec = tagged(nbformat.read(path, as_version=4), "spec").source
        tree = ast.parse(japanese_stubs[f"{part}.py"])
        nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)))]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and not (isinstance(node, ast.FunctionDef) and node.name.startswith("_")):
                shown = "\n".join(line.rstrip() for line in doc.splitlines())
                assert shown in spec, (
                    f"{path.name}: the Japanese stub's docstring of {getattr(node, 'name', part)} is not in "
                    f"the spec cell"
                )


def test_japanese_notebooks_have_no_english_comments_or_labels(built):
    """Comments of the ja code cells are Japanese (or code: shapes, expressions); every ``tr(en, ja)``
    in the snippets has a Japanese side (or one without English words: names, code)."""
    problems = []
    for path in built["ja"]:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for token in tokenize.generate_tokens(io.StringIO(cell.source).readline):
                if (
                    token.type == tokenize.COMMENT
                    and not JAPANESE_TEXT.search(token.string)
                    and re.search(r"\b[a-z]{3,}\s+[a-z]{2,}\b", re.sub(r"`[^`]*`", "", token.string))
                ):
                    problems.append(f"{path.name}: English comment {token.string!r}")
    for source in sorted((notebooks.CONTENT / "code").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tr" and len(node.args) == 2:
                en, ja = (ast.unparse(arg) for arg in node.args)
                if en != ja and not JAPANESE_TEXT.search(ja) and re.search(r"\b[a-z]{3,}\b", ja):
                    problems.append(f"{source.name}:{node.lineno}: tr({en}, {ja}) has no Japanese")
    assert not problems, "\n".join(problems)


def test_comments_are_localised():
    code = (
        "x = 1  # one  #ja: 一\n"
        "# en: only English\n"
        "# ja: 日本語だけ\n"
        "y = '# not a comment #ja: no'  # (1, T)\n"
        "    # ja: indented\n"
    )
    assert (
        notebooks.localize_code(code, "en") == "x = 1  # one\n# only English\ny = '# not a comment #ja: no'  # (1, T)\n"
    )
    assert notebooks.localize_code(code, "ja") == (
        "x = 1  # 一\n# 日本語だけ\ny = '# not a comment #ja: no'  # (1, T)\n    # indented\n"
    )


def test_release_notebooks_default_to_the_students_folder(tmp_path):
    [path] = notebooks.build_notebooks("en", tmp_path, default_impl=".", parts=["masks"])
    setup = next(c for c in nbformat.read(path, as_version=4).cells if "setup" in c.metadata.get("tags", []))
    assert "IMPL = os.environ.get(\"IMPL\", '.')" in setup.source


def test_notebooks_run_against_the_solutions(built):
    """English set against solutions/, plus the Japanese embedding notebook, plus the masks
    notebook against the stubs — all in one kernel."""
    english = built["en"]
    masks = notebooks.PARTS.index("masks")
    quiet = 'import os\nos.environ.update(IMPL="solutions", NOTEBOOK_RUN_TESTS="0", NOTEBOOK_STRICT="1")\n'
    one_test = (
        'import os\nos.environ.update(IMPL="solutions", NOTEBOOK_RUN_TESTS="1", NOTEBOOK_STRICT="1", '
        'NOTEBOOK_TESTS_SELECT="length_one or requested_device")\n'
    )
    stubs = 'import os\nos.environ.update(IMPL="assignments", NOTEBOOK_RUN_TESTS="0", NOTEBOOK_STRICT="0")\n'
    paths = [*english, built["ja"][notebooks.PARTS.index("embedding")], english[masks]]
    pre = [one_test if i == masks else quiet for i in range(len(english))] + [quiet, stubs]
    started = time.monotonic()
    runs = notebooks.execute_notebooks(paths, pre_cells=pre, env={"PYTHONDONTWRITEBYTECODE": "1"})
    total = time.monotonic() - started
    print(
        f"\nexecuted {len(runs)} notebooks in {total:.1f} s: "
        + ", ".join(f"{p.parent.name}/{p.stem} {s:.1f}s" for p, _, s in runs)
    )

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
