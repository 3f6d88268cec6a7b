"""Translating with a trained model (the implementation's ``greedy_decode`` / ``beam_search``)
and reading its attention weights. Worker-safe: standard library, torch, grader.translation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .batching import pad
from .train import autocast
from .vocab import BOS_ID, EOS_ID, PAD_ID, Vocab, tokenize


def max_decode_len(src_len: int) -> int:
    """How many target tokens to allow for a source of ``src_len`` tokens."""
    return 2 * src_len + 10


@torch.no_grad()
def translate(
    model,
    impl,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    sentences: Sequence[str],
    *,
    beam: int = 0,
    batch_size: int = 100,
    device=None,
    bf16: bool = False,
    length_penalty: float = 0.6,
) -> list[str]:
    """Translate tokenised English sentences. ``beam <= 1``: ``decoding.greedy_decode``;
    otherwise ``decoding.beam_search(beam_size=beam)``. Sentences are decoded in batches of
    similar length; the result is in the input order."""
    device = device or next(model.parameters()).device
    device = torch.device(device)
    model.eval()
    encoded = [src_vocab.encode(s, eos=True) for s in sentences]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = pad([encoded[i] for i in chunk]).to(device)
        src_mask = impl.masks.padding_mask(src, PAD_ID)
        max_len = max_decode_len(src.size(1))
        with autocast(device, bf16 and device.type == "cuda"):  # on the CPU, decode in fp32 as the judge does
            if beam and beam > 1:
                ids = impl.decoding.beam_search(
                    model, src, src_mask, max_len, BOS_ID, EOS_ID, beam_size=beam, length_penalty=length_penalty
                )
            else:
                ids = impl.decoding.greedy_decode(model, src, src_mask, max_len, BOS_ID, EOS_ID)
        for row, i in zip(ids.tolist(), chunk):
            out[i] = tgt_vocab.decode(row)
    return out


@torch.no_grad()
def attention_maps(
    model, impl, src_vocab: Vocab, tgt_vocab: Vocab, sentence: str, translation: str | None = None, *, device=None
) -> dict:
    """The attention weights of one example, for the pictures.

    The model reads ``sentence`` and, teacher-forced, its ``translation`` (greedy when not
    given). Returns plain data::

        {"source": [...source tokens..., "</s>"],
         "target": [...translation tokens..., "</s>"],   # row i is the step that output token i
         "cross":   (h, T_tgt, T_src) nested lists, last decoder layer's cross-attention,
         "encoder": (h, T_src, T_src) nested lists, last encoder layer's self-attention}

    ``cross`` / ``encoder`` are None when the model does not keep ``attn_weights``.
    """
    device = torch.device(device) if device else next(model.parameters()).device
    model.eval()
    if translation is None:
        translation = translate(model, impl, src_vocab, tgt_vocab, [sentence], device=device)[0]
    src_tokens, tgt_tokens = tokenize(sentence), tokenize(translation)
    src = torch.tensor([src_vocab.encode(src_tokens, eos=True)], device=device)
    tgt_in = torch.tensor([tgt_vocab.encode(tgt_tokens, bos=True)], device=device)
    src_mask = impl.masks.padding_mask(src, PAD_ID)
    tgt_mask = impl.masks.target_mask(tgt_in, PAD_ID)
    model(src, tgt_in, src_mask, tgt_mask)

    def weights(layers, name):
        try:
            w = getattr(layers[len(layers) - 1], name).attn_weights
        except (AttributeError, IndexError, TypeError):
            return None
        if w is None:
            return None
        w = torch.as_tensor(w).detach().float().cpu()
        return w[0].tolist() if w.dim() == 4 else w.tolist()

    return {
        "source": src_tokens + ["</s>"],
        "target": tgt_tokens + ["</s>"],
        "cross": weights(model.decoder.layers, "cross_attn"),
        "encoder": weights(model.encoder.layers, "self_attn"),
    }
