"""The built-in English->Japanese task as students get it: the corpus without its test split.

The grader's copy generates the corpus with the grammar (``grader.data.synthetic``, which
stays on the grading side: it holds the translator of the grammar and the generator of the
held-out test sentences). The student hand-out ships instead the generated ``train``,
``valid`` and ``length`` splits as tab-separated files in ``grader/data/synthetic_data/``
(written by ``write_public_splits`` when the hand-out is built), and no test split: the
held-out test sentences and their translations exist only where grading happens.

``load_synthetic()`` gives the full corpus where the generator is present and the shipped
splits (``test`` empty) otherwise; ``python -m grader train|translate|evaluate`` use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "synthetic_data"
PUBLIC_SPLITS = ("train", "valid", "length")  # never "test"


@dataclass(frozen=True)
class Corpus:
    train: list[tuple[str, str]]  # (english, japanese)
    valid: list[tuple[str, str]]
    test: list[tuple[str, str]]
    length: list[tuple[str, str]]  # length-generalisation split (not graded)


def has_generator() -> bool:
    """Whether the grading-side generator (and so the test split) is installed."""
    try:
        import grader.data.synthetic  # noqa: F401 — imported only to learn whether it is installed
    except ImportError:
        return False
    return True


def write_public_splits(corpus: Corpus, folder: Path | None = None) -> list[Path]:
    """Write the public splits of ``corpus`` as ``<split>.tsv`` (``english<TAB>japanese``)."""
    folder = Path(DATA_DIR if folder is None else folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for split in PUBLIC_SPLITS:
        path = folder / f"{split}.tsv"
        pairs = getattr(corpus, split)
        if any("\t" in s or "\n" in s for pair in pairs for s in pair):
            raise ValueError(f"split {split}: a sentence holds a tab or a newline")
        path.write_text("".join(f"{en}\t{ja}\n" for en, ja in pairs), encoding="utf-8")
        written.append(path)
    return written


def read_public_splits(folder: Path | None = None) -> Corpus:
    """The shipped splits (``test`` is empty); ``folder`` defaults to ``DATA_DIR``."""
    folder = Path(DATA_DIR if folder is None else folder)
    splits = {}
    for split in PUBLIC_SPLITS:
        path = folder / f"{split}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"the built-in task's data is missing: no {path}")
        pairs = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected 'english<TAB>japanese'")
            pairs.append((fields[0], fields[1]))
        splits[split] = pairs
    return Corpus(train=splits["train"], valid=splits["valid"], test=[], length=splits["length"])


def load_synthetic(seed: int = 0) -> Corpus:
    """The built-in corpus: generated (all four splits) where the grading-side generator is
    installed, else the shipped public splits (seed 0 only; ``test`` empty)."""
    if has_generator():
        from grader.data.synthetic import generate_corpus

        return generate_corpus(seed=seed)
    if seed != 0:
        raise ValueError("the hand-out ships the corpus of seed 0 only")
    return read_public_splits()
