"""Generate the companion notebooks, one per part, in English and Japanese.

Usage:
    python -m builders.notebooks [--lang en|ja] [--out notebooks/build] [--impl assignments]
    python -m builders.notebooks --execute [--impl solutions]   # also run them (instructor preview)

Where the text comes from:
    notebooks/content/<part>.<lang>.md   the prose, in Markdown, with directives on their own
                                         line (see below); ``+++`` on its own line starts a new
                                         Markdown cell
    notebooks/content/code/<part>.py     the code cells, shared by both languages, as named
                                         snippets (``# %% name``); plot labels use ``tr(en, ja)``
    notebooks/content/code/common.py     helpers appended to every notebook's setup cell
    the docstrings of assignments/transformer/<part>.py (``ast.get_docstring``): the formulas
                                         and the full specification, so the notebooks never
                                         drift from the stubs; in another language, their
                                         translations from the ``stubs`` catalogue
                                         (grader/locale/<lang>/LC_MESSAGES/stubs.po, the same
                                         texts as ``python -m builders.stubs --lang <lang>``);
                                         an untranslated docstring stays in English, and
                                         ``main`` warns about it

Comments in code snippets (and in common.py) exist in every language:
    # English text  #ja: 日本語          one comment, English before ``#ja:``, Japanese after
    x = f(y)  # (1, T, d): one sentence  #ja: (1, T, d)：1 つの文
    # en: a line of an English-only comment block
    # ja: 日本語だけのコメントの行       (a line tagged with another language is dropped)
Other comments (shapes, code) are kept as they are. Strings a cell shows use ``tr(en, ja)``.

Directives:
    {{setup}}        the setup cell: IMPL (which ``transformer/`` package to use), imports, fonts
    {{formula}}      the first paragraph of every docstring of the part's module (the formulas)
    {{spec}}         every docstring of the part's module, in full
    {{tests}}        a cell that runs the part's public tests on the code under IMPL
    {{code:NAME}}    the snippet NAME of notebooks/content/code/<part>.py

The setup cell reads these environment variables:
    IMPL                  the folder holding ``transformer/`` (default: ``assignments`` in the
                          repository, ``.`` in the student release); relative to the repository
    NOTEBOOK_RUN_TESTS=0  the test cell prints its command instead of running it (CI)
    NOTEBOOK_TESTS_SELECT a pytest ``-k`` expression for the test cell (CI: a tiny subset)
    NOTEBOOK_STRICT=1     a NotImplementedError in a picture cell is an error (CI), not a note
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import io
import os
import re
import sys
import time
import tokenize
from pathlib import Path

import nbformat
from nbformat import v4

from grader.contract import MODULES

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "notebooks" / "content"
STUBS = ROOT / "assignments" / "transformer"
LANGS = ("en", "ja")
SOURCE_LANGUAGE = "en"  # the language of the stubs, the code and untagged comments
PARTS = MODULES  # one notebook per module, in the order a student implements them

DIRECTIVE = re.compile(r"^\{\{\s*(?P<name>\w+)(?::\s*(?P<arg>[\w-]+))?\s*\}\}\s*$")
SNIPPET = re.compile(r"^# %% (?P<name>[\w-]+)\s*$", re.MULTILINE)

TEXT = {
    "en": {
        "formula": (
            "## The formula\n\nStraight from the docstrings of `transformer/{module}.py` — the specification you "
            "implement:"
        ),
        "spec": (
            "## The specification in full\n\nEvery docstring of `transformer/{module}.py`, as in your stub file. "
            "Shapes, the names of the submodules (the tests load weights by these names) and the pitfalls are all "
            "here."
        ),
        "tests": (
            "## Run the public tests\n\nThe same tests as `make check PART={part}`, on the code under `IMPL`. A "
            "failing test says what it checked, what it expected, what came back — and, when your answer looks "
            "like a well-known bug, which one."
        ),
        "setup_comment": (
            "# Setup — run this cell first.\n# IMPL: the folder holding the `transformer/` package that these "
            "cells use (yours by default).\n# Set the environment variable IMPL, or edit the default here."
        ),
        "no_tests": "no public tests for this part yet",
        "skipped": "tests skipped (NOTEBOOK_RUN_TESTS=0); the command would be:",
        "module": "module `transformer.{module}`",
        "find_root": "# The assignment's folder: the first one, from here upwards, holding tests/conftest.py.",
        "no_root": "no assignment folder (holding tests/conftest.py and grader/) above {start}",
        "no_package": "IMPL={impl!r}: no transformer/__init__.py in {path}",
        "reimport": "# Import `transformer` from IMPL_PATH, whatever was imported before (re-running is safe).",
        "under_test": "transformer package under test:",
        "tests_comment": "# Public tests of this part, run in a separate process on the code under IMPL.",
        "test_language": "the tests' messages in this notebook's language",
    },
    "ja": {
        "formula": "## 数式\n\n`transformer/{module}.py` の docstring（あなたが実装する仕様）から引用しています：",
        "spec": (
            "## 仕様の全文\n\n`transformer/{module}.py` のすべての docstring の日本語版です"
            "（日本語版スタブの docstring と同じ内容です）。"
            "テンソルの形状、サブモジュールの名前（テストはこの名前で重みを読み込みます）、"
            "よくある落とし穴がすべて書かれています。"
        ),
        "tests": (
            "## 公開テストを実行する\n\n`make check PART={part}` と同じテストを、`IMPL` "
            "のコードに対して実行します。失敗したテストは、何を確かめたか・何を期待したか・実際に何が返ってきたかを示し、よく知られたバグに当てはまる場合はそのバグの名前も教えてくれます。"
        ),
        "setup_comment": (
            "# セットアップ — 最初にこのセルを実行してください。\n"
            "# IMPL: このノートブックが使う `transformer/` パッケージを含むフォルダ（既定はあなたのコード）。\n"
            "# 環境変数 "
            "IMPL を設定するか、ここで既定値を書き換えてください。"
        ),
        "no_tests": "このパートの公開テストはまだありません",
        "skipped": "テストは省略しました（NOTEBOOK_RUN_TESTS=0）。実行するコマンド：",
        "module": "モジュール `transformer.{module}`",
        "find_root": "# 課題のフォルダ：ここから上にたどって、最初に tests/conftest.py を含むフォルダです。",
        "no_root": "{start} より上に課題のフォルダ（tests/conftest.py と grader/ を含むフォルダ）がありません",
        "no_package": "IMPL={impl!r}：{path} に transformer/__init__.py がありません",
        "reimport": (
            "# 以前に何を import していても、`transformer` を IMPL_PATH から import し直します"
            "（何度実行しても大丈夫です）。"
        ),
        "under_test": "テスト対象の transformer パッケージ：",
        "tests_comment": "# このパートの公開テストを、IMPL のコードに対して別プロセスで実行します。",
        "test_language": "テストのメッセージもこのノートブックの言語で表示します",
    },
}


class ContentError(ValueError):
    """The notebook content refers to something that does not exist."""


# -- docstrings of the stubs ----------------------------------------------------------------


def _signature(node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            return f"class {node.name}"
        args = copy.deepcopy(init.args)
        args.args = args.args[1:]  # drop self
        return f"class {node.name}({ast.unparse(args)})"
    return f"{node.name}({ast.unparse(node.args)})"


def module_docs(module: str, stubs: Path = STUBS) -> list[tuple[str, str]]:
    """``[(title, docstring)]``: the module, then its public functions and classes and the
    documented methods of those classes, in file order (English, as in the stubs)."""
    return [(title, doc) for _, title, doc in _module_docs(module, stubs)]


def _module_docs(module: str, stubs: Path = STUBS) -> list[tuple[str, str, str]]:
    """``[(kind, title, docstring)]``, kind: ``module``, ``top`` (a function or class) or ``method``."""
    path = stubs / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = []
    if doc := ast.get_docstring(tree):
        docs.append(("module", f"`transformer.{module}`", doc))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            if doc := ast.get_docstring(node):
                docs.append(("top", f"`{_signature(node)}`", doc))
            if isinstance(node, ast.ClassDef):
                for method in node.body:
                    if isinstance(method, ast.FunctionDef) and method.name != "__init__":
                        if doc := ast.get_docstring(method):
                            docs.append(("method", f"`{node.name}.{method.name}({ast.unparse(method.args)})`", doc))
    return docs


def translate_docstring(doc: str, lang: str) -> str:
    """A stub docstring (as ``ast.get_docstring`` returns it) in ``lang``: its translation from
    the ``stubs`` catalogue, the one ``python -m builders.stubs --lang`` puts into the stubs
    (msgid: the whole cleaned docstring). Untranslated: the English docstring."""
    if lang == SOURCE_LANGUAGE:
        return doc
    from grader.i18n import translations

    text = translations(lang, ("stubs",)).gettext(doc)
    return inspect.cleandoc(text) if text != doc else doc


def untranslated_docstrings(lang: str, parts=PARTS) -> list[str]:
    """``"module: first line"`` of every docstring the notebooks show that ``lang`` does not
    translate (empty for English)."""
    if lang == SOURCE_LANGUAGE:
        return []
    return [
        f"{part}: {doc.splitlines()[0]}"
        for part in parts
        for _, _, doc in _module_docs(part)
        if translate_docstring(doc, lang) == doc
    ]


def _title(kind: str, title: str, module: str, lang: str) -> str:
    return TEXT[lang]["module"].format(module=module) if kind == "module" else title


def _first_paragraph(doc: str) -> str:
    return doc.strip().split("\n\n")[0].strip()


def _fence(text: str) -> str:
    return f"```text\n{text}\n```"


def formula_markdown(module: str, lang: str) -> str:
    blocks = [TEXT[lang]["formula"].format(module=module)]
    for kind, title, doc in _module_docs(module):
        if kind != "top":
            continue  # the formulas live in the functions' and classes' docstrings
        blocks.append(f"**{title}**\n\n{_fence(_first_paragraph(translate_docstring(doc, lang)))}")
    return "\n\n".join(blocks)


def spec_markdown(module: str, lang: str) -> str:
    blocks = [TEXT[lang]["spec"].format(module=module)]
    for kind, title, doc in _module_docs(module):
        blocks.append(f"### {_title(kind, title, module, lang)}\n\n{_fence(translate_docstring(doc, lang))}")
    return "\n\n".join(blocks)


# -- comments in every language ------------------------------------------------------------------

LANGUAGE_TAG = re.compile(r"^#\s*(?P<lang>[a-z]{2}):\s?(?P<text>.*)$")
LANGUAGE_SPLIT = re.compile(r"\s*#(?P<lang>[a-z]{2}):\s*")


def localize_comment(comment: str, lang: str) -> str | None:
    """One comment (``#`` included) in ``lang``; None when it belongs to another language only."""
    tagged = LANGUAGE_TAG.match(comment)
    if tagged and tagged["lang"] in LANGS:
        return f"# {tagged['text']}".rstrip() if tagged["lang"] == lang else None
    pieces = LANGUAGE_SPLIT.split(comment)
    if len(pieces) == 1 or any(tag not in LANGS for tag in pieces[1::2]):
        return comment
    texts = {SOURCE_LANGUAGE: pieces[0].removeprefix("#").strip(), **dict(zip(pieces[1::2], pieces[2::2]))}
    return f"# {texts.get(lang, texts[SOURCE_LANGUAGE]).strip()}".rstrip()


def localize_code(source: str, lang: str) -> str:
    """``source`` with every comment in ``lang`` (see the module docstring); the code itself
    is untouched, and a line holding only a comment of another language is dropped."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = (token.start[1], token.string)
    lines = []
    for number, line in enumerate(source.split("\n"), start=1):
        if number in comments:
            column, comment = comments[number]
            code, text = line[:column], localize_comment(comment, lang)
            if text is None:
                if not code.strip():
                    continue
                line = code.rstrip()
            else:
                line = code + text
        lines.append(line)
    return "\n".join(lines)


# -- generated code cells ------------------------------------------------------------------------


def setup_code(part: str, lang: str, default_impl: str) -> str:
    text = TEXT[lang]
    common = localize_code((CONTENT / "code" / "common.py").read_text(encoding="utf-8"), lang).strip()
    # f-string templates of the generated code (their fields are its variables)
    no_root = text["no_root"]
    no_package = text["no_package"].replace("{impl!r}", "{IMPL!r}").replace("{path}", "{IMPL_PATH}")
    return f"""{text["setup_comment"]}
import os, sys, pathlib
IMPL = os.environ.get("IMPL", {default_impl!r})
LANG = {lang!r}
PART = {part!r}
RUN_TESTS = os.environ.get("NOTEBOOK_RUN_TESTS", "1") != "0"
STRICT = os.environ.get("NOTEBOOK_STRICT", "0") == "1"


{text["find_root"]}
def _find_root(start):
    for folder in [start, *start.parents]:
        if (folder / "tests" / "conftest.py").is_file() and (folder / "grader").is_dir():
            return folder
    raise RuntimeError(f{no_root!r})


ROOT = pathlib.Path(os.environ.get("TRANSFORMER_ROOT") or _find_root(pathlib.Path.cwd().resolve()))
IMPL_PATH = (ROOT / IMPL).resolve()
if not (IMPL_PATH / "transformer" / "__init__.py").is_file():
    raise RuntimeError(f{no_package!r})
{text["reimport"]}
sys.path[:] = [p for p in sys.path if p != str(IMPL_PATH)]
sys.path.insert(0, str(IMPL_PATH))
for _name in [m for m in sys.modules if m == "transformer" or m.startswith("transformer.")]:
    del sys.modules[_name]
import transformer
print({text["under_test"]!r}, pathlib.Path(transformer.__file__).parent)

{common}
"""


def tests_code(part: str, lang: str) -> str:
    return f"""{TEXT[lang]["tests_comment"]}
import subprocess

test_file = ROOT / "tests" / "public" / "test_{part}.py"
command = [sys.executable, "-m", "pytest", str(test_file.relative_to(ROOT)), "--impl", str(IMPL_PATH),
           "-q", "--tb=short", "--no-header", "-p", "no:warnings", "--part-summary"]
if os.environ.get("NOTEBOOK_TESTS_SELECT"):
    command += ["-k", os.environ["NOTEBOOK_TESTS_SELECT"]]
if not test_file.is_file():
    print({TEXT[lang]["no_tests"]!r})
elif not RUN_TESTS:
    print({TEXT[lang]["skipped"]!r}, " ".join(command))
else:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    env.setdefault("COURSE_LANGUAGE", LANG)  # {TEXT[lang]["test_language"]}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    print(result.stdout[-12000:], result.stderr[-3000:], sep="\\n")
"""


# -- content files --------------------------------------------------------------------------------


def load_snippets(part: str) -> dict[str, str]:
    path = CONTENT / "code" / f"{part}.py"
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    pieces = SNIPPET.split(text)
    # pieces: [preamble, name1, code1, name2, code2, ...]
    return {name: code.strip("\n") for name, code in zip(pieces[1::2], pieces[2::2])}


def build_notebook(part: str, lang: str, default_impl: str = "assignments") -> nbformat.NotebookNode:
    """One part's notebook in one language (not executed)."""
    if lang not in LANGS:
        raise ContentError(f"unknown language {lang!r} (known: {', '.join(LANGS)})")
    source = CONTENT / f"{part}.{lang}.md"
    if not source.is_file():
        raise ContentError(f"missing notebook text {source.relative_to(ROOT)}")
    snippets = load_snippets(part)
    used = set()
    cells: list[nbformat.NotebookNode] = []
    buffer: list[str] = []

    def flush() -> None:
        text = "\n".join(buffer).strip()
        buffer.clear()
        if text:
            cells.append(v4.new_markdown_cell(text))

    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        directive = DIRECTIVE.match(line.strip())
        if line.strip() == "+++":
            flush()
        elif directive:
            flush()
            name, arg = directive["name"], directive["arg"]
            if name == "setup":
                cells.append(v4.new_code_cell(setup_code(part, lang, default_impl), metadata={"tags": ["setup"]}))
            elif name == "formula":
                cells.append(v4.new_markdown_cell(formula_markdown(part, lang), metadata={"tags": ["formula"]}))
            elif name == "spec":
                cells.append(v4.new_markdown_cell(spec_markdown(part, lang), metadata={"tags": ["spec"]}))
            elif name == "tests":
                cells.append(v4.new_markdown_cell(TEXT[lang]["tests"].format(part=part)))
                cells.append(v4.new_code_cell(tests_code(part, lang), metadata={"tags": ["tests"]}))
            elif name == "code":
                if arg not in snippets:
                    raise ContentError(
                        f"{source.name}:{number}: no snippet {arg!r} in code/{part}.py (has {sorted(snippets)})"
                    )
                used.add(arg)
                cells.append(v4.new_code_cell(localize_code(snippets[arg], lang), metadata={"tags": [arg]}))
            else:
                raise ContentError(f"{source.name}:{number}: unknown directive {line.strip()!r}")
        else:
            buffer.append(line)
    flush()
    if not any("setup" in c.metadata.get("tags", []) for c in cells):
        raise ContentError(f"{source.name}: no {{{{setup}}}} directive")
    unused = sorted(set(snippets) - used)
    if unused:
        raise ContentError(f"{source.name}: snippets of code/{part}.py never used: {unused}")
    for index, cell in enumerate(cells):  # stable ids: the same content builds the same file
        cell.id = f"{part}-{lang}-{index:02d}"
    notebook = v4.new_notebook(cells=cells)
    notebook.metadata.update(
        {
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
            "transformer_assignment": {"part": part, "lang": lang},
        }
    )
    nbformat.validate(notebook)
    return notebook


def notebook_name(part: str) -> str:
    return f"{PARTS.index(part) + 1:02d}_{part}.ipynb"


def build_notebooks(lang: str, out: Path, default_impl: str = "assignments", parts=PARTS) -> list[Path]:
    """Write ``out/NN_<part>.ipynb`` for every part; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for part in parts:
        path = out / notebook_name(part)
        nbformat.write(build_notebook(part, lang, default_impl), path)
        written.append(path)
    return written


# -- execution -------------------------------------------------------------------------------------


def execute_notebooks(
    paths,
    *,
    cwd: Path = ROOT,
    env: dict | None = None,
    timeout: int = 300,
    pre_cells: list[str] | None = None,
    kernel_name: str = "python3",
):
    """Execute notebooks one after the other in ONE kernel (the kernel starts, and imports
    torch, once); each notebook starts from a cleared namespace (``%reset -f``), so one
    cannot silently rely on another's variables. Returns ``[(path, executed notebook, seconds)]``.

    ``pre_cells``: one piece of code per path, run (hidden) before that notebook — e.g. to
    change ``os.environ`` (IMPL, NOTEBOOK_RUN_TESTS) for it. A path may occur several times.
    Raises ``nbclient.exceptions.CellExecutionError`` on the first failing cell.
    """
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    paths = [Path(p) for p in paths]
    pre_cells = list(pre_cells) if pre_cells is not None else [""] * len(paths)
    if len(pre_cells) != len(paths):
        raise ValueError("pre_cells needs one entry per path")
    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel(cwd=str(cwd), env={**os.environ, **(env or {})})
    results = []
    try:
        for path, pre in zip(paths, pre_cells):
            notebook = nbformat.read(path, as_version=4)
            hidden = (
                "get_ipython().run_line_magic('reset', '-f')\nimport "
                "matplotlib.pyplot\nmatplotlib.pyplot.close('all')\n"
            ) + pre
            notebook.cells.insert(0, v4.new_code_cell(hidden, metadata={"tags": ["ci-hidden"]}))
            started = time.monotonic()
            client = NotebookClient(
                notebook, km=km, timeout=timeout, kernel_name=kernel_name, resources={"metadata": {"path": str(cwd)}}
            )
            client.execute()
            notebook.cells.pop(0)
            results.append((path, notebook, time.monotonic() - started))
    finally:
        km.shutdown_kernel(now=True)
    return results


def main(argv: list[str] | None = None) -> int:
    from grader.cli import HelpFormatter, add_version

    parser = argparse.ArgumentParser(
        prog="python -m builders.notebooks", description=__doc__, formatter_class=HelpFormatter
    )
    add_version(parser)
    parser.add_argument("--lang", choices=LANGS, help="one language (default: both)")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "notebooks" / "build",
        help="output folder; the notebooks go to OUT/<lang>/ (default: notebooks/build)",
    )
    parser.add_argument(
        "--impl",
        default=None,
        help="default IMPL written into the notebooks (default: assignments); with --execute, "
        "the package they run on (default: solutions)",
    )
    parser.add_argument(
        "--execute", action="store_true", help="also execute them, saving the outputs (instructor preview)"
    )
    args = parser.parse_args(argv)
    langs = [args.lang] if args.lang else list(LANGS)
    started = time.monotonic()
    for lang in langs:
        paths = build_notebooks(
            lang, args.out / lang, default_impl=args.impl if args.impl and not args.execute else "assignments"
        )
        print(f"wrote {len(paths)} notebooks to {args.out / lang}")
        if missing := untranslated_docstrings(lang):
            print(
                f"warning: {len(missing)} docstrings have no {lang!r} translation in grader/locale/{lang}/LC_MESSAGES/"
                "stubs.po and are shown in English:\n  - " + "\n  - ".join(missing),
                file=sys.stderr,
            )
        if args.execute:
            impl = args.impl or "solutions"
            for path, notebook, seconds in execute_notebooks(paths, env={"IMPL": impl, "NOTEBOOK_RUN_TESTS": "0"}):
                nbformat.write(notebook, path)
                print(f"  executed {path.name} against {impl}/ in {seconds:.1f} s")
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
