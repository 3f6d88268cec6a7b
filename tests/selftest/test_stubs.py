"""The stubs in assignments/ are generated from solutions/ and give nothing away."""

import ast
import inspect
import re
import unicodedata

import pytest
from babel.messages.pofile import read_po, write_po

import builders.stubs as stubs
from builders.stubs import ASSIGNMENTS, SOLUTIONS, MarkerError, make_stub, stale_stubs


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
    source = 'def f(x):\n    """Doc."""\n    # BEGIN SOLUTION: square it\n    return x * x\n    # END SOLUTION\n'
    stub = make_stub(source, "demo")
    assert "return x * x" not in stub
    assert "    # TODO: square it" in stub
    assert 'raise NotImplementedError("demo.f: square it")' in stub, stub
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


# -- stubs in another language (the Japanese hand-out) ------------------------------------------


def has_japanese(text: str) -> bool:
    return any(unicodedata.name(ch, "").startswith(("HIRAGANA", "KATAKANA", "CJK UNIFIED")) for ch in text)


def docstrings(source: str) -> list[tuple[str, str]]:
    """``(where, cleaned docstring)`` of the module and every class and function, in order."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node):
            found.append((getattr(node, "name", "<module>"), ast.get_docstring(node)))
    return found


def code_without_texts(source: str) -> str:
    """The AST with every docstring and every NotImplementedError message emptied."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node, clean=False):
            node.body[0].value.value = ""
        if (
            isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and getattr(node.exc.func, "id", "") == "NotImplementedError"
        ):
            node.exc.args = []
    return ast.dump(tree)


def lines_outside_texts(source: str) -> list[str]:
    """The stub's lines, less its docstrings, comments and NotImplementedError lines: the code
    a translation must leave byte for byte."""
    tree = ast.parse(source)
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node, clean=False):
            skip.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
        if isinstance(node, ast.Raise) and getattr(getattr(node.exc, "func", None), "id", "") == "NotImplementedError":
            skip.update(range(node.lineno, node.end_lineno + 1))  # its message may take a line of its own
    return [
        line
        for number, line in enumerate(source.splitlines(), 1)
        if number not in skip and not line.lstrip().startswith("#")
    ]


@pytest.fixture(scope="module")
def japanese() -> dict[str, str]:
    return stubs.expected_stubs(lang="ja")


@pytest.fixture(scope="module")
def japanese_catalogue() -> dict[str, str]:
    return stubs.load_translations("ja")


