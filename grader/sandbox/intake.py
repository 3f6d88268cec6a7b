"""What of a submission is let in: only ``.py`` files of its ``transformer/`` package, copied.

A submission is a folder holding ``transformer/`` (as ``assignments/`` does), the same nested
one level deeper (``alice/transformer/``, as students zip folders), or a ``.zip`` of either.

Threats answered here, before any code runs:

* **Archive tricks.** Zip entries with absolute paths, ``..`` components or symlinks could
  write outside the unpack directory or read the judge's files later: the whole archive is
  rejected (``IntakeError``, a student-facing reason). Entry count and declared and actual
  sizes are capped (zip bombs), and only ``.py`` files are unpacked at all.
* **Files that run code on their own.** ``conftest.py`` (pytest would load it),
  ``sitecustomize.py``/``usercustomize.py`` and ``.pth`` files (Python's startup would) are
  dropped with a warning, as are top-level package modules named like a standard-library
  module or one of ``torch``, ``grader``, ``tests``, ... (they could shadow it if the folder ever
  landed on ``sys.path``).
* **Symlinks and special files** in a folder are not followed; copies are regular files in a
  fresh temporary directory owned by the judge, so later changes to the original (or an
  archive member pointing elsewhere) cannot change what is graded.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grader.contract import MODULES as CONTRACT_MODULES

MAX_PY_FILES = 200
MAX_FILE_BYTES = 1024 * 1024  # one .py file
MAX_TOTAL_BYTES = 16 * 1024 * 1024  # all copied .py files
MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_BYTES = 512 * 1024 * 1024  # declared uncompressed size of the whole archive
MAX_DEPTH = 4  # sub-folders inside transformer/
AUTO_RUN = {"conftest.py", "sitecustomize.py", "usercustomize.py"}
PROTECTED_NAMES = (
    set(sys.stdlib_module_names)
    | {"torch", "numpy", "grader", "tests", "pytest", "hypothesis", "transformer", "sacrebleu", "jsonschema"}
) - set(CONTRACT_MODULES)
IGNORED_DIRS = {"__pycache__", "__MACOSX", ".git", ".ipynb_checkpoints"}


class IntakeError(Exception):
    """The submission cannot be graded as handed in; ``str()`` tells the student why."""


@dataclass
class Submission:
    """A judge-owned copy of the submission's package, ready for the worker."""

    source: Path  # what was handed in
    root: Path  # temporary directory holding transformer/
    files: list[str] = field(default_factory=list)  # copied, relative to root
    warnings: list[str] = field(default_factory=list)

    @property
    def package_dir(self) -> Path:
        return self.root / "transformer"

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def prepare(path: Path) -> Submission:
    """Copy the submission's package into a fresh temporary directory.

    Raises:
        FileNotFoundError: ``path`` does not exist (a usage error, not the student's).
        IntakeError: the submission is unusable (no package, unsafe archive, too big).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such submission: {path}")
    root = Path(tempfile.mkdtemp(prefix="grader-intake-"))
    submission = Submission(source=path, root=root)
    try:
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise IntakeError(f"{path.name} is neither a folder nor a .zip archive")
            unpacked = root / "unpacked"
            _unzip(path, unpacked)
            _copy_package(_find_package(unpacked, submission.warnings), submission)
            shutil.rmtree(unpacked)
        else:
            _copy_package(_find_package(path, submission.warnings), submission)
    except BaseException:
        submission.cleanup()
        raise
    return submission


def _find_package(path: Path, warnings: list[str]) -> Path:
    """``path/transformer``, ``path/*/transformer`` (exactly one), or ``path`` itself if it is the package."""

    def is_real_dir(p: Path) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(p).st_mode)
        except OSError:
            return False

    direct = path / "transformer"
    if is_real_dir(direct):
        return direct
    nested = sorted(
        p / "transformer"
        for p in _listdir(path)
        if p.name not in IGNORED_DIRS
        and not p.name.startswith(".")
        and is_real_dir(p)
        and is_real_dir(p / "transformer")
    )
    if len(nested) == 1:
        return nested[0]
    if len(nested) > 1:
        raise IntakeError(
            "found several transformer/ folders ("
            + ", ".join(str(p.relative_to(path)) for p in nested)
            + "); hand in exactly one"
        )
    if any((path / f"{name}.py").is_file() for name in CONTRACT_MODULES):
        warnings.append(
            "the submission holds the package's files without the transformer/ folder around them; "
            "graded them as transformer/"
        )
        return path
    raise IntakeError(
        "no transformer/ folder found (expected transformer/attention.py etc., "
        "at the top of the submission or one folder below it)"
    )


def _listdir(path: Path) -> list[Path]:
    try:
        return [path / name for name in sorted(os.listdir(path))]
    except OSError:
        return []


def _copy_package(package: Path, submission: Submission) -> None:
    destination = submission.package_dir
    destination.mkdir(parents=True)
    total = 0
    skipped_other = 0
    for directory, subdirs, files in os.walk(package, followlinks=False):
        relative_dir = Path(directory).relative_to(package)
        depth = len(relative_dir.parts)
        subdirs[:] = sorted(
            d
            for d in subdirs
            if d not in IGNORED_DIRS
            and not d.startswith(".")
            and depth < MAX_DEPTH
            and not os.path.islink(os.path.join(directory, d))
        )
        for name in sorted(files):
            source = Path(directory) / name
            shown = f"transformer/{(relative_dir / name).as_posix()}"
            info = os.lstat(source)
            if stat.S_ISLNK(info.st_mode):
                submission.warnings.append(f"ignored {shown}: symbolic links are not followed")
                continue
            if name in AUTO_RUN or name.endswith(".pth"):
                submission.warnings.append(f"ignored {shown}: such files run code on their own")
                continue
            if not name.endswith(".py") or not stat.S_ISREG(info.st_mode):
                skipped_other += 1
                continue
            if depth == 0 and name[:-3] in PROTECTED_NAMES:
                submission.warnings.append(f"ignored {shown}: it has the name of a standard or grader module")
                continue
            if info.st_size > MAX_FILE_BYTES:
                raise IntakeError(f"{shown} is larger than {MAX_FILE_BYTES // 1024} KiB")
            if len(submission.files) >= MAX_PY_FILES:
                raise IntakeError(f"more than {MAX_PY_FILES} Python files in transformer/")
            total += info.st_size
            if total > MAX_TOTAL_BYTES:
                raise IntakeError(f"the Python files add up to more than {MAX_TOTAL_BYTES // 2**20} MiB")
            target = destination / relative_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(source, "rb") as src, open(target, "wb") as dst:
                data = src.read(MAX_FILE_BYTES + 1)
                if len(data) > MAX_FILE_BYTES:
                    raise IntakeError(f"{shown} is larger than {MAX_FILE_BYTES // 1024} KiB")
                dst.write(data)
            submission.files.append(shown)
    if skipped_other:
        submission.warnings.append(f"ignored {skipped_other} file(s) in transformer/ that are not Python source")
    if not submission.files:
        raise IntakeError("transformer/ holds no Python files")
    if not (destination / "__init__.py").exists():
        (destination / "__init__.py").write_text("")
        submission.warnings.append("transformer/__init__.py was missing; graded as if it were empty")


def _unzip(archive: Path, destination: Path) -> None:
    """Check every entry first, then unpack only the ``.py`` files (size-capped)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = zf.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise IntakeError(f"the archive has more than {MAX_ZIP_ENTRIES} entries")
            if sum(e.file_size for e in entries) > MAX_ZIP_BYTES:
                raise IntakeError(f"the archive unpacks to more than {MAX_ZIP_BYTES // 2**20} MiB")
            safe = []
            for entry in entries:
                name = entry.filename
                if "\x00" in name:
                    raise IntakeError("rejected the archive: an entry name contains a NUL byte")
                posix = PurePosixPath(name.replace("\\", "/"))
                if name.startswith(("/", "\\")) or posix.is_absolute() or (posix.parts and ":" in posix.parts[0]):
                    raise IntakeError(f"rejected the archive: entry {name!r:.80} has an absolute path")
                if ".." in posix.parts:
                    raise IntakeError(f"rejected the archive: entry {name!r:.80} points outside the archive (..)")
                if stat.S_ISLNK(entry.external_attr >> 16):
                    raise IntakeError(f"rejected the archive: entry {name!r:.80} is a symbolic link")
                if not entry.is_dir() and posix.suffix == ".py" and not set(posix.parts) & IGNORED_DIRS:
                    safe.append((entry, posix))
            for entry, posix in safe:
                target = destination.joinpath(*posix.parts)
                if destination.resolve() not in target.resolve().parents:
                    raise IntakeError(f"rejected the archive: entry {entry.filename!r:.80} points outside the archive")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(entry) as src, open(target, "wb") as dst:
                    data = src.read(MAX_FILE_BYTES + 1)
                    if len(data) > MAX_FILE_BYTES:
                        raise IntakeError(f"{entry.filename!r:.80} is larger than {MAX_FILE_BYTES // 1024} KiB")
                    dst.write(data)
            destination.mkdir(parents=True, exist_ok=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as error:
        raise IntakeError(f"the archive could not be read: {error}") from None
