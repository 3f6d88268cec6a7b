"""Whitespace-token vocabularies with the four special tokens ``<pad>=0, <s>, </s>, <unk>``.

A vocabulary is saved in a checkpoint as a plain list of strings (its ``tokens``), so that
``torch.load(..., weights_only=True)`` can read it back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def tokenize(sentence: str) -> list[str]:
    """The corpora are already tokenised: split on whitespace."""
    return sentence.split()


def detokenize(tokens: Sequence[str]) -> str:
    return " ".join(tokens)


class Vocab:
    """A token <-> id map. Ids 0..3 are ``<pad>``, ``<s>``, ``</s>``, ``<unk>``."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary holds every token once")
        self.tokens = tokens
        self.index = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def build(cls, sentences: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """From tokenised sentences: most frequent first, ties broken alphabetically (so the
        ids do not depend on the order of the corpus)."""
        counts = Counter(token for sentence in sentences for token in tokenize(sentence))
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + ranked)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, sentence: str | Sequence[str], bos: bool = False, eos: bool = False) -> list[int]:
        tokens = tokenize(sentence) if isinstance(sentence, str) else list(sentence)
        ids = [self.index.get(token, UNK_ID) for token in tokens]
        return ([BOS_ID] if bos else []) + ids + ([EOS_ID] if eos else [])

    def decode_ids(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Ids -> tokens. With ``strip``: stop at the first ``</s>``, drop ``<s>``/``<pad>``."""
        out = []
        for i in ids:
            i = int(i)
            if strip:
                if i == EOS_ID:
                    break
                if i in (PAD_ID, BOS_ID):
                    continue
            out.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return detokenize(self.decode_ids(ids))

    def to_list(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> Vocab:
        return cls(tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"
