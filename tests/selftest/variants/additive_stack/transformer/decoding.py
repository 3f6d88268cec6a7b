"""Variant additive_stack — decoding styles:

* greedy: the reference's batched loop, but tokens collected in a Python list and stacked once.
* beam search vectorised over the batch with a **growing beam**: it starts with one hypothesis
  per sentence and keeps ``min(beam_size, n * V)`` of the ``n * V`` candidates, so no ``-inf``
  placeholder beams are needed; memory re-expanded with ``repeat_interleave`` each step;
  lengths counted incrementally (one more token for every hypothesis still open).
"""

import torch

from .masks import causal_mask


@torch.no_grad()
def greedy_decode(model, src, src_mask, max_len, bos_id, eos_id):
    memory = model.encode(src, src_mask)
    prefix = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    produced = []
    for _ in range(max_len):
        logits = model.generator(model.decode(prefix, memory, src_mask, causal_mask(prefix.size(1), src.device)))
        token = logits[:, -1].argmax(-1).masked_fill(finished, model.pad_id)
        produced.append(token)
        finished = finished | token.eq(eos_id)
        if finished.all():
            break
        prefix = torch.cat((prefix, token.unsqueeze(-1)), dim=-1)
    return torch.stack(produced, dim=1)


@torch.no_grad()
def beam_search(model, src, src_mask, max_len, bos_id, eos_id, beam_size=4, length_penalty=0.6):
    batch, device = src.size(0), src.device
    memory = model.encode(src, src_mask)
    rows = torch.arange(batch, device=device).unsqueeze(1)
    hyps = torch.full((batch, 1, 1), bos_id, dtype=torch.long, device=device)  # (B, n, t)
    scores = torch.zeros(batch, 1, dtype=torch.float64, device=device)
    ended = torch.zeros(batch, 1, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, 1, dtype=torch.long, device=device)

    for _ in range(max_len):
        n, t = hyps.shape[1], hyps.shape[2]
        hidden = model.decode(
            hyps.reshape(batch * n, t),
            memory.repeat_interleave(n, dim=0),
            src_mask.repeat_interleave(n, dim=0),
            causal_mask(t, device),
        )
        log_p = torch.log_softmax(model.generator(hidden[:, -1]).double(), dim=-1).reshape(batch, n, -1)
        vocab = log_p.shape[-1]
        pad_column = torch.where(ended, 0.0, log_p[..., model.pad_id])
        log_p = log_p.masked_fill(ended.unsqueeze(-1), float("-inf"))
        log_p[..., model.pad_id] = pad_column
        lengths = lengths + (~ended).long()

        total = (scores.unsqueeze(-1) + log_p).reshape(batch, n * vocab)
        scores, index = total.topk(min(beam_size, n * vocab), dim=-1)
        parent, token = index.div(vocab, rounding_mode="floor"), index.remainder(vocab)
        hyps = torch.cat((hyps[rows, parent], token.unsqueeze(-1)), dim=-1)
        lengths = lengths[rows, parent]
        ended = ended[rows, parent] | (token == eos_id)
        if ended.all():
            break

    normalised = scores / ((5.0 + lengths) / 6.0) ** length_penalty
    winner = normalised.argmax(dim=-1)
    best = hyps[rows.squeeze(1), winner, 1:]  # (B, steps)
    best_len = lengths[rows.squeeze(1), winner]
    return best[:, : max(int(best_len.max()), 1)]
