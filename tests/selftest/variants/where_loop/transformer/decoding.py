"""Variant where_loop — decoding styles: **one sentence at a time in a Python loop**.

* greedy: each sentence decoded alone until it produces ``</s>``; rows padded at the end.
* beam search as a per-sentence Python loop: the hypotheses of one sentence form a small
  batch ``(n, t)``; the beam starts with the single hypothesis ``<s>`` and grows to at most
  ``beam_size`` (no ``-inf`` placeholders); ended hypotheses stay in the beam and are extended
  with pad at no cost; the best ``min(beam_size, #finite candidates)`` of the flattened
  ``(n * V)`` candidates survive each step. Scores are Python-side float64 tensors.
"""

import torch

from .masks import causal_mask


def _stack_rows(rows, pad_id, device):
    width = max([len(row) for row in rows] + [1])
    out = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long, device=device)
    return out


@torch.no_grad()
def greedy_decode(model, src, src_mask, max_len, bos_id, eos_id):
    rows = []
    for b in range(src.size(0)):
        s, m = src[b : b + 1], src_mask[b : b + 1]
        memory = model.encode(s, m)
        tokens = torch.tensor([[bos_id]], device=src.device)
        for _ in range(max_len):
            hidden = model.decode(tokens, memory, m, causal_mask(tokens.size(1), src.device))
            nxt = model.generator(hidden[:, -1]).argmax(dim=-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
            if nxt.item() == eos_id:
                break
        rows.append(tokens[0, 1:].tolist())
    return _stack_rows(rows, model.pad_id, src.device)


@torch.no_grad()
def beam_search(model, src, src_mask, max_len, bos_id, eos_id, beam_size=4, length_penalty=0.6):
    rows = []
    for b in range(src.size(0)):
        m = src_mask[b : b + 1]
        memory = model.encode(src[b : b + 1], m)
        hyps = torch.tensor([[bos_id]], device=src.device)  # (n, t)
        scores = torch.zeros(1, dtype=torch.float64, device=src.device)
        ended = torch.zeros(1, dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            n, t = hyps.shape
            hidden = model.decode(
                hyps, memory.expand(n, *memory.shape[1:]), m.expand(n, *m.shape[1:]), causal_mask(t, src.device)
            )
            log_p = model.generator(hidden[:, -1]).double().log_softmax(dim=-1)  # (n, V)
            vocab = log_p.size(1)
            log_p[ended] = float("-inf")
            log_p[ended, model.pad_id] = 0.0
            flat = (scores[:, None] + log_p).flatten()
            keep = min(beam_size, int(torch.isfinite(flat).sum()))
            scores, index = flat.topk(keep)
            parent, token = index // vocab, index % vocab
            hyps = torch.cat([hyps[parent], token[:, None]], dim=1)
            ended = ended[parent] | (token == eos_id)
            if bool(ended.all()):
                break
        generated = hyps[:, 1:]
        lengths = torch.tensor(
            [_length(row, eos_id) for row in generated.tolist()], dtype=torch.float64, device=src.device
        )
        best = int((scores / ((5 + lengths) / 6) ** length_penalty).argmax())
        rows.append(generated[best, : int(lengths[best])].tolist())
    return _stack_rows(rows, model.pad_id, src.device)


def _length(row, eos_id):
    """Generated tokens up to and including the first </s> (all of them for an open row)."""
    return row.index(eos_id) + 1 if eos_id in row else len(row)
