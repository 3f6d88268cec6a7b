"""The small_parallel_enja corpus (50,000 training pairs, 500 dev, 500 test; English lower-cased
and tokenised, Japanese tokenised with KyTea), from the public repository odashi/small_parallel_enja.

Where the files come from, in this order:

1. ``--data-dir DIR`` when given (and nothing else: a wrong directory is an error);
2. the cache folder ``~/.cache/transformer-assignment/small_parallel_enja`` (or
   ``$TRANSFORMER_ASSIGNMENT_CACHE/small_parallel_enja``);
3. a copy beside the repository, ``../shared/data/small_parallel_enja`` (the course machines);
4. a download, once, of the six files from the repository's pinned commit into the cache.

Every file's line count is checked (50,000 / 500 / 500); when no source works, ``EnjaDataError``
says what was tried and how to fix it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

COMMIT = "312408a11c5fbcbc09443bebb18121f7efdcd61e"
BASE_URL = f"https://raw.githubusercontent.com/odashi/small_parallel_enja/{COMMIT}/"
SPLITS = {"train": 50000, "dev": 500, "test": 500}
FILES = tuple(f"{split}.{lang}" for split in SPLITS for lang in ("en", "ja"))
EXPECTED_LINES = {f"{split}.{lang}": n for split, n in SPLITS.items() for lang in ("en", "ja")}
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_COPY = REPO_ROOT.parent / "shared" / "data" / "small_parallel_enja"


class EnjaDataError(RuntimeError):
    """small_parallel_enja could not be found, downloaded or verified."""


@dataclass(frozen=True)
class ParallelCorpus:
    """Same fields as ``grader.data.synthetic.Corpus``; ``valid`` is the dev split and there is
    no length split."""

    train: list
    valid: list
    test: list
    length: list = field(default_factory=list)
    source: str = ""


def cache_dir() -> Path:
    base = os.environ.get("TRANSFORMER_ASSIGNMENT_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "transformer-assignment"
    return root / "small_parallel_enja"


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def verify(directory: Path) -> list[str]:
    """Problems with the files in ``directory`` (empty list: all six present, right line counts)."""
    problems = []
    for name in FILES:
        path = Path(directory) / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        n = _count_lines(path)
        if n != EXPECTED_LINES[name]:
            problems.append(f"{name} has {n} lines, expected {EXPECTED_LINES[name]}")
    return problems


def download(target: Path, base_url: str = BASE_URL, timeout: float = 30.0) -> Path:
    """Fetch the six files into ``target`` (atomically: a half-finished download leaves nothing)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        for name in FILES:
            url = base_url.rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(staging / name, "wb") as out:
                    shutil.copyfileobj(response, out)
            except (urllib.error.URLError, OSError, ValueError) as error:
                reason = getattr(error, "reason", error)
                raise EnjaDataError(
                    f"could not download small_parallel_enja: {url}: {reason}.\n"
                    f"Without internet access, put the six files ({', '.join(FILES)}) of "
                    f"https://github.com/odashi/small_parallel_enja (commit {COMMIT[:12]}) into "
                    f"{target} yourself, or pass --data-dir DIR pointing at a folder that holds them."
                ) from error
        problems = verify(staging)
        if problems:
            raise EnjaDataError(f"the downloaded small_parallel_enja is not the expected one: {'; '.join(problems)}")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def locate(data_dir: str | os.PathLike | None = None, *, allow_download: bool = True, base_url: str = BASE_URL) -> Path:
    """The directory holding verified small_parallel_enja files (see the module docstring)."""
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        problems = verify(data_dir)
        if problems:
            raise EnjaDataError(f"--data-dir {data_dir} does not hold small_parallel_enja: {'; '.join(problems)}")
        return data_dir
    tried = []
    for candidate in (cache_dir(), SHARED_COPY):
        problems = verify(candidate)
        if not problems:
            return candidate
        tried.append(f"{candidate}: {problems[0]}")
    if not allow_download:
        raise EnjaDataError("small_parallel_enja not found (" + "; ".join(tried) + "); pass --data-dir DIR")
    try:
        return download(cache_dir(), base_url=base_url)
    except EnjaDataError as error:
        raise EnjaDataError(f"{error}\n(also looked in: {'; '.join(tried)})") from error


def _read_pairs(directory: Path, split: str) -> list[tuple[str, str]]:
    with (
        open(directory / f"{split}.en", encoding="utf-8") as f_en,
        open(directory / f"{split}.ja", encoding="utf-8") as f_ja,
    ):
        return [(" ".join(en.split()), " ".join(ja.split())) for en, ja in zip(f_en, f_ja)]


def load_enja(
    data_dir: str | os.PathLike | None = None, *, allow_download: bool = True, base_url: str = BASE_URL
) -> ParallelCorpus:
    directory = locate(data_dir, allow_download=allow_download, base_url=base_url)
    return ParallelCorpus(
        train=_read_pairs(directory, "train"),
        valid=_read_pairs(directory, "dev"),
        test=_read_pairs(directory, "test"),
        length=[],
        source=str(directory),
    )
