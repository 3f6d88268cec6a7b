# This file is yours to complete: replace each `raise NotImplementedError` with your code.
# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)
"""Turning a trained model into translations: greedy decoding and beam search (paper §6.1).

Both functions generate one token at a time, feeding everything generated so far back
into the decoder under a causal mask. Call them on a model in ``eval()`` mode.

Output layout (both functions): a ``(B, L)`` long tensor of generated tokens, **without**
the leading ``<s>``; a row ends with ``</s>`` (unless it ran out of ``max_len``) and every
position after a row's ``</s>`` holds ``model.pad_id``; ``L <= max_len`` is the length of the
longest row.
"""

import torch

from .masks import causal_mask


@torch.no_grad()
def greedy_decode(model, src, src_mask, max_len, bos_id, eos_id):
    """Pick the most probable next token at every step.

    Args:
        model: a ``Transformer`` (anything with ``encode``, ``decode``, ``generator`` and
            ``pad_id``).
        src: ``(B, T_src)`` long source tokens.
        src_mask: ``(B, 1, T_src)`` bool.
        max_len: the largest number of tokens to generate per row.
        bos_id, eos_id: the ids of ``<s>`` and ``</s>``.

    Returns:
        ``(B, L)`` long, laid out as in the module docstring.

    Encode the source once; then repeatedly decode the prefix (``(B, t)`` tokens with a
    ``causal_mask(t)``), take the logits of the *last* position, and append their argmax.
    Stop when every row has produced ``eos_id`` or after ``max_len`` tokens.

    Pitfall: a finished row must keep getting ``pad_id``, not whatever the argmax says.

    Pitfall: keep the causal mask although only the last position is read: with two or more
    decoder layers, the earlier positions would see the later tokens, and the last position
    reads them in the next layer. The result must agree with teacher forcing (training).
    """
    # TODO: encode once; loop: decode the prefix, argmax of the last position's logits, pad finished rows, stop when all are done
    raise NotImplementedError(
        "decoding.greedy_decode: encode once; loop: decode the prefix, argmax of the last position's logits, pad finished rows, stop when all are done"
    )


@torch.no_grad()
def beam_search(model, src, src_mask, max_len, bos_id, eos_id, beam_size=4, length_penalty=0.6):
    """Keep the ``beam_size`` most probable prefixes per row instead of one (paper §6.1:
    beam size 4, length penalty α = 0.6).

    Args: as ``greedy_decode``, plus
        beam_size: the number of hypotheses kept per row, with ``1 <= beam_size <= V``, the
            vocabulary size (the output size of ``model.generator``).
        length_penalty: α in the GNMT length penalty (Wu et al., 2016):
            ``score = log P(y | x) / ((5 + |y|) / 6) ** α``, where ``|y|`` counts the
            generated tokens including ``</s>``.

    Returns:
        ``(B, L)`` long: the best-scoring hypothesis of each row, laid out as in
        ``greedy_decode``. With ``beam_size=1`` the result equals ``greedy_decode``.

    Ended hypotheses (those that produced ``</s>``) stay in the beam and are extended with
    ``pad_id`` at no cost; the search stops when every hypothesis has ended or after
    ``max_len`` steps, and then hypotheses still open compete with the ended ones.

    Pitfall: rank the candidates of one row by their *total* log-probability (prefix score +
    next-token log-probability), over all beams at once — not per beam. At the first step
    all beams hold the same prefix ``<s>``: give all but one of them a score of ``-inf``, or
    the beam fills with copies of one hypothesis.
    """
    # TODO: batch the B*K hypotheses; each step: log_softmax, extend ended ones with pad only, top-k over K*V per row, reorder; finally pick the best by the GNMT score
    raise NotImplementedError(
        "decoding.beam_search: batch the B*K hypotheses; each step: log_softmax, extend ended ones with pad only, top-k over K*V per row, reorder; finally pick the best by the GNMT score"
    )
