"""Grading to the threshold: the trusted loop's look at the validation split.

Every ``every`` optimiser steps the loop translates the validation sources greedily with the
model being trained and scores them against their references (corpus BLEU, the same numbers as
``sacrebleu.corpus_bleu(..., tokenize="none")``, computed here because the worker has no
sacrebleu). Once that BLEU reaches ``target`` — the rubric's full-points threshold plus a
margin measured over seeds (``grading.VALIDATION_MARGIN``) — training stops: more steps could
not change the points. The held-out *test* split is never seen here; the judge scores it
afterwards from the returned weights, as it always does.

A look is in two stages, so that a model far from the bar costs little: first the teacher-forced
token accuracy on the validation pairs (one forward pass, about the cost of a training step);
only when it reaches ``gate`` the greedy translation (many forward passes; one that never emits
``</s>`` runs to the longest length allowed). The gate can only delay a stop, never cause one.

The check must not change the training it watches: it runs in eval mode without gradients,
puts the model back into train mode and restores torch's random state, so that a run that
checks every 50 steps and a run that never checks produce the same weights at every step.

The decoder is the grader's own (not the student's ``greedy_decode``): the student's
``encode``/``decode``/``generator`` with the contract's masks, the whole prefix re-decoded at
every step, every row of a batch at once. A model whose interface breaks it is not stopped
early (``error`` says why); it trains to the step budget as before.

Worker-safe: standard library, torch, ``grader.translation``. Nothing here decides points.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .batching import Example, collate, encode_pairs, example_size, pad
from .decode import max_decode_len
from .vocab import BOS_ID, EOS_ID, PAD_ID, Vocab

MAX_ORDER = 4


def _ngrams(tokens: Sequence[str]) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for n in range(1, MAX_ORDER + 1) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0..100) of tokenised sentences, one reference each: sacrebleu's default
    metric with ``tokenize="none"`` (4-gram precisions, "exp" smoothing, brevity penalty)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    correct, total = [0] * MAX_ORDER, [0] * MAX_ORDER
    hyp_len = ref_len = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp, ref = hypothesis.split(), reference.split()
        hyp_len, ref_len = hyp_len + len(hyp), ref_len + len(ref)
        ref_counts = _ngrams(ref)
        for gram, count in _ngrams(hyp).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, ref_counts.get(gram, 0))
    if not any(correct):
        return 0.0
    brevity = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
    log_precisions, smooth = [], 1.0
    for matched, count in zip(correct, total):
        if count == 0:
            break
        if matched == 0:
            smooth *= 2
            precision = 100.0 / (smooth * count)
        else:
            precision = 100.0 * matched / count
        log_precisions.append(math.log(precision))
    log_precisions += [-9999999999.0] * (MAX_ORDER - len(log_precisions))  # sacrebleu's log(0)
    return brevity * math.exp(sum(log_precisions) / MAX_ORDER)


@torch.no_grad()
def greedy_translate(
    model, src_vocab: Vocab, tgt_vocab: Vocab, sentences: Sequence[str], *, batch_size: int = 250, device=None
) -> list[str]:
    """The grader's greedy decoder over the model's ``encode``/``decode``/``generator``: the rows
    of a batch at once, the whole prefix re-decoded under the contract's masks (``(B, 1, T_src)``
    padding, ``(1, T, T)`` causal). A row that has produced ``</s>`` leaves the batch, so that a
    few rows that never end cost only themselves; input order kept. ``device``: where the model
    is (default: where its parameters are; the judge's built-in model has no ``parameters``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    encoded = [src_vocab.encode(s, eos=True) for s in sentences]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = pad([encoded[i] for i in chunk]).to(device)
        src_mask = (src != PAD_ID).unsqueeze(1)
        memory = model.encode(src, src_mask)
        rows: list[list[int]] = [[] for _ in chunk]
        active = list(range(len(chunk)))  # rows still writing, as indices into chunk
        tokens = torch.full((len(chunk), 1), BOS_ID, dtype=torch.long, device=device)  # their prefixes
        for _ in range(max_decode_len(src.size(1))):
            width = tokens.size(1)
            causal = torch.tril(torch.ones(width, width, dtype=torch.bool, device=device)).unsqueeze(0)
            index = torch.tensor(active, device=device)
            hidden = model.decode(tokens, memory[index], src_mask[index], causal)
            next_token = model.generator(hidden[:, -1]).argmax(dim=-1)
            for row, token in zip(active, next_token.tolist()):
                rows[row].append(token)
            going = next_token != EOS_ID
            if not bool(going.any()):
                break
            active = [row for row, keep in zip(active, going.tolist()) if keep]
            tokens = torch.cat([tokens, next_token.unsqueeze(1)], dim=1)[going]
        for row, i in zip(rows, chunk):
            out[i] = tgt_vocab.decode(row)
    return out


@torch.no_grad()
def token_accuracy(model, examples: Sequence[Example], *, batch_size: int = 100) -> float:
    """Share of the target tokens (``</s>`` included, padding not) that the model predicts
    right when it reads the reference prefix (teacher forcing), under the contract's masks."""
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: example_size(examples[i]))
    right = total = 0
    for start in range(0, len(order), batch_size):
        batch = collate([examples[i] for i in order[start : start + batch_size]]).to(device)
        width = batch.tgt_in.size(1)
        causal = torch.tril(torch.ones(width, width, dtype=torch.bool, device=device)).unsqueeze(0)
        logits = model(
            batch.src, batch.tgt_in, (batch.src != PAD_ID).unsqueeze(1), (batch.tgt_in != PAD_ID).unsqueeze(1) & causal
        )
        real = batch.tgt_out != PAD_ID
        right += int((logits.argmax(dim=-1) == batch.tgt_out)[real].sum())
        total += int(real.sum())
    return right / total if total else 0.0


