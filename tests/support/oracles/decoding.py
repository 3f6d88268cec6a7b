"""Trusted reference decoders for the `decoding` part (paper §6.1), written independently of
the solutions: one row at a time, plain Python lists, float64 scores.

* :func:`greedy_rows` — the naive greedy loop (encode, decode the whole prefix under a causal
  mask, argmax of the last position), one row at a time, with the smallest gap between the
  best and the second-best logit it met (tests skip near-ties).
* :func:`greedy_rows_ignoring_eos` — the same loop that never stops at ``</s>`` (the
  signature of a decoder that forgets to stop / to pad); :func:`greedy_rows_first_position`
  — the loop that reads the first position's logits instead of the last one's.
* :func:`enumerate_hypotheses` / :func:`brute_force_best` — every hypothesis a beam search
  can end with (ended with ``</s>`` after ``1..max_len`` tokens, or still open at
  ``max_len``), scored with the GNMT length penalty
  ``log P / ((5 + len) / 6) ** alpha``: the exact optimum that a wide enough beam returns.
* :func:`teacher_forced_argmax` — the argmax after every prefix of a given output, from one
  teacher-forced pass under the causal mask (what greedy decoding must agree with).
* the mask flags of :func:`greedy_rows` and :func:`brute_force_best` (``causal_mask``,
  ``encode_src_mask``, ``decode_src_mask``): ``False`` passes ``None`` instead of that mask,
  the output of a decoder that forgets it (a bug signature).
* :func:`layout`, :func:`strip_trailing_pad`, :func:`generated_rows` — the output layout of
  the contract.

The model may be a toy from ``grader.runtime.toys`` or a model from ``impl``: the oracles
use only ``encode``, ``decode`` and ``generator`` of it.
"""

from __future__ import annotations

import itertools
import math

import torch


def causal(size: int) -> torch.Tensor:
    """``(1, T, T)`` bool, True on and below the diagonal (True = may attend)."""
    steps = torch.arange(size)
    return (steps[None, :] <= steps[:, None]).unsqueeze(0)


def gnmt_score(log_prob: float, length: int, alpha: float) -> float:
    """The GNMT length-normalised score (Wu et al., 2016)."""
    return log_prob / ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def next_logits(
    model, memory, src_mask_row, prefix: list[int], *, causal_mask: bool = True, decode_src_mask: bool = True
) -> torch.Tensor:
    """The logits ``(V,)`` (float64) for the token after ``prefix`` (which starts with ``<s>``).

    ``causal_mask=False`` / ``decode_src_mask=False``: decode with ``None`` instead of the
    causal mask / the source mask (the signatures of a decoder that forgets them).
    """
    tgt = torch.tensor([prefix], dtype=torch.long)
    hidden = model.decode(
        tgt, memory, src_mask_row if decode_src_mask else None, causal(len(prefix)) if causal_mask else None
    )
    return model.generator(hidden[:, -1])[0].double()


def _encode_row(model, src, src_mask, b: int, encode_src_mask: bool = True):
    """``memory`` of row ``b`` alone (its padding columns kept); ``encode_src_mask=False``
    encodes it with ``None`` instead of its source mask."""
    return model.encode(src[b : b + 1], src_mask[b : b + 1] if encode_src_mask else None)


@torch.no_grad()
def greedy_rows(
    model,
    src,
    src_mask,
    max_len: int,
    bos_id: int,
    eos_id: int,
    *,
    causal_mask: bool = True,
    encode_src_mask: bool = True,
    decode_src_mask: bool = True,
):
    """Naive greedy decoding, one row at a time.

    Returns ``(rows, margin)``: ``rows[b]`` is the list of generated tokens of row ``b``
    (without ``<s>``, ending with ``</s>`` unless ``max_len`` ran out); ``margin`` is the
    smallest gap between the two largest logits over all steps (near-ties make the argmax
    depend on the order of floating-point operations).

    ``causal_mask``, ``encode_src_mask``, ``decode_src_mask``: ``False`` passes ``None``
    instead of that mask (the output of a decoder that forgets it).
    """
    rows, margin = [], math.inf
    for b in range(src.shape[0]):
        memory = _encode_row(model, src, src_mask, b, encode_src_mask)
        prefix = [bos_id]
        while len(prefix) - 1 < max_len:
            logits = next_logits(
                model, memory, src_mask[b : b + 1], prefix, causal_mask=causal_mask, decode_src_mask=decode_src_mask
            )
            top = logits.topk(2).values
            margin = min(margin, float(top[0] - top[1]))
            token = int(logits.argmax())
            prefix.append(token)
            if token == eos_id:
                break
        rows.append(prefix[1:])
    return rows, margin


