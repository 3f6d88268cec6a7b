"""Maintain the translation catalogues (a maintainer's tool; see ``grader/i18n.py``).

    python -m builders.catalogues update   extract every ``_()`` message into the .po files of
                                           every language (new ones untranslated, or fuzzy with the
                                           translation of the message they replace; gone ones dropped)
    python -m builders.catalogues check    exit 1 when a message has no translation, a translation
                                           is fuzzy, its placeholders differ, or a .po is stale

Messages are extracted with Babel from the code, one domain per area: a part's tests and
oracles (``attention``, ``masks``, ...), the test harness (``feedback``), the grader
(``grader``) and the stubs' docstrings (``stubs``, built by ``builders.stubs``).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import string
import sys
from pathlib import Path

from grader.contract import MODULES
from grader.i18n import LOCALE_DIR, SOURCE_LANGUAGE, available_languages, read_catalogue

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "N_": None, "in_language": (2,)}
PARTS = MODULES  # the parts with a module (and a catalogue) of their own


def domain_of(rel: str) -> str | None:
    """The catalogue a source file's messages belong to (None: it has no student-facing text)."""
    path = Path(rel)
    if rel.startswith(("tests/public/", "tests/hidden/")):
        return path.stem.removeprefix("test_").removesuffix("_hidden")
    if rel.startswith("tests/support/oracles/") and path.stem in PARTS:
        return path.stem
    if rel.startswith("tests/support/") or rel == "tests/conftest.py":
        return "feedback"
    # The builders' texts (the README's generated parts) are looked up like the grader's own.
    if rel.startswith(("grader/", "builders/")) and not rel.startswith("grader/locale/"):
        return "grader"
    return None


def source_files() -> list[Path]:
    files = [
        *ROOT.glob("tests/public/*.py"),
        *ROOT.glob("tests/hidden/*.py"),
        *ROOT.glob("tests/support/**/*.py"),
        ROOT / "tests/conftest.py",
        *ROOT.glob("grader/**/*.py"),
        *ROOT.glob("builders/*.py"),
    ]
    return sorted(f for f in files if f.is_file())


def extract() -> dict[str, dict[str, list[str]]]:
    """``{domain: {msgid: [file:line, ...]}}`` for every message in the code."""
    from babel.messages.extract import extract_from_file

    domains: dict[str, dict[str, list[str]]] = {}
    for path in source_files():
        rel = path.relative_to(ROOT).as_posix()
        domain = domain_of(rel)
        if domain is None:
            continue
        # Babel warns about every f-string passed as a *value* (`_("{x}", x=f"...")`), which is fine.
        with contextlib.redirect_stderr(io.StringIO()):
            found = list(
                extract_from_file("python", str(path), keywords=KEYWORDS, comment_tags=(), strip_comment_tags=True)
            )
        for lineno, message, _comments, _context in found:
            if isinstance(message, tuple):
                message = message[0]
            if message:
                domains.setdefault(domain, {}).setdefault(message, []).append(f"{rel}:{lineno}")
    for domain, messages in extra_domains().items():
        for message, places in messages.items():
            domains.setdefault(domain, {}).setdefault(message, []).extend(places)
    return domains


