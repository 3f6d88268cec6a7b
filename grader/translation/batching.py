"""Token-budget batches, bucketed by length, in a deterministic (seeded) order.

An example is a pair of id lists: the source (ending in ``</s>``) and the target (``<s> y
</s>``). The decoder reads ``target[:-1]`` and learns to predict ``target[1:]``.

``token_batches`` sorts the examples by length (after a seeded shuffle, so that examples of
equal length come in a different order every epoch), cuts the sorted list into batches
whose *padded* size ``n * max(longest source, longest target)`` stays within
``max_tokens``, and shuffles the order of the batches with the same seed: every batch
holds sentences of similar length (little padding), and training does not see the short
sentences first. Same seed and epoch -> same batches.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .vocab import PAD_ID, Vocab

Example = tuple[list[int], list[int]]


def encode_pairs(
    pairs: Sequence[Sequence[str]], src_vocab: Vocab, tgt_vocab: Vocab, max_len: int | None = None
) -> list[Example]:
    """``[(english, japanese), ...]`` -> ``[(src ids + </s>, <s> + tgt ids + </s>), ...]``.
    Pairs with more than ``max_len`` tokens on either side are dropped (None: keep all)."""
    examples = []
    for src, tgt in pairs:
        s = src_vocab.encode(src, eos=True)
        t = tgt_vocab.encode(tgt, bos=True, eos=True)
        if max_len is not None and (len(s) > max_len + 1 or len(t) > max_len + 2):
            continue
        examples.append((s, t))
    return examples


def example_size(example: Example) -> int:
    """The padded width an example needs: its longer side (the decoder sees target[:-1])."""
    src, tgt = example
    return max(len(src), len(tgt) - 1)


def token_batches(
    examples: Sequence[Example], max_tokens: int, seed: int = 0, epoch: int = 0, shuffle: bool = True
) -> list[list[int]]:
    """Indices of ``examples``, grouped into batches of at most ``max_tokens`` padded tokens
    (``len(batch) * max(example_size) <= max_tokens``; a single example longer than the budget
    forms a batch of its own). Within a batch the examples are sorted by length."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    order = list(range(len(examples)))
    rng = random.Random(f"{seed}/{epoch}")
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: example_size(examples[i]))  # stable: ties keep the shuffled order
    batches, current, widest = [], [], 0
    for i in order:
        size = example_size(examples[i])
        if current and max(widest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, widest = [], 0
        current.append(i)
        widest = max(widest, size)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


@dataclass
class Batch:
    src: torch.Tensor  # (B, T_src) long, padded with PAD_ID
    tgt_in: torch.Tensor  # (B, T_tgt) long: <s> y
    tgt_out: torch.Tensor  # (B, T_tgt) long: y </s>
    n_src_tokens: int
    n_tgt_tokens: int

    def to(self, device) -> Batch:
        return Batch(
            self.src.to(device, non_blocking=True),
            self.tgt_in.to(device, non_blocking=True),
            self.tgt_out.to(device, non_blocking=True),
            self.n_src_tokens,
            self.n_tgt_tokens,
        )


def pad(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def collate(examples: Sequence[Example]) -> Batch:
    src = pad([s for s, _ in examples])
    tgt = pad([t for _, t in examples])
    return Batch(
        src=src,
        tgt_in=tgt[:, :-1].contiguous(),
        tgt_out=tgt[:, 1:].contiguous(),
        n_src_tokens=sum(len(s) for s, _ in examples),
        n_tgt_tokens=sum(len(t) - 1 for _, t in examples),
    )


def epochs(examples: Sequence[Example], max_tokens: int, seed: int = 0) -> Iterator[tuple[float, Batch]]:
    """Endless stream of ``(epochs done after this batch, batch)``: one pass over the data per
    epoch, every epoch with its own seeded batch order."""
    if not examples:
        raise ValueError("no training examples")
    epoch = 0
    while True:
        batches = token_batches(examples, max_tokens, seed=seed, epoch=epoch)
        for position, indices in enumerate(batches):
            yield epoch + (position + 1) / len(batches), collate([examples[i] for i in indices])
        epoch += 1
