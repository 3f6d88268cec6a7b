"""Messages in the student's language, from gettext catalogues.

Every text a student reads is written in English in the code, wrapped in ``_()``, and
translated through the catalogues under ``grader/locale/<lang>/LC_MESSAGES/<domain>.po``
(Babel reads them; ``python -m builders.catalogues update`` extracts new messages into them,
``... check`` fails when one has no translation or its placeholders differ). A third
language is one more folder of ``.po`` files, not a code change.

Placeholders are named and in ``str.format`` style, so a translation may reorder them::

    _("expected shape {expected}, got shape {actual}", expected=..., actual=...)

The language: ``set_language()`` (the grader's ``--lang`` / ``course.toml``), else the
``COURSE_LANGUAGE`` environment variable, else the locale as gettext reads it
(``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``; ``ja_JP.UTF-8`` means Japanese).
English is the source language and the fallback for anything not translated.
"""

from __future__ import annotations

import gettext
import io
import os
from functools import cache
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
SOURCE_LANGUAGE = "en"
OVERRIDE_VARIABLE = "COURSE_LANGUAGE"
# Docstrings of the stubs are translated into a hand-out, not looked up at run time.
HANDOUT_DOMAINS = frozenset({"stubs"})

_chosen: str | None = None


def available_languages() -> list[str]:
    """English plus every language with a catalogue folder."""
    found = sorted(p.name for p in LOCALE_DIR.iterdir() if (p / "LC_MESSAGES").is_dir()) if LOCALE_DIR.is_dir() else []
    return [SOURCE_LANGUAGE] + [lang for lang in found if lang != SOURCE_LANGUAGE]


def normalise(value: str | None) -> str | None:
    """``ja_JP.UTF-8`` -> ``ja``; ``C``/``POSIX`` -> ``en``; unknown languages -> None."""
    if not value:
        return None
    code = value.split(".")[0].split("@")[0].replace("-", "_").strip()
    if code in ("C", "POSIX"):
        return SOURCE_LANGUAGE
    base = code.split("_")[0].lower()
    return base if base in available_languages() else None


def locale_language(environ=os.environ) -> str:
    """The language gettext would pick from the environment (first known one wins)."""
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(variable)
        if value:
            for candidate in value.split(":"):
                language = normalise(candidate)
                if language:
                    return language
            if variable != "LANGUAGE":  # gettext stops at the first variable that is set
                break
    return SOURCE_LANGUAGE


def language() -> str:
    if _chosen:
        return _chosen
    override = os.environ.get(OVERRIDE_VARIABLE)
    if override:
        chosen = normalise(override)
        if chosen is None:
            raise ValueError(
                f"{OVERRIDE_VARIABLE}={override}: no such language (known: {', '.join(available_languages())})"
            )
        return chosen
    return locale_language()


def set_language(value: str | None) -> str:
    """Fix the language for this process (None: back to the environment's); returns it."""
    global _chosen
    if value is None:
        _chosen = None
        return language()
    chosen = normalise(value)
    if chosen is None:
        raise ValueError(f"no such language: {value!r} (known: {', '.join(available_languages())})")
    _chosen = chosen
    os.environ[OVERRIDE_VARIABLE] = chosen  # so that child processes (pytest in a subprocess) follow
    return chosen


def catalogue_files(lang: str, *, handout: bool = False) -> list[Path]:
    folder = LOCALE_DIR / lang / "LC_MESSAGES"
    files = sorted(folder.glob("*.po")) if folder.is_dir() else []
    return [f for f in files if (f.stem in HANDOUT_DOMAINS) == handout]


def read_catalogue(path: Path):
    from babel.messages.pofile import read_po

    with path.open("rb") as handle:
        return read_po(handle, locale=path.parent.parent.name, domain=path.stem)


@cache
def translations(lang: str, domains: tuple[str, ...] | None = None) -> gettext.NullTranslations:
    """The run-time catalogues of ``lang`` merged into one ``GNUTranslations`` (compiled in
    memory by Babel, so no compiled ``.mo`` file is kept in the repository)."""
    if lang == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    from babel.messages.catalog import Catalog
    from babel.messages.mofile import write_mo

    merged = Catalog(locale=lang, domain="course")
    for path in catalogue_files(lang, handout=domains is not None and bool(set(domains) & HANDOUT_DOMAINS)):
        if domains is not None and path.stem not in domains:
            continue
        for message in read_catalogue(path):
            if message.id and message.string and not message.fuzzy:
                merged[message.id] = message
    buffer = io.BytesIO()
    write_mo(buffer, merged)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def translate(message: str, lang: str | None = None) -> str:
    return translations(lang or language()).gettext(message)


def _(message: str, /, **fields) -> str:
    """The translation of ``message`` in the current language, formatted with ``fields``."""
    text = translate(message)
    return text.format(**fields) if fields else text


def N_(message: str, /) -> str:
    """Marks a message for extraction without translating it now (translate it with ``_``
    where it is shown: module constants built before the language is known)."""
    return message


def in_language(lang: str, message: str, /, **fields) -> str:
    """``message`` in ``lang`` regardless of the current language (reports, tests)."""
    text = translate(message, normalise(lang) or SOURCE_LANGUAGE)
    return text.format(**fields) if fields else text
