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
    # BEGIN SOLUTION: encode once; loop: decode the prefix, argmax of the last position's logits, pad finished rows, stop when all are done
    memory = model.encode(src, src_mask)
    batch = src.size(0)
    tokens = torch.full((batch, 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        hidden = model.decode(tokens, memory, src_mask, causal_mask(tokens.size(1), src.device))
        next_token = model.generator(hidden[:, -1]).argmax(dim=-1)
        next_token = next_token.masked_fill(finished, model.pad_id)
        tokens = torch.cat([tokens, next_token.unsqueeze(1)], dim=1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return tokens[:, 1:]
    # END SOLUTION


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
    # BEGIN SOLUTION: batch the B*K hypotheses; each step: log_softmax, extend ended ones with pad only, top-k over K*V per row, reorder; finally pick the best by the GNMT score
    batch, k = src.size(0), beam_size
    memory = model.encode(src, src_mask).repeat_interleave(k, dim=0)  # (B*K, T_src, d)
    src_mask = src_mask.repeat_interleave(k, dim=0)
    tokens = torch.full((batch * k, 1), bos_id, dtype=torch.long, device=src.device)
    scores = torch.full((batch, k), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # one live beam at the start, so the first step doesn't pick duplicates
    ended = torch.zeros(batch * k, dtype=torch.bool, device=src.device)
    rows = torch.arange(batch, device=src.device).unsqueeze(1)

    for _ in range(max_len):
        hidden = model.decode(tokens, memory, src_mask, causal_mask(tokens.size(1), src.device))
        log_probs = model.generator(hidden[:, -1]).float().log_softmax(dim=-1)  # (B*K, V)
        vocab = log_probs.size(-1)
        # An ended hypothesis has exactly one continuation, pad, which costs nothing.
        log_probs[ended] = float("-inf")
        log_probs[ended, model.pad_id] = 0.0
        candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        scores, best = candidates.topk(k, dim=-1)  # (B, K)
        beam, next_token = best // vocab, best % vocab
        tokens = tokens.view(batch, k, -1)[rows, beam].view(batch * k, -1)
        ended = ended.view(batch, k)[rows, beam].view(-1)
        next_token = next_token.view(-1)
        tokens = torch.cat([tokens, next_token.unsqueeze(1)], dim=1)
        ended |= next_token == eos_id
        if ended.all():
            break

    generated = tokens[:, 1:].view(batch, k, -1)
    lengths = (generated != model.pad_id).sum(dim=-1).clamp(min=1)  # tokens up to and including </s>
    normalised = scores / ((5.0 + lengths) / 6.0) ** length_penalty
    best = generated[torch.arange(batch, device=src.device), normalised.argmax(dim=-1)]  # (B, L)
    longest = int((best != model.pad_id).sum(dim=-1).max())
    return best[:, : max(longest, 1)]
    # END SOLUTION