@torch.no_grad()
def greedy_rows_ignoring_eos(model, src, src_mask, max_len: int, bos_id: int):
    """Greedy decoding that never stops at ``</s>``: ``max_len`` argmax tokens per row."""
    rows = []
    for b in range(src.shape[0]):
        memory = model.encode(src[b : b + 1], src_mask[b : b + 1])
        prefix = [bos_id]
        for _ in range(max_len):
            prefix.append(int(next_logits(model, memory, src_mask[b : b + 1], prefix).argmax()))
        rows.append(prefix[1:])
    return rows


@torch.no_grad()
def greedy_rows_first_position(model, src, src_mask, max_len: int, bos_id: int, eos_id: int):
    """Greedy decoding that takes the argmax of the *first* position's logits (the prediction
    after ``<s>``) at every step instead of the last one's; stops at ``</s>``."""
    rows = []
    for b in range(src.shape[0]):
        memory = model.encode(src[b : b + 1], src_mask[b : b + 1])
        prefix = [bos_id]
        while len(prefix) - 1 < max_len:
            tgt = torch.tensor([prefix], dtype=torch.long)
            hidden = model.decode(tgt, memory, src_mask[b : b + 1], causal(len(prefix)))
            token = int(model.generator(hidden[:, 0])[0].argmax())
            prefix.append(token)
            if token == eos_id:
                break
        rows.append(prefix[1:])
    return rows


