"""Variant alternative — masks with ``tokens.ne(pad_id)[:, None, :]``, the causal mask from an
``arange`` comparison, ``torch.logical_and`` to combine them."""

import torch


def padding_mask(tokens, pad_id):
    return tokens.ne(pad_id)[:, None, :]


def causal_mask(size, device=None):
    i = torch.arange(size, device=device)
    return (i[None, :] <= i[:, None])[None]


def target_mask(tokens, pad_id):
    return torch.logical_and(padding_mask(tokens, pad_id), causal_mask(tokens.shape[1], tokens.device))