def extra_domains() -> dict[str, dict[str, list[str]]]:
    """Messages that are not ``_()`` calls: the stubs' docstrings and the rubric's part titles
    (shown in report.md and the README)."""
    import tomllib

    from builders.stubs import catalogue_messages

    text = (ROOT / "grader" / "rubric.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    titles = {}
    for spec in tomllib.loads(text)["parts"].values():
        if spec.get("title"):
            line = next((n for n, x in enumerate(lines, 1) if x.startswith("title") and spec["title"] in x), 1)
            titles[spec["title"]] = [f"grader/rubric.toml:{line}"]
    return {"stubs": catalogue_messages(), "grader": titles}


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a ``str.format`` template (empty for text with no fields)."""
    try:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError:
        return {"<unbalanced braces>"}


def po_path(lang: str, domain: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"


def update(langs: list[str], only: list[str] | None = None) -> None:
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    extracted = extract()
    for lang in langs:
        for domain, messages in sorted(extracted.items()):
            if only and domain not in only:
                continue
            path = po_path(lang, domain)
            old = read_catalogue(path) if path.exists() else None
            # The header keeps its dates, so an update changes only the messages.
            dates = {"creation_date": old.creation_date, "revision_date": old.revision_date} if old else {}
            catalogue = Catalog(
                locale=lang,
                domain=domain,
                project="transformer-assignment",
                version="1",
                copyright_holder="the course staff",
                msgid_bugs_address="the course staff",
                last_translator="the course staff",
                language_team="the course staff",
                fuzzy=False,
                **dates,
            )
            gone = {m.id: m for m in old if m.id and m.string and m.id not in messages} if old is not None else {}
            for msgid, places in messages.items():
                previous = old.get(msgid) if old is not None else None
                flags = set(previous.flags) if previous else set()
                string = previous.string if previous else ""
                if not string and gone:
                    # An edited message keeps its old translation, marked fuzzy until a
                    # translator checks it (as `msgmerge` and `pybabel update` do).
                    close = difflib.get_close_matches(msgid, list(gone), n=1, cutoff=0.6)
                    if close:
                        string, flags = gone[close[0]].string, flags | {"fuzzy"}
                catalogue.add(
                    msgid,
                    string,
                    locations=[(p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1])) for p in places],
                    flags=flags,
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as handle:
                write_po(handle, catalogue, width=100, sort_output=False, include_previous=False, omit_header=False)
            print(f"{path.relative_to(ROOT)}: {len(messages)} messages")


def problems(langs: list[str] | None = None) -> list[str]:
    """Everything that keeps the catalogues from being complete and current."""
    extracted = extract()
    found = []
    for lang in langs or [lang for lang in available_languages() if lang != SOURCE_LANGUAGE]:
        for domain, messages in sorted(extracted.items()):
            path = po_path(lang, domain)
            if not path.exists():
                found.append(f"{lang}: no catalogue {path.relative_to(ROOT)} ({len(messages)} messages)")
                continue
            catalogue = read_catalogue(path)
            for msgid, places in messages.items():
                entry = catalogue.get(msgid)
                if entry is None or not entry.string:
                    found.append(f"{lang}/{domain}: no translation for {msgid!r} ({places[0]})")
                elif entry.fuzzy:
                    found.append(f"{lang}/{domain}: fuzzy translation for {msgid!r} ({places[0]})")
                elif placeholders(msgid) != placeholders(entry.string):
                    found.append(
                        f"{lang}/{domain}: placeholders differ for {msgid!r}: "
                        f"{sorted(placeholders(msgid))} vs {sorted(placeholders(entry.string))} ({places[0]})"
                    )
            stale = [m.id for m in catalogue if m.id and m.id not in messages]
            for msgid in stale:
                found.append(
                    f"{lang}/{domain}: {msgid!r} is no longer in the code (run `python -m builders.catalogues update`)"
                )
        found += conflicts(lang)
        domains = set(extracted)
        folder = LOCALE_DIR / lang / "LC_MESSAGES"
        for path in sorted(folder.glob("*.po")) if folder.is_dir() else []:
            if path.stem not in domains:
                found.append(f"{lang}: {path.relative_to(ROOT)} belongs to no domain in the code")
    return found


def conflicts(lang: str) -> list[str]:
    """The run-time domains are merged into one lookup: one message, one translation."""
    from grader.i18n import catalogue_files

    seen: dict[str, tuple[str, str]] = {}
    found = []
    for path in catalogue_files(lang):
        for message in read_catalogue(path):
            if not message.id or not message.string:
                continue
            first = seen.setdefault(message.id, (path.stem, message.string))
            if first[1] != message.string:
                found.append(
                    f"{lang}: {message.id!r} is translated differently in {first[0]}.po "
                    f"({first[1]!r}) and {path.stem}.po ({message.string!r})"
                )
    return found


def main(argv=None) -> int:
    from grader.cli import HelpFormatter, add_version

    parser = argparse.ArgumentParser(
        prog="python -m builders.catalogues", description=__doc__, formatter_class=HelpFormatter
    )
    add_version(parser)
    parser.add_argument(
        "command",
        choices=("update", "check"),
        help="update: extract every _() message into the .po files; check: exit 1 when a message lacks a translation",
    )
    parser.add_argument("--lang", action="append", help="only this language (repeatable)")
    parser.add_argument("--domain", action="append", help="update: only this domain (repeatable)")
    args = parser.parse_args(argv)
    langs = args.lang or [lang for lang in available_languages() if lang != SOURCE_LANGUAGE]
    if args.command == "update":
        update(langs, args.domain)
        return 0
    found = problems(langs)
    for line in found:
        print(line)
    print(f"{len(found)} problems in the catalogues of {', '.join(langs)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
