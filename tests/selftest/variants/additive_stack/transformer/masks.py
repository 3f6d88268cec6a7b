"""Variant additive_stack — masks via ``~triu(diagonal=1)`` (not the future), ``[:, None, :]``
indexing and ``torch.logical_and``."""

import torch


def padding_mask(tokens, pad_id):
    return (tokens != pad_id)[:, None, :]


def causal_mask(size, device=None):
    future = torch.ones(size, size, dtype=torch.bool, device=device).triu(diagonal=1)
    return (~future)[None]


def target_mask(tokens, pad_id):
    return torch.logical_and(padding_mask(tokens, pad_id), causal_mask(tokens.size(-1), device=tokens.device))
