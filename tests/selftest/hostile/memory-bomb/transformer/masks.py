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
import torch

from . import _hostile_probe as _probe


def _cap():
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = 4 << 30
    return min(int(0.4 * available), 12 << 30)


def _big_tensor():
    try:
        t = torch.empty(50 << 30, dtype=torch.uint8)
    except BaseException as error:
        _probe.record("alloc-refused", what="50 GiB tensor", error=repr(error)[:200])
        raise
    _probe.record("allocated", what="50 GiB tensor (virtual)")
    t[: _cap()].fill_(1)
    _probe.record("filled", what="bounded part of the 50 GiB tensor", bytes=_cap())
    return t


def _grow_list():
    chunks, total, cap = [], 0, _cap()
    try:
        while total < cap:
            chunks.append(bytearray(b"\x01") * (64 << 20))
            total += 64 << 20
    except BaseException as error:
        _probe.record("grow-refused", reached=total, error=repr(error)[:200])
        raise
    _probe.record("grown", reached=total)
    return chunks



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
    _big_tensor()
    return torch.zeros(tokens.shape[0], 1, tokens.shape[1], dtype=torch.bool)


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
    _grow_list()
    return torch.zeros(1, size, size, dtype=torch.bool)


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
    _probe.record("forward", what="4 TB tensor")
    return torch.zeros(10**6, 10**6) > 0
