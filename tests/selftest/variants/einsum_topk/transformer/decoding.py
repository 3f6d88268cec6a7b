"""Variant einsum_topk — decoding styles:

* greedy: a preallocated ``(B, max_len)`` output full of ``pad_id``, an ``alive`` mask, and
  ``torch.where`` to write pad into finished rows; trimmed at the end.
* beam search vectorised over the batch, **top ``beam_size`` tokens of each hypothesis over the
  vocabulary first** (``topk`` on ``(B, K, V)``), then the best ``beam_size`` of the K*K
  candidates of each sentence; hypotheses reordered with ``gather``; the length of a
  hypothesis read from the position of its ``</s>``.

Top-k per hypothesis first is exact: a candidate among the best K of a sentence is among the
best K continuations of its own hypothesis. It needs ``beam_size <= vocabulary size`` (as any
real vocabulary is), because ``topk(beam_size)`` over the vocabulary asks for that many tokens.
"""

import torch

from .masks import causal_mask


@torch.no_grad()
def greedy_decode(model, src, src_mask, max_len, bos_id, eos_id):
    batch = src.size(0)
    memory = model.encode(src, src_mask)
    out = torch.full((batch, max_len), model.pad_id, dtype=torch.long, device=src.device)
    prefix = torch.full((batch, 1), bos_id, dtype=torch.long, device=src.device)
    alive = torch.ones(batch, dtype=torch.bool, device=src.device)
    used = 0
    for t in range(max_len):
        hidden = model.decode(prefix, memory, src_mask, causal_mask(t + 1, src.device))
        token = model.generator(hidden[:, -1]).argmax(-1)
        token = torch.where(alive, token, torch.full_like(token, model.pad_id))
        out[:, t] = token
        used = t + 1
        alive = alive & (token != eos_id)
        if not bool(alive.any()):
            break
        prefix = torch.cat([prefix, token[:, None]], dim=1)
    return out[:, : max(used, 1)]


@torch.no_grad()
def beam_search(model, src, src_mask, max_len, bos_id, eos_id, beam_size=4, length_penalty=0.6):
    B, K = src.size(0), beam_size
    device = src.device
    memory = model.encode(src, src_mask)
    # (B, ...) -> (B*K, ...): hypothesis b*K + k belongs to sentence b.
    memory = memory.unsqueeze(1).expand(B, K, *memory.shape[1:]).reshape(B * K, *memory.shape[1:])
    mask = src_mask.unsqueeze(1).expand(B, K, *src_mask.shape[1:]).reshape(B * K, *src_mask.shape[1:])

    hyps = torch.full((B, K, 1), bos_id, dtype=torch.long, device=device)
    score = torch.zeros(B, K, dtype=torch.float64, device=device)  # scores kept in float64
    score[:, 1:] = float("-inf")  # K copies of <s>: only one of them may be expanded
    done = torch.zeros(B, K, dtype=torch.bool, device=device)

    for _ in range(max_len):
        t = hyps.size(-1)
        hidden = model.decode(hyps.view(B * K, t), memory, mask, causal_mask(t, device))
        log_p = model.generator(hidden[:, -1]).log_softmax(dim=-1).view(B, K, -1)
        # An ended hypothesis continues with pad only, for free.
        pad_only = torch.full_like(log_p, float("-inf"))
        pad_only[..., model.pad_id] = 0.0
        log_p = torch.where(done.unsqueeze(-1), pad_only, log_p)

        top_lp, top_tok = log_p.topk(K, dim=-1)  # (B, K, K): the best K tokens of each hypothesis
        candidates = (score.unsqueeze(-1) + top_lp).view(B, K * K)
        score, pick = candidates.topk(K, dim=-1)  # (B, K): the best K of the sentence
        parent = torch.div(pick, K, rounding_mode="floor")
        token = top_tok.view(B, K * K).gather(1, pick)

        hyps = hyps.gather(1, parent.unsqueeze(-1).expand(-1, -1, t))
        hyps = torch.cat([hyps, token.unsqueeze(-1)], dim=-1)
        done = done.gather(1, parent) | (token == eos_id)
        if bool(done.all()):
            break

    generated = hyps[..., 1:]  # (B, K, steps)
    steps = generated.size(-1)
    is_eos = generated == eos_id
    has_eos = is_eos.any(-1)
    length = torch.where(has_eos, is_eos.long().argmax(-1) + 1, torch.full_like(has_eos, steps, dtype=torch.long))
    normalised = score / ((5.0 + length.to(score.dtype)) / 6.0) ** length_penalty
    winner = normalised.argmax(dim=-1)  # (B,)
    best = generated.gather(1, winner.view(B, 1, 1).expand(B, 1, steps)).squeeze(1)
    best_length = length.gather(1, winner.view(B, 1)).squeeze(1)
    positions = torch.arange(steps, device=device)
    best = best.masked_fill(positions.unsqueeze(0) >= best_length.unsqueeze(1), model.pad_id)
    return best[:, : max(int(best_length.max()), 1)]
