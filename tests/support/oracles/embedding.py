"""Independent numpy float64 oracles for the embedding part (paper §3.4, §3.5).

Nothing here imports the code under test or the reference solution. The positional-encoding
table is built from the paper's formula

    pe[p, 2i]   = sin(p / 10000^(2i / d_model))
    pe[p, 2i+1] = cos(p / 10000^(2i / d_model))

(for an odd ``d_model`` the last feature is a lone sine), together with the tables that the
usual mistakes produce, so that tests can name the mistake a student made.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from grader.i18n import _

BASE = 10000.0

# variant name -> what a student did (used as the key of ``likely_bugs``)
PE_BUGS = {
    "swapped": _(
        "sin and cos are swapped: the even features (2i) must take the sine, the odd features (2i+1) the cosine"
    ),
    "feature_index": _(
        "the exponent uses the feature index j (10000^(2j/d_model)) instead of the even index 2i "
        "shared by both features of a pair"
    ),
    "j_over_d": _(
        "each feature has its own frequency 10000^(j/d_model): sin and cos of one pair must share "
        "the exponent 2i/d_model (use the even index for both)"
    ),
    "pair_index": _("the exponent is i/d_model with the pair index i (10000^(i/d_model)): it must be 2i/d_model"),
    "from_one": _("positions start at 1: the first position must be p = 0 (pe[0] = [0, 1, 0, 1, ...])"),
    "halves": _(
        "sines and cosines are concatenated ([sin..., cos...]) instead of interleaved "
        "(pe[:, 0::2] = sin, pe[:, 1::2] = cos)"
    ),
}


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def sinusoid_table(max_len: int, d_model: int, variant: str = "correct") -> np.ndarray:
    """The ``(max_len, d_model)`` float64 positional-encoding table (or a known-wrong variant,
    see ``PE_BUGS``)."""
    first = 1 if variant == "from_one" else 0
    p = np.arange(first, first + max_len, dtype=np.float64)[:, None]
    j = np.arange(d_model)[None, :]
    if variant == "halves":
        half = (d_model + 1) // 2  # sines first, then cosines, both over the pair frequencies
        i = np.concatenate([np.arange(half), np.arange(d_model - half)])[None, :]
        angle = p / BASE ** (2.0 * i / d_model)
        return np.where(j < half, np.sin(angle), np.cos(angle))
    exponent = {
        "feature_index": 2.0 * j / d_model,
        "j_over_d": j / d_model,
        "pair_index": (j // 2) / d_model,
    }.get(variant, (j - j % 2) / d_model)
    angle = p / BASE**exponent
    even = j % 2 == 0
    if variant == "swapped":
        return np.where(even, np.cos(angle), np.sin(angle))
    return np.where(even, np.sin(angle), np.cos(angle))


def pe_bug_tables(max_len: int, d_model: int, dtype=torch.float64) -> dict:
    """``{what a student did: the table it gives}`` for every variant of ``PE_BUGS`` (``likely_bugs``)."""
    return {text: torch.from_numpy(sinusoid_table(max_len, d_model, name)).to(dtype) for name, text in PE_BUGS.items()}


def sinusoid_table_by_loop(max_len: int, d_model: int) -> np.ndarray:
    """The same table computed entry by entry with ``math`` (used only to check the oracle)."""
    table = np.zeros((max_len, d_model))
    for p in range(max_len):
        for i in range(0, d_model, 2):
            frequency = math.exp(-math.log(BASE) * i / d_model)
            table[p, i] = math.sin(p * frequency)
            if i + 1 < d_model:
                table[p, i + 1] = math.cos(p * frequency)
    return table


def pair_frequencies(d_model: int) -> np.ndarray:
    """w_i = 1 / 10000^(2i / d_model) for every (sin, cos) pair (the lone sine excluded)."""
    return 1.0 / BASE ** (2.0 * np.arange(d_model // 2) / d_model)


def rotate_pairs(rows: np.ndarray, sin_k: np.ndarray, cos_k: np.ndarray) -> np.ndarray:
    """Rotate each (sin, cos) pair of ``rows`` (``(..., d_model)``) by the angle whose sine and
    cosine are ``sin_k``, ``cos_k`` (one per pair):

        sin(a + b) = sin a cos b + cos a sin b,  cos(a + b) = cos a cos b - sin a sin b.

    The lone last feature of an odd ``d_model`` is dropped."""
    rows = _as_numpy(rows)
    pairs = rows.shape[-1] // 2
    s, c = rows[..., 0 : 2 * pairs : 2], rows[..., 1 : 2 * pairs : 2]
    out = np.empty(rows.shape[:-1] + (2 * pairs,))
    out[..., 0::2] = s * cos_k + c * sin_k
    out[..., 1::2] = c * cos_k - s * sin_k
    return out


def token_embedding(weight, tokens, scale: float | None = None) -> np.ndarray:
    """``weight[tokens] * sqrt(d_model)`` in float64 (``scale`` overrides the factor)."""
    weight = _as_numpy(weight)
    tokens = np.asarray(tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens)
    if scale is None:
        scale = math.sqrt(weight.shape[1])
    return weight[tokens] * scale


def token_embedding_grad(vocab_size: int, tokens, upstream, scale: float, padding_idx=None) -> np.ndarray:
    """Gradient of ``sum(token_embedding(W, tokens) * upstream)`` with respect to ``W``: every
    occurrence of token v adds ``scale * upstream`` to row v; the padding row gets none."""
    tokens = np.asarray(tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens)
    upstream = _as_numpy(upstream)
    grad = np.zeros((vocab_size, upstream.shape[-1]))
    np.add.at(grad, tokens.reshape(-1), upstream.reshape(-1, upstream.shape[-1]) * scale)
    if padding_idx is not None:
        grad[padding_idx] = 0.0
    return grad