@dataclass
class Validation:
    """Stop training once the greedy BLEU on ``pairs`` (tokenised ``(english, japanese)``)
    reaches ``target``, looking every ``every`` steps (``first``: the first step to look); the
    greedy translation runs only once the teacher-forced token accuracy reaches ``gate``."""

    pairs: Sequence[tuple[str, str]]
    src_vocab: Vocab
    tgt_vocab: Vocab
    target: float
    every: int = 50
    first: int | None = None
    gate: float = 0.0
    history: list = field(default_factory=list)  # [[step, token accuracy, BLEU or None (gate shut)], ...]
    seconds: float = 0.0  # time spent looking (part of the training time)
    error: str = ""  # why the checks stopped, if they broke

    def __post_init__(self):
        if self.every < 1:
            raise ValueError("validation every must be a positive number of steps")
        self.first = self.every if self.first is None else max(1, int(self.first))
        self.examples = encode_pairs(self.pairs, self.src_vocab, self.tgt_vocab)

    def due(self, step: int) -> bool:
        return not self.error and step >= self.first and (step - self.first) % self.every == 0

    def reached(self, model, step: int) -> bool:
        """Translate and score the validation split with ``model`` (left in train mode, torch's
        random state untouched); whether the target is reached. A failing check switches the
        checks off (``error``) and never stops training."""
        import time

        start = time.perf_counter()
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        was_training = model.training
        model.eval()
        bleu = None
        try:
            accuracy = round(token_accuracy(model, self.examples), 4)
            if accuracy >= self.gate:
                hypotheses = greedy_translate(model, self.src_vocab, self.tgt_vocab, [en for en, _ in self.pairs])
                bleu = round(corpus_bleu(hypotheses, [ja for _, ja in self.pairs]), 2)  # as the judge rounds
        except Exception as error:  # the student's model may fail in any way
            self.error = f"{type(error).__name__}: {error}"[:300]
            return False
        finally:
            model.train(was_training)
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            self.seconds += time.perf_counter() - start
        self.history.append([step, accuracy, bleu])
        return bleu is not None and bleu >= self.target

    def as_dict(self) -> dict:
        return {
            "target": self.target,
            "every": self.every,
            "first": self.first,
            "gate": self.gate,
            "history": self.history,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "sentences": len(self.pairs),
        }
