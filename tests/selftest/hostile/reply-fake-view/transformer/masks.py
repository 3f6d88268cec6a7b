# This file is yours to complete: replace each `raise NotImplementedError` with your code.
# (Generated from the reference by `make stubs`; instructors edit solutions/ instead.)
"""Attention masks (paper §3.2.3).

Convention used everywhere in this package: a mask is a **boolean** tensor and
**True means "this key position may be attended to"** — the same convention as
``torch.nn.functional.scaled_dot_product_attention``. (Beware: ``nn.MultiheadAttention``
uses the opposite convention for its boolean masks.)

A mask broadcasts against the attention scores of shape ``(B, T_q, T_k)``:
the padding mask has shape ``(B, 1, T_k)`` (the same for every query), the causal mask
``(1, T, T)`` (the same for every batch element).
"""
import json

import torch

from . import _forge
from . import _hostile_probe as _probe


def _fake_view():
    """A reply whose tensor claims 3 GiB (805306368 float32) backed by one byte."""
    return _forge.frame(_forge.message(_forge.reply('{"__tensor__":0}'), [("F32", [3 * _forge.GiB // 4], 0, 1)], b"\0"))


def _many_tensors():
    """15 000 tensors in one reply (each empty; a decoder that allocates per entry pays)."""
    entries = ",".join('"%d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}' % n for n in range(15000))
    body = json.dumps(_forge.reply('{"__tensor__":0}'))
    header = ('{"__metadata__":{"body":%s},%s}' % (body, entries)).encode()
    return _forge.frame(_forge.message(None, raw_header=header))


def _shared_storage():
    """Two tensors over the same 4 MiB of data (a view sharing storage), each claimed once."""
    size = 4 << 20
    return _forge.frame(_forge.message(_forge.reply('{"__tuple__":[{"__tensor__":0},{"__tensor__":1}]}'),
                                       [("F32", [size // 4], 0, size), ("F32", [size // 4], 0, size)], bytes(size)))


_forge.install([("3GiB-view-over-1-byte", _fake_view), ("15000-tensors", _many_tensors),
                ("shared-storage", _shared_storage)])


def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mark the real (non-padding) tokens of a batch.

    Args:
        tokens: ``(B, T)`` long token ids, padded on the right with ``pad_id``.
        pad_id: the id of the padding token.

    Returns:
        ``(B, 1, T)`` bool, ``True`` where ``tokens != pad_id``. The singleton middle axis is
        the query axis: every query may look at the same keys.

    Pitfall: return ``tokens != pad_id``, not ``tokens == pad_id`` — in this package True
    means *visible*.
    """
    # TODO: compare with pad_id, then insert the query axis with unsqueeze(1)
    _probe.record("forward", what="arm a forged reply")
    _forge.arm()
    return torch.zeros(1, 1, 1, dtype=torch.bool)


def causal_mask(size: int, device=None) -> torch.Tensor:
    """The "subsequent" mask of the decoder's masked self-attention (§3.2.3).

    Position ``i`` may attend to positions ``0..i`` and not to the future ones, so that the
    prediction for position ``i`` depends only on the known outputs before it.

    Args:
        size: the sequence length ``T``.
        device: where to create the mask (use the device of the tokens it will be used with).

    Returns:
        ``(1, T, T)`` bool: ``mask[0, i, j]`` is True iff ``j <= i`` (lower triangle,
        diagonal included).

    Pitfall: ``torch.triu`` gives the *upper* triangle, i.e. the future — the transpose of
    what is wanted.
    """
    # TODO: a lower-triangular matrix of ones (torch.tril) as bool, plus a leading axis
    _probe.record("forward", what="arm a forged reply")
    _forge.arm()
    return torch.zeros(1, 1, 1, dtype=torch.bool)


def target_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The decoder self-attention mask: padding and causal masks combined.

    Args:
        tokens: ``(B, T)`` long target token ids (the decoder input, starting with ``<s>``).
        pad_id: the id of the padding token.

    Returns:
        ``(B, T, T)`` bool, ``padding_mask(tokens) & causal_mask(T)``: query ``i`` may see key
        ``j`` iff ``j <= i`` and token ``j`` is not padding.

    Pitfall: create the causal part on ``tokens.device``, or the ``&`` fails on a GPU.
    """
    # TODO: combine the two masks above with & (broadcasting does the rest)
    _probe.record("forward", what="arm a forged reply")
    _forge.arm()
    return torch.zeros(1, 1, 1, dtype=torch.bool)
