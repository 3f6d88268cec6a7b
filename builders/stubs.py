"""Generate the student stubs in ``assignments/`` from the reference in ``solutions/``.

``solutions/transformer/*.py`` is the single source of truth. Inside it, every piece of
code a student must write sits between two marker comments::

    # BEGIN SOLUTION: <hint for the student>
    ...reference code...
    # END SOLUTION

A stub keeps everything outside the markers (imports, signatures, docstrings) and replaces
each marked block by the hint and a ``NotImplementedError`` at the same indentation::

    # TODO: <hint for the student>
    raise NotImplementedError("<module>.<function>: <hint for the student>")

Stubs in another language (a hand-out, e.g. the Japanese student release): the docstrings,
the hints (in the ``TODO`` comment and the ``NotImplementedError`` message) and the notice at
the top of each file are replaced by their translations from the gettext catalogue
``grader/locale/<lang>/LC_MESSAGES/stubs.po``; the code is byte-identical to the English
stubs. ``catalogue_messages()`` lists these texts (``python -m builders.catalogues update
--domain stubs`` writes them into the catalogue). A text without a translation is an error,
never an English fallback. ``assignments/`` always holds the English stubs.

Usage:
    python -m builders.stubs                        # (re)write assignments/transformer/
    python -m builders.stubs --check                # exit 1 if assignments/ is out of date
    python -m builders.stubs --lang ja --out DIR    # write DIR/transformer/ in Japanese
    python -m builders.stubs --lang ja --check      # exit 1 if a text has no Japanese translation
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path

from grader.i18n import LOCALE_DIR, SOURCE_LANGUAGE, read_catalogue

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions" / "transformer"
ASSIGNMENTS = ROOT / "assignments" / "transformer"
DOMAIN = "stubs"

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?::\s*(?P<hint>.*))?$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
DEFAULT_HINT = "your code here"
LINE_LENGTH = 120  # pyproject.toml [tool.ruff] line-length: the stubs are formatted as ruff would
GENERATED_NOTICE = (
    "# This file is yours to complete: replace each `raise NotImplementedError` with your code.\n"
    "# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)\n"
)


class MarkerError(ValueError):
    """A solution file whose BEGIN/END SOLUTION markers do not pair up."""


class TranslationError(ValueError):
    """Stubs in another language cannot be generated: a text has no translation, or a
    translation cannot be put in place of the English text."""


def _enclosing_names(source: str) -> dict[int, str]:
    """Map each line number to the dotted name of the innermost function around it."""
    names: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                        names[line] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return names


def make_stub(source: str, module: str, translate: Callable[[str], str] | None = None) -> str:
    """Return the stub version of one solution module's source.

    ``translate`` (msgid -> translated text) gives the stub in another language: every text
    ``catalogue_messages`` lists is replaced by its translation (see ``translate_source``).
    """
    if translate is not None:
        source = translate_source(source, module, translate)
    names = _enclosing_names(source)
    out: list[str] = []
    block_start = None
    for number, line in enumerate(source.splitlines(), start=1):
        begin = BEGIN.match(line)
        if begin:
            if block_start is not None:
                raise MarkerError(f"{module}:{number}: BEGIN SOLUTION inside another block")
            block_start = number
            indent, hint = begin["indent"], (begin["hint"] or DEFAULT_HINT).strip()
            where = names.get(number, module)
            out.append(f"{indent}# TODO: {hint}")
            out.extend(_raise_line(indent, f"{module}.{where}: {hint}"))
        elif END.match(line):
            if block_start is None:
                raise MarkerError(f"{module}:{number}: END SOLUTION without BEGIN")
            block_start = None
        elif block_start is None:
            out.append(line)
    if block_start is not None:
        raise MarkerError(f"{module}:{block_start}: BEGIN SOLUTION is never closed")
    stub = "\n".join(out) + "\n"
    ast.parse(stub)  # a stub must at least be valid Python
    if any(BEGIN.match(line) for line in source.splitlines()):
        stub = (GENERATED_NOTICE if translate is None else _comment(translate(notice_message()))) + stub
    return stub


# -- the translatable texts --------------------------------------------------------------------


def notice_message() -> str:
    """The notice at the top of every stub, as a catalogue message (without the ``# ``)."""
    return "\n".join(line.removeprefix("#").strip() for line in GENERATED_NOTICE.splitlines())


def _comment(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def _solution_lines(source: str) -> set[int]:
    """Line numbers inside BEGIN/END SOLUTION blocks, markers included (they vanish from a stub)."""
    inside, lines = False, set()
    for number, line in enumerate(source.splitlines(), start=1):
        if BEGIN.match(line):
            inside = True
        if inside:
            lines.add(number)
        if END.match(line):
            inside = False
    return lines


def _docstring_nodes(tree: ast.Module, source: str) -> list[ast.Constant]:
    """The docstring literals of the module and of every class and function that a stub keeps
    (a helper defined inside a solution block goes with it), in source order."""
    hidden = _solution_lines(source)
    found = []
    for node in [tree, *ast.walk(tree)]:
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
            and body[0].value.lineno not in hidden
        ):
            found.append(body[0].value)
    return sorted({id(n): n for n in found}.values(), key=lambda n: (n.lineno, n.col_offset))


def _hints(source: str) -> list[tuple[int, str]]:
    """``(line, hint)`` for every BEGIN SOLUTION marker."""
    return [
        (number, (begin["hint"] or DEFAULT_HINT).strip())
        for number, line in enumerate(source.splitlines(), start=1)
        if (begin := BEGIN.match(line))
    ]


def module_messages(source: str, rel: str) -> dict[str, list[str]]:
    """``{msgid: ["rel:line", ...]}``: one solution module's docstrings (cleaned, as
    ``ast.get_docstring`` returns them) and BEGIN SOLUTION hints."""
    messages: dict[str, list[str]] = {}
    for node in _docstring_nodes(ast.parse(source), source):
        text = inspect.cleandoc(node.value)
        if text:
            messages.setdefault(text, []).append(f"{rel}:{node.lineno}")
    for number, hint in _hints(source):
        messages.setdefault(hint, []).append(f"{rel}:{number}")
    return dict(sorted(messages.items(), key=lambda item: int(item[1][0].rsplit(":", 1)[1])))


def catalogue_messages(solutions: Path = SOLUTIONS) -> dict[str, list[str]]:
    """Every translatable text of the stubs, ``{msgid: ["solutions/transformer/x.py:LINE", ...]}``:
    the generated notice, then each module's docstrings and hints in source order."""
    notice_line = next(
        number
        for number, line in enumerate(Path(__file__).read_text(encoding="utf-8").splitlines(), 1)
        if line.startswith("GENERATED_NOTICE =")
    )
    messages: dict[str, list[str]] = {notice_message(): [f"builders/stubs.py:{notice_line + 1}"]}
    for path in sorted(solutions.glob("*.py")):
        try:
            rel = path.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            rel = path.name
        for msgid, places in module_messages(path.read_text(encoding="utf-8"), rel).items():
            messages.setdefault(msgid, []).extend(places)
    return messages


# -- stubs in another language -----------------------------------------------------------------


def _line_offsets(source: str) -> list[int]:
    """Character offset of the start of each line (index 0 is line 1)."""
    offsets, total = [], 0
    for line in source.splitlines(keepends=True):
        offsets.append(total)
        total += len(line)
    offsets.append(total)
    return offsets


def _char_offset(source_lines: list[str], offsets: list[int], lineno: int, col_bytes: int) -> int:
    """AST positions count UTF-8 bytes within a line; this is the character offset in the source."""
    line = source_lines[lineno - 1]
    return offsets[lineno - 1] + len(line.encode("utf-8")[:col_bytes].decode("utf-8"))


def _render_docstring(original: str, indent: str, text: str) -> str:
    """A docstring literal holding ``text``, laid out like ``original`` (the English literal):
    the same opening (text right after the quotes, or on the next line) and closing (quotes
    after the last line, or on a line of their own)."""
    match = re.fullmatch(r'(?s)[uU]?(?P<quote>"""|\'\'\')(?P<body>.*)(?P=quote)', original)
    if not match:
        raise TranslationError(f"a docstring that is not a plain triple-quoted string: {original[:60]!r}")
    quote, body = match["quote"], match["body"]
    text = text.replace("\\", "\\\\").replace(quote, "\\" + quote)
    lines = text.strip("\n").splitlines() or [""]
    rendered = [lines[0].rstrip()] + [f"{indent}{line}".rstrip() if line.strip() else "" for line in lines[1:]]
    opening = f"\n{indent}" if body.startswith("\n") else ""
    closing = f"\n{indent}" if re.search(r"\n[ \t]*$", body) else ""
    if not closing and rendered[-1].endswith(quote[0]):  # `..."` then `"""` would end the literal early
        rendered[-1] = rendered[-1][:-1] + "\\" + quote[0]
    return f"{quote}{opening}" + "\n".join(rendered) + f"{closing}{quote}"


def _raise_line(indent: str, message: str) -> list[str]:
    """``raise NotImplementedError("message")`` as ``ruff format`` writes it: double quotes, and
    the message on a line of its own when the call does not fit in 120 characters."""
    literal = f'"{message}"' if '"' not in message and "\\" not in message else repr(message)
    line = f"{indent}raise NotImplementedError({literal})"
    if len(line) <= LINE_LENGTH:
        return [line]
    return [f"{indent}raise NotImplementedError(", f"{indent}    {literal}", f"{indent})"]


def translate_source(source: str, module: str, translate: Callable[[str], str]) -> str:
    """``source`` with its docstrings and BEGIN SOLUTION hints replaced by their translations
    (``translate``: msgid -> text). Everything else is kept byte for byte."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    offsets = _line_offsets(source)
    pieces, position, expected = [], 0, []
    for node in _docstring_nodes(tree, source):
        msgid = inspect.cleandoc(node.value)
        if not msgid:
            continue
        start = _char_offset(lines, offsets, node.lineno, node.col_offset)
        end = _char_offset(lines, offsets, node.end_lineno, node.end_col_offset)
        indent = re.match(r"[ \t]*", lines[node.lineno - 1])[0]
        text = translate(msgid)
        pieces += [source[position:start], _render_docstring(source[start:end], indent, text)]
        position = end
        expected.append(_plain(text))
    translated = "".join(pieces) + source[position:]

    out = []
    for _number, line in enumerate(translated.splitlines(keepends=True), start=1):
        begin = BEGIN.match(line.rstrip("\r\n"))
        if begin:
            hint = " ".join(translate((begin["hint"] or DEFAULT_HINT).strip()).split())
            line = f"{begin['indent']}# BEGIN SOLUTION: {hint}" + line[len(line.rstrip("\r\n")) :]
        out.append(line)
    translated = "".join(out)

    try:
        new_tree = ast.parse(translated)
    except SyntaxError as error:
        raise TranslationError(f"{module}: the translated source is not valid Python ({error})") from None
    got = [_plain(node.value) for node in _docstring_nodes(new_tree, translated)]
    if got != expected or _without_texts(new_tree) != _without_texts(tree):
        raise TranslationError(f"{module}: putting the translations in changed more than the docstrings")
    return translated


def _plain(text: str) -> str:
    """A docstring's text as it reads, whatever its indentation and trailing blanks."""
    return "\n".join(line.rstrip() for line in inspect.cleandoc(text).splitlines()).strip()


def _without_texts(tree: ast.AST) -> str:
    """The AST dump with every docstring emptied (the code a translation must not change)."""
    tree = ast.parse(ast.unparse(tree))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                body[0].value.value = ""
    return ast.dump(tree, include_attributes=False)


def catalogue_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def load_translations(lang: str) -> dict[str, str]:
    """``{msgid: translation}`` from the ``stubs`` catalogue of ``lang`` (empty and fuzzy
    entries left out: they count as missing)."""
    path = catalogue_path(lang)
    if not path.is_file():
        raise TranslationError(
            f"no catalogue {path} for language {lang!r} "
            f"(create it with `python -m builders.catalogues update --lang {lang} --domain {DOMAIN}`)"
        )
    catalogue = read_catalogue(path)
    return {m.id: m.string for m in catalogue if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}


def _short(msgid: str) -> str:
    first = msgid.splitlines()[0] if msgid else msgid
    return repr(first if first == msgid else first + " …")


def missing_translations(
    lang: str, solutions: Path = SOLUTIONS, translations: dict[str, str] | None = None
) -> list[str]:
    """``"where: 'msgid'"`` for every text of the stubs that ``lang`` does not translate."""
    translations = load_translations(lang) if translations is None else translations
    return [
        f"{places[0]}: {_short(msgid)}"
        for msgid, places in catalogue_messages(solutions).items()
        if not translations.get(msgid)
    ]


def expected_stubs(
    solutions: Path = SOLUTIONS, lang: str = SOURCE_LANGUAGE, translations: dict[str, str] | None = None
) -> dict[str, str]:
    """File name -> stub text, for every module of the reference package, in ``lang``
    (``translations``: msgid -> text, default: ``lang``'s catalogue). Raises
    ``TranslationError`` naming every text ``lang`` does not translate."""
    translate = None
    if lang != SOURCE_LANGUAGE or translations is not None:
        translations = load_translations(lang) if translations is None else translations
        missing = missing_translations(lang, solutions, translations)
        if missing:
            catalogue = catalogue_path(lang)
            shown = catalogue.relative_to(ROOT) if catalogue.is_relative_to(ROOT) else catalogue
            raise TranslationError(
                f"{len(missing)} texts of the stubs have no {lang!r} translation in {shown} "
                "(run `python -m builders.catalogues update --domain stubs` and fill them in):\n  - "
                + "\n  - ".join(missing)
            )
        translate = translations.__getitem__
    return {
        path.name: make_stub(path.read_text(encoding="utf-8"), path.stem, translate)
        for path in sorted(solutions.glob("*.py"))
    }


def stale_stubs(solutions: Path = SOLUTIONS, assignments: Path = ASSIGNMENTS) -> list[str]:
    """Names of the stub files that are missing, differ from the generated text, or are extra."""
    expected = expected_stubs(solutions)
    stale = [
        name
        for name, text in expected.items()
        if not (assignments / name).exists() or (assignments / name).read_text(encoding="utf-8") != text
    ]
    stale += sorted(p.name for p in assignments.glob("*.py") if p.name not in expected)
    return stale


def write_stubs(
    solutions: Path = SOLUTIONS,
    assignments: Path = ASSIGNMENTS,
    lang: str = SOURCE_LANGUAGE,
    translations: dict[str, str] | None = None,
) -> list[str]:
    """Write the stubs in ``lang`` to ``assignments`` (nothing is written when a translation
    is missing); returns the file names."""
    expected = expected_stubs(solutions, lang, translations)
    assignments.mkdir(parents=True, exist_ok=True)
    for path in assignments.glob("*.py"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (assignments / name).write_text(text, encoding="utf-8")
    return sorted(expected)


def main(argv: list[str] | None = None) -> int:
    from grader.cli import HelpFormatter, add_version

    parser = argparse.ArgumentParser(
        prog="python -m builders.stubs", description=__doc__, formatter_class=HelpFormatter
    )
    add_version(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that assignments/ is up to date (with --lang: that every text is translated)",
    )
    parser.add_argument(
        "--lang",
        default=SOURCE_LANGUAGE,
        help="language of the docstrings and hints (default: en; another needs --out or --check)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write OUT/transformer/*.py instead of assignments/ (required with --lang other than en)",
    )
    args = parser.parse_args(argv)
    if args.lang == SOURCE_LANGUAGE and args.out is None:
        if args.check:
            stale = stale_stubs()
            if stale:
                print(f"assignments/ is out of date with solutions/: {', '.join(stale)}. Run `make stubs`.")
                return 1
            print("assignments/ is up to date with solutions/")
            return 0
        written = write_stubs()
        print(f"wrote {len(written)} stub files to {ASSIGNMENTS.relative_to(ROOT)}/")
        return 0
    if args.check:
        try:
            expected_stubs(lang=args.lang)
        except TranslationError as error:
            print(f"stubs: {error}", file=sys.stderr)
            return 1
        print(f"every text of the stubs has a {args.lang!r} translation")
        return 0
    if args.out is None:
        parser.error(f"--lang {args.lang} needs --out DIR (assignments/ holds the English stubs)")
    target = args.out / "transformer"
    try:
        written = write_stubs(assignments=target, lang=args.lang)
    except TranslationError as error:
        print(f"stubs: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} stub files ({args.lang}) to {target}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