def test_the_catalogue_lists_every_docstring_hint_and_the_notice():
    messages = stubs.catalogue_messages()
    assert stubs.notice_message() in messages
    for path in sorted(SOLUTIONS.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for where, doc in docstrings(source):
            assert doc in messages, f"{path.name}: the docstring of {where} is not in the catalogue"
        for number, line in enumerate(lines, 1):
            if "# BEGIN SOLUTION:" in line:
                hint = line.split("# BEGIN SOLUTION:", 1)[1].strip()
                assert f"solutions/transformer/{path.name}:{number}" in messages.get(hint, []), (path.name, number)
    for msgid, places in messages.items():  # every location points at its text
        for place in places:
            rel, line = place.rsplit(":", 1)
            lines = (stubs.ROOT / rel).read_text(encoding="utf-8").splitlines()
            text = "\n".join(lines[int(line) - 1 : int(line) + 1])  # a docstring may open on the line before
            first = msgid.splitlines()[0]
            assert first[:30] in text, f"{place} does not hold {first!r}"


def test_every_text_of_the_stubs_is_translated_into_japanese():
    missing = stubs.missing_translations("ja")
    assert not missing, (
        "untranslated texts in grader/locale/ja/LC_MESSAGES/stubs.po (run `python -m "
        "builders.catalogues update --lang ja --domain stubs` and fill them in):\n  " + "\n  ".join(missing)
    )


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.py")), ids=lambda p: p.name)
def test_japanese_stub_differs_from_the_english_one_only_in_its_texts(path, japanese):
    english = (ASSIGNMENTS / path.name).read_text(encoding="utf-8")
    translated = japanese[path.name]
    assert code_without_texts(translated) == code_without_texts(english), f"{path.name}: the code changed"
    assert lines_outside_texts(translated) == lines_outside_texts(english), f"{path.name}: a code line changed"
    assert len(docstrings(translated)) == len(docstrings(english))


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.py")), ids=lambda p: p.name)
def test_japanese_stub_carries_the_translations(path, japanese, japanese_catalogue):
    english = (ASSIGNMENTS / path.name).read_text(encoding="utf-8")
    translated = japanese[path.name]
    for (where, doc_en), (_, doc_ja) in zip(docstrings(english), docstrings(translated)):
        assert doc_ja == inspect.cleandoc(japanese_catalogue[doc_en]), f"{path.name}: {where}"
        assert has_japanese(doc_ja), f"{path.name}: the docstring of {where} is still in English"
    todo_en = [line.strip() for line in english.splitlines() if line.strip().startswith("# TODO: ")]
    todo_ja = [line.strip() for line in translated.splitlines() if line.strip().startswith("# TODO: ")]
    assert todo_ja == [f"# TODO: {japanese_catalogue[t.removeprefix('# TODO: ')]}" for t in todo_en]
    if todo_en:
        notice = [f"# {line}".rstrip() for line in japanese_catalogue[stubs.notice_message()].splitlines()]
        assert translated.splitlines()[: len(notice)] == notice
        assert has_japanese(" ".join(todo_ja)), f"{path.name}: no hint is in Japanese"


def test_japanese_stub_raises_not_implemented_with_the_japanese_hint(japanese, japanese_catalogue):
    namespace = {}
    exec(compile(japanese["masks.py"], "masks.py", "exec"), namespace)
    hint = japanese_catalogue["compare with pad_id, then insert the query axis with unsqueeze(1)"]
    assert has_japanese(hint)
    with pytest.raises(NotImplementedError) as raised:
        namespace["padding_mask"](None, 0)
    assert str(raised.value) == f"masks.padding_mask: {hint}"


def test_translations_that_need_escaping_keep_the_code_intact():
    source = (
        '"""Module doc."""\n'
        "def f(x):\n"
        '    """One line\n'
        "\n"
        "    Args:\n"
        "        x: a value.\n"
        '    """\n'
        "    # BEGIN SOLUTION: square it\n"
        "    return x * x\n"
        "    # END SOLUTION\n"
        "\n"
        "class C:\n"
        '    """Ends on its last line."""\n'
    )
    nasty = {
        "Module doc.": 'モジュール \\ と """ を含む',
        "One line\n\nArgs:\n    x: a value.": '1 行目\n\n引数:\n    x: 値（末尾が引用符 "',
        "Ends on its last line.": '最後の行で終わる "',
        "square it": "2 乗する",
        stubs.notice_message(): "お知らせ 1\nお知らせ 2",
    }
    stub = stubs.make_stub(source, "demo", nasty.__getitem__)
    english = stubs.make_stub(source, "demo")
    assert code_without_texts(stub) == code_without_texts(english)
    assert [doc for _, doc in docstrings(stub)] == [
        nasty["Module doc."],
        nasty["One line\n\nArgs:\n    x: a value."],
        nasty["Ends on its last line."],
    ]
    assert stub.startswith("# お知らせ 1\n# お知らせ 2\n")
    assert "    # TODO: 2 乗する\n" in stub and 'raise NotImplementedError("demo.f: 2 乗する")' in stub
    # The English stub is unchanged by the translation machinery: identity translations give it back.
    identity = stubs.make_stub(source, "demo", lambda text: text)
    assert identity == english


def test_identity_translations_reproduce_the_english_stubs_byte_for_byte():
    """The docstrings are put back in their own layout: only their text can change."""
    identity = {msgid: msgid for msgid in stubs.catalogue_messages()}
    assert stubs.expected_stubs(translations=identity) == stubs.expected_stubs()


def catalogue_without(tmp_path, msgid_start: str):
    """A copy of the Japanese stubs catalogue under tmp_path whose message starting with
    ``msgid_start`` has no translation; returns (locale dir, that msgid)."""
    source = stubs.catalogue_path("ja")
    with source.open("rb") as handle:
        catalogue = read_po(handle, locale="ja", domain="stubs")
    [message] = [m for m in catalogue if m.id and m.id.startswith(msgid_start)]
    message.string = ""
    target = tmp_path / "locale" / "ja" / "LC_MESSAGES" / "stubs.po"
    target.parent.mkdir(parents=True)
    with target.open("wb") as handle:
        write_po(handle, catalogue, width=100)
    return tmp_path / "locale", message.id


def test_a_missing_translation_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    locale, msgid = catalogue_without(tmp_path, "Mark the real (non-padding) tokens")
    monkeypatch.setattr(stubs, "LOCALE_DIR", locale)
    with pytest.raises(stubs.TranslationError, match=re.escape(msgid.splitlines()[0])) as raised:
        stubs.expected_stubs(lang="ja")
    line = next(n for n, text in enumerate((SOLUTIONS / "masks.py").read_text().splitlines(), 1) if msgid[:30] in text)
    assert f"solutions/transformer/masks.py:{line}" in str(raised.value)
    out = tmp_path / "out"
    assert stubs.main(["--lang", "ja", "--out", str(out)]) == 1
    assert msgid.splitlines()[0] in capsys.readouterr().err
    assert not (out / "transformer").exists(), "nothing may be written when a translation is missing"
    assert stubs.main(["--lang", "ja", "--check"]) == 1


def test_a_fuzzy_translation_counts_as_missing(tmp_path, monkeypatch):
    source = stubs.catalogue_path("ja")
    with source.open("rb") as handle:
        catalogue = read_po(handle, locale="ja", domain="stubs")
    message = next(m for m in catalogue if m.id == "keep smoothing and ignore_index")
    message.flags.add("fuzzy")
    target = tmp_path / "ja" / "LC_MESSAGES" / "stubs.po"
    target.parent.mkdir(parents=True)
    with target.open("wb") as handle:
        write_po(handle, catalogue, width=100)
    monkeypatch.setattr(stubs, "LOCALE_DIR", tmp_path)
    with pytest.raises(stubs.TranslationError, match="keep smoothing and ignore_index"):
        stubs.expected_stubs(lang="ja")


def test_the_command_line_writes_japanese_stubs_and_leaves_assignments_alone(tmp_path, capsys, japanese):
    before = {p.name: p.read_text(encoding="utf-8") for p in ASSIGNMENTS.glob("*.py")}
    assert stubs.main(["--lang", "ja", "--out", str(tmp_path)]) == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "transformer").glob("*.py")}
    assert written == japanese
    assert {p.name: p.read_text(encoding="utf-8") for p in ASSIGNMENTS.glob("*.py")} == before
    assert stubs.main(["--check"]) == 0
    assert capsys.readouterr().out.strip().endswith("assignments/ is up to date with solutions/")
    assert stubs.main(["--lang", "ja", "--check"]) == 0
    with pytest.raises(SystemExit):  # a Japanese assignments/ would be a mistake
        stubs.main(["--lang", "ja"])
