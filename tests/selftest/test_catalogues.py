"""Every student-facing message exists in Japanese, with the same placeholders, and the
language follows the locale as gettext reads it (grader/i18n.py, builders/catalogues.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from builders import catalogues
from grader import i18n

ROOT = Path(__file__).resolve().parents[2]
# Where student-facing text is written, and the arguments that carry it.
MESSAGE_KEYWORDS = {"what", "hint", "case"}
CHECK_FUNCTIONS = {"assert_close", "assert_equal", "check", "assert_close_naming_bugs", "CheckFailure"}
TRANSLATORS = {"_", "N_"}


def test_every_message_has_a_japanese_translation_with_the_same_placeholders():
    problems = catalogues.problems(["ja"])
    assert not problems, (
        f"{len(problems)} catalogue problems (run `python -m builders.catalogues check`):\n" + "\n".join(problems[:40])
    )


def test_placeholders_are_compared_by_name():
    assert catalogues.placeholders("expected {expected}, got {actual!r:>4}") == {"expected", "actual"}
    assert catalogues.placeholders("no fields") == set()
    assert catalogues.placeholders("broken {") == {"<unbalanced braces>"}


PROSE = re.compile(r"\b[A-Za-z]{2,} [A-Za-z]{2,}\b")


def _words(text: str) -> bool:
    """Prose: two plain words in a row ("wrong result", "tokens of shape"). Code alone
    (``causal_mask(4)``, ``cross_attn(x, memory, memory, src_mask)``, formulas, shapes)
    needs no translation."""
    return bool(PROSE.search(text))


def _prose(node: ast.AST) -> bool:
    """A dict key that is a sentence (state-dict names and option names have no spaces)."""
    text = (
        node.value
        if isinstance(node, ast.Constant)
        else "".join(v.value for v in node.values if isinstance(v, ast.Constant))
    )
    return isinstance(text, str) and text.count(" ") >= 2


def _untranslated(node: ast.AST, constants: dict[str, ast.AST], depth: int = 0) -> list[str]:
    """String literals with words inside ``node`` that are not the message of a ``_()`` call."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in TRANSLATORS:
        return [
            x
            for arg in [*node.args[1:], *(k.value for k in node.keywords)]
            for x in _untranslated(arg, constants, depth)
        ]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if _words(node.value) else []
    if isinstance(node, ast.JoinedStr):
        found = [v.value for v in node.values if isinstance(v, ast.Constant) and _words(v.value)]
        return found + [
            x
            for v in node.values
            if isinstance(v, ast.FormattedValue)
            for x in _untranslated(v.value, constants, depth)
        ]
    if isinstance(node, ast.Name) and node.id in constants and depth < 2:
        return _untranslated(constants[node.id], constants, depth + 1)
    if isinstance(node, ast.Call):  # a helper's result: look at its arguments only
        return [
            x for arg in [*node.args, *(k.value for k in node.keywords)] for x in _untranslated(arg, constants, depth)
        ]
    if isinstance(node, (ast.BinOp, ast.IfExp, ast.BoolOp, ast.Tuple, ast.List)):
        return [x for child in ast.iter_child_nodes(node) for x in _untranslated(child, constants, depth)]
    return []


def _message_arguments(call: ast.Call) -> list[ast.AST]:
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
    if name not in CHECK_FUNCTIONS and name != "fail":
        return []
    if name == "fail":  # pytest.fail(message)
        return call.args[:1]
    found = [k.value for k in call.keywords if k.arg in MESSAGE_KEYWORDS]
    if name == "check":
        found += call.args[1:3]
    if name == "CheckFailure":
        found += call.args[:2]
    return found


def untranslated_messages(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {
        t.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        arguments = []
        if isinstance(node, ast.Call):
            arguments = _message_arguments(node)
        elif isinstance(node, ast.Assert) and node.msg is not None:
            arguments = [node.msg]
        elif isinstance(node, ast.Dict):  # {bug description: buggy output}: likely_bugs tables
            arguments = [k for k in node.keys if isinstance(k, (ast.Constant, ast.JoinedStr)) and _prose(k)]
        for argument in arguments:
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}" for text in _untranslated(argument, constants)
            ]
    return found


STUDENT_FACING = sorted(
    [
        *ROOT.glob("tests/public/*.py"),
        *ROOT.glob("tests/hidden/*.py"),
        *ROOT.glob("tests/support/oracles/*.py"),
        *ROOT.glob("tests/support/*.py"),
    ]
)