def layout(rows: list[list[int]], pad_id: int, width: int | None = None) -> torch.Tensor:
    """``(B, L)`` long: the rows padded on the right with ``pad_id``; ``L`` the longest row
    (or ``width``)."""
    width = max(len(r) for r in rows) if width is None else width
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for b, row in enumerate(rows):
        row = row[:width]
        out[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def strip_trailing_pad(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the trailing columns that hold ``pad_id`` in every row."""
    width = tokens.shape[-1]
    while width > 0 and bool((tokens[..., width - 1] == pad_id).all()):
        width -= 1
    return tokens[..., :width]


def bug_no_stop_until_all_done(no_stop_rows, stopped_rows, pad_id: int) -> torch.Tensor:
    """What a batched decoder returns that keeps writing argmax tokens (not pad) after a
    row's ``</s>`` and stops when every row has produced one (or at ``max_len``)."""
    width = max(len(r) for r in stopped_rows)
    return layout([r[:width] for r in no_stop_rows], pad_id, width)


def with_bos(tokens: torch.Tensor, bos_id: int) -> torch.Tensor:
    """``tokens`` with a leading ``<s>`` column (the "<s> left in the output" bug)."""
    return torch.cat([torch.full((tokens.shape[0], 1), bos_id, dtype=torch.long), tokens], dim=1)


@torch.no_grad()
def enumerate_hypotheses(
    model,
    src_row,
    src_mask_row,
    max_len: int,
    bos_id: int,
    eos_id: int,
    allowed: list[int],
    *,
    causal_mask: bool = True,
    encode_src_mask: bool = True,
    decode_src_mask: bool = True,
):
    """Every final hypothesis of one source row over the tokens ``allowed`` (``eos_id`` among
    them): a list of ``(tokens, log_prob, length)``; ``length`` counts ``</s>``.

    Incremental: the model is asked for the next-token distribution of every prefix (under
    the causal mask; a ``False`` mask flag passes ``None`` instead, as in :func:`greedy_rows`).
    """
    if eos_id not in allowed:
        raise ValueError("eos_id must be among the allowed tokens")
    memory = model.encode(src_row, src_mask_row if encode_src_mask else None)
    out = []

    def expand(prefix: list[int], log_prob: float) -> None:
        log_probs = next_logits(
            model, memory, src_mask_row, prefix, causal_mask=causal_mask, decode_src_mask=decode_src_mask
        ).log_softmax(dim=-1)
        for token in allowed:
            lp = log_prob + float(log_probs[token])
            seq = prefix[1:] + [token]
            if token == eos_id or len(seq) == max_len:
                out.append((seq, lp, len(seq)))
            else:
                expand(prefix + [token], lp)

    expand([bos_id], 0.0)
    return out


@torch.no_grad()
def teacher_forced_log_prob(model, src_row, src_mask_row, seq: list[int], bos_id: int) -> float:
    """``log P(seq | src)`` from one decoder pass over ``<s> seq[:-1]`` (uses causality)."""
    memory = model.encode(src_row, src_mask_row)
    tgt = torch.tensor([[bos_id] + seq[:-1]], dtype=torch.long)
    log_probs = model.generator(model.decode(tgt, memory, src_mask_row, causal(len(seq))))[0]
    log_probs = log_probs.double().log_softmax(dim=-1)
    return float(sum(log_probs[t, token] for t, token in enumerate(seq)))


def generated_rows(tokens: torch.Tensor, eos_id: int, pad_id: int) -> list[list[int]]:
    """The rows of a decoder's ``(B, L)`` output as lists: up to and including the first
    ``</s>``, or, in a row without one, everything but the trailing ``pad_id``s."""
    rows = []
    for row in tokens.tolist():
        if eos_id in row:
            row = row[: row.index(eos_id) + 1]
        else:
            while row and row[-1] == pad_id:
                row.pop()
        rows.append(row)
    return rows


@torch.no_grad()
def teacher_forced_argmax(model, src, src_mask, rows: list[list[int]], bos_id: int) -> list[list[int]]:
    """For each row ``y`` of ``rows`` (generated tokens, without ``<s>``): the argmax of the
    logits at every position of one teacher-forced pass over ``<s> y[:-1]`` under the causal
    mask, i.e. ``argmax generator(decode(<s> y_1..y_{t-1}))[t]`` for ``t = 1..len(y)``: the
    tokens that greedy decoding chooses after each prefix of ``y``. A greedy output ``y``
    agrees with teacher forcing iff the result equals ``y``."""
    out = []
    for b, row in enumerate(rows):
        if not row:
            out.append([])
            continue
        memory = model.encode(src[b : b + 1], src_mask[b : b + 1])
        tgt = torch.tensor([[bos_id] + row[:-1]], dtype=torch.long)
        logits = model.generator(model.decode(tgt, memory, src_mask[b : b + 1], causal(len(row))))[0]
        out.append(logits.double().argmax(dim=-1).tolist())
    return out


def all_final_sequences(max_len: int, eos_id: int, allowed: list[int]):
    """The same hypothesis set as :func:`enumerate_hypotheses`, listed with itertools."""
    others = [t for t in allowed if t != eos_id]
    for length in range(1, max_len + 1):
        for body in itertools.product(others, repeat=length - 1):
            yield list(body) + [eos_id]
        if length == max_len:
            for body in itertools.product(others, repeat=length):
                yield list(body)


def hypothesis_count(max_len: int, real_tokens: int) -> int:
    """How many final hypotheses there are with ``real_tokens`` tokens besides ``</s>``: ended
    after ``1..max_len`` tokens, plus the ones open at ``max_len``."""
    return sum(real_tokens ** (n - 1) for n in range(1, max_len + 1)) + real_tokens**max_len


def brute_force_best(
    model, src, src_mask, max_len: int, bos_id: int, eos_id: int, alpha: float, allowed: list[int], **masks
):
    """The exact beam-search optimum of every row.

    Returns ``(rows, margin, count)``: the best hypothesis of each row by GNMT score, the
    smallest gap between the best and the second-best score over the rows, and the largest
    number of hypotheses of a row (a beam at least that wide keeps every one of them).
    ``masks``: the mask flags of :func:`enumerate_hypotheses` (a forgotten mask's signature).
    """
    rows, margin, count = [], math.inf, 0
    for b in range(src.shape[0]):
        hyps = enumerate_hypotheses(
            model, src[b : b + 1], src_mask[b : b + 1], max_len, bos_id, eos_id, allowed, **masks
        )
        scored = sorted(((gnmt_score(lp, n, alpha), seq) for seq, lp, n in hyps), key=lambda x: -x[0])
        rows.append(scored[0][1])
        if len(scored) > 1:
            margin = min(margin, scored[0][0] - scored[1][0])
        count = max(count, len(scored))
    return rows, margin, count


# --- hand-built toys with known answers (checked by brute force in tests/selftest) ----------------

PAD, BOS, EOS, A, B, C = 0, 1, 2, 3, 4, 5


def prob_matrix(vocab_size: int, rows: dict) -> torch.Tensor:
    """``(V, V)`` next-token probabilities; a row missing from ``rows`` is uniform over
    ``</s>`` and the real tokens (never ``<pad>`` or ``<s>``)."""
    matrix = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    matrix[:, EOS:] = 1.0
    for last, row in rows.items():
        matrix[last] = 0.0
        for nxt, p in row.items():
            matrix[last, nxt] = float(p)
    return matrix / matrix.sum(dim=-1, keepdim=True)


def greedy_trap_toy(dtype: str = "float64"):
    """Greedy is wrong here, beam search (width >= 2) is right.

    After ``<s>``: A 0.5, B 0.4, ``</s>`` 0.1. After A the mass is spread thin
    (``</s>`` 0.34, A 0.33, B 0.33); after B, ``</s>`` has 0.9. Greedy takes A, then ``</s>``:
    ``[A, </s>]`` with ``P = 0.17``; the best hypothesis is ``[B, </s>]`` with ``P = 0.36``.
    """
    from grader.runtime.toys import MarkovToy

    probs = prob_matrix(
        5,
        {
            BOS: {A: 0.5, B: 0.4, EOS: 0.1},
            A: {EOS: 0.34, A: 0.33, B: 0.33},
            B: {EOS: 0.9, A: 0.05, B: 0.05},
            EOS: {A: 0.6, B: 0.4},
        },
    )
    return MarkovToy.from_probs(probs, pad_id=PAD, dtype=dtype)


GREEDY_TRAP_GREEDY = [A, EOS]
GREEDY_TRAP_BEST = [B, EOS]


def length_penalty_toy(dtype: str = "float64"):
    """The GNMT length penalty changes the winner (``max_len >= 4``).

    ``[</s>]`` has ``log P = log 0.5 = -0.693``; ``[A, B, C, </s>]`` has
    ``log P = log 0.5 + 3 log 0.95 = -0.847``: the short one wins on raw log-probability
    (``alpha = 0``), the long one with ``alpha = 0.6`` (``-0.847 / 1.5^0.6 = -0.664``).
    """
    from grader.runtime.toys import MarkovToy

    probs = prob_matrix(
        6,
        {
            BOS: {EOS: 0.5, A: 0.5},
            A: {B: 0.95, EOS: 0.03, A: 0.01, C: 0.01},
            B: {C: 0.95, EOS: 0.03, A: 0.01, B: 0.01},
            C: {EOS: 0.95, A: 0.02, B: 0.02, C: 0.01},
            EOS: {A: 1.0},
        },
    )
    return MarkovToy.from_probs(probs, pad_id=PAD, dtype=dtype)


LENGTH_PENALTY_LONG = [A, B, C, EOS]
LENGTH_PENALTY_SHORT = [EOS]


def open_hypothesis_toy(dtype: str = "float64"):
    """``</s>`` is unlikely everywhere (0.1), A likely (0.9): with ``max_len = 3`` the best
    hypothesis ``[A, A, A]`` is still open when ``max_len`` runs out; the best one that ended
    is ``[A, A, </s>]``."""
    from grader.runtime.toys import MarkovToy

    probs = prob_matrix(5, {BOS: {A: 0.9, EOS: 0.1}, A: {A: 0.9, EOS: 0.1}, EOS: {A: 1.0}})
    return MarkovToy.from_probs(probs, pad_id=PAD, dtype=dtype)


OPEN_HYPOTHESIS_BEST = [A, A, A]
OPEN_HYPOTHESIS_BEST_ENDED = [A, A, EOS]


def two_context_toy(dtype: str = "float64"):
    """A ``SourceMarkovToy`` with two contexts (first source token even / odd), V = 6.

    Even: ``<s> -> A -> </s>`` (0.9 each step). Odd: ``<s> -> B -> C -> </s>`` (0.9 each step).
    After ``</s>`` both continue with A (0.9), so a decoder that does not stop writes A.
    Greedy and beam search (``max_len >= 3``) give ``[A, </s>]`` and ``[B, C, </s>]``.
    """
    from grader.runtime.toys import SourceMarkovToy

    even = prob_matrix(
        6,
        {
            BOS: {A: 0.9, B: 0.05, EOS: 0.05},
            A: {EOS: 0.9, A: 0.05, C: 0.05},
            B: {C: 0.6, EOS: 0.4},
            C: {EOS: 0.6, A: 0.4},
            EOS: {A: 0.9, C: 0.1},
        },
    )
    odd = prob_matrix(
        6,
        {
            BOS: {B: 0.9, A: 0.05, EOS: 0.05},
            B: {C: 0.9, B: 0.05, EOS: 0.05},
            C: {EOS: 0.9, A: 0.05, C: 0.05},
            A: {B: 0.6, EOS: 0.4},
            EOS: {A: 0.9, C: 0.1},
        },
    )
    return SourceMarkovToy.from_probs(torch.stack([even, odd]), pad_id=PAD, dtype=dtype)


TWO_CONTEXT_EVEN = [A, EOS]
TWO_CONTEXT_ODD = [B, C, EOS]


def mask_probe():
    """A fixed input on which decoders that forget one of their masks all differ: ``(toy,
    src, src_mask, max_len)`` with a two-layer ``AttentionToy`` and three padded sources; the
    greedy outputs with the causal mask, the source mask in model.encode, in model.decode or in
    both replaced by ``None`` differ from each other and from the correct one (and without the
    causal mask every row differs). Checked in tests/selftest."""
    from grader.runtime.toys import AttentionToy

    toy = AttentionToy.random(236, 7, 9, d_model=6, num_layers=2, eos_bias=-1.0)
    src = torch.tensor([[4, 7, 5, 3, 6], [8, 3, PAD, PAD, PAD], [5, 6, 4, PAD, PAD]])
    return toy, src, (src != PAD).unsqueeze(1), 6