@pytest.mark.parametrize("path", STUDENT_FACING, ids=lambda p: str(p.relative_to(ROOT)))
def test_student_facing_messages_go_through_the_catalogue(path):
    found = untranslated_messages(path)
    assert not found, "English text a student reads, not wrapped in _():\n" + "\n".join(found[:30])


def test_the_lint_finds_an_unwrapped_message(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'HINT = "softmax over the keys"\n'
        "def test(x):\n"
        '    check(x, f"{x}: weights are negative", HINT)\n'
        '    assert_close(x, x, what=_("fine {x}", x=f"the shape {x}"), case=_("ok"))\n'
        '    bugs = {"scores not divided by sqrt(d_k)": x, _("a translated bug"): x, "w_q.weight": x}\n',
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = untranslated_messages(sample)
    finally:
        ROOT = saved
    assert any("weights are negative" in f for f in found)
    assert any("softmax over the keys" in f for f in found)
    assert any("the shape " in f for f in found)  # a placeholder's value with words of its own
    assert any("scores not divided" in f for f in found)
    assert not any("translated bug" in f or "w_q.weight" in f or "fine" in f for f in found)


# --- choosing the language -----------------------------------------------------------------------


def test_locale_names_are_normalised():
    assert i18n.normalise("ja_JP.UTF-8") == "ja"
    assert i18n.normalise("ja") == "ja"
    assert i18n.normalise("C") == "en"
    assert i18n.normalise("en_US.UTF-8") == "en"
    assert i18n.normalise("xx_YY") is None


def test_the_locale_is_read_in_gettext_order():
    assert i18n.locale_language({"LANG": "ja_JP.UTF-8"}) == "ja"
    assert i18n.locale_language({"LANGUAGE": "ja:en", "LANG": "en_US.UTF-8"}) == "ja"
    assert i18n.locale_language({"LC_ALL": "C", "LANG": "ja_JP.UTF-8"}) == "en"  # LC_ALL wins over LANG
    assert i18n.locale_language({"LC_MESSAGES": "ja_JP.UTF-8", "LANG": "en_US.UTF-8"}) == "ja"
    assert i18n.locale_language({}) == "en"


def test_the_override_and_set_language(monkeypatch):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.setenv(i18n.OVERRIDE_VARIABLE, "ja")
    assert i18n.language() == "ja"
    assert i18n._("wrong result") == "結果が違います"
    monkeypatch.setenv(i18n.OVERRIDE_VARIABLE, "klingon")
    with pytest.raises(ValueError, match="no such language"):
        i18n.language()
    monkeypatch.delenv(i18n.OVERRIDE_VARIABLE)
    try:
        assert i18n.set_language("ja_JP.UTF-8") == "ja"
        assert i18n._("likely bug — {bug}", bug="X").startswith("バグの可能性")
    finally:
        i18n.set_language(None)
        monkeypatch.delenv(i18n.OVERRIDE_VARIABLE, raising=False)
    assert i18n._("wrong result") == "wrong result"


def test_an_edited_message_keeps_its_old_translation_as_fuzzy(tmp_path, monkeypatch):
    """`update` carries the translation of a reworded message over, marked fuzzy, and the
    check refuses it until a translator confirms it."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    monkeypatch.setattr(catalogues, "LOCALE_DIR", tmp_path)
    monkeypatch.setattr(catalogues, "ROOT", tmp_path)
    path = tmp_path / "ja" / "LC_MESSAGES" / "feedback.po"
    path.parent.mkdir(parents=True)
    old = Catalog(locale="ja", domain="feedback")
    old.add("expected shape {expected}, got shape {actual}", "期待される形状は {expected}、実際は {actual}")
    with path.open("wb") as handle:
        write_po(handle, old)
    monkeypatch.setattr(
        catalogues,
        "extract",
        lambda: {"feedback": {"expected shape {expected}, but got shape {actual}": ["tests/support/checks.py:1"]}},
    )
    catalogues.update(["ja"])
    entry = i18n.read_catalogue(path).get("expected shape {expected}, but got shape {actual}")
    assert entry.string == "期待される形状は {expected}、実際は {actual}" and entry.fuzzy
    assert any("fuzzy" in p for p in catalogues.problems(["ja"]))
