"""Hypothesis strategies shared by the whole suite (one place, as in minitorch).

Sizes are kept small so that the public suite stays fast; the `deep` profile explores more
examples, not bigger ones.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st

DTYPES = (torch.float32, torch.float64)

batch_sizes = st.integers(1, 3)
lengths = st.integers(1, 7)
head_counts = st.integers(1, 4)
head_dims = st.integers(1, 6)
dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**31 - 1)


def tensor(shape, seed: int, dtype=torch.float64, scale: float = 1.0) -> torch.Tensor:
    """A reproducible standard-normal tensor from its own generator (not the global one)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


def int_tensor(shape, seed: int, low: int, high: int) -> torch.Tensor:
    """Reproducible integers in [low, high) as a long tensor."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=generator)


def right_padded_tokens(
    batch: int, length: int, seed: int, pad_id: int, low: int, high: int, *, lengths_seed: int
) -> torch.Tensor:
    """``(B, T)`` token ids in [low, high) other than ``pad_id``, then right padding (``pad_id``);
    every row keeps at least one token. The row lengths come from their own seed."""
    tokens = int_tensor((batch, length), seed, low, high)
    tokens[tokens == pad_id] = pad_id + 1  # the pad id only in the padding: "padded on the right"
    generator = torch.Generator().manual_seed(lengths_seed)
    real = torch.randint(1, length + 1, (batch,), generator=generator)
    tokens[torch.arange(length)[None, :] >= real[:, None]] = pad_id
    return tokens


def lengths_with_padding(batch: int, max_len: int, seed: int) -> list[int]:
    """Per-row real lengths in [1, max_len]; at least one row uses the full length."""
    rng = np.random.default_rng(seed)
    real = rng.integers(1, max_len + 1, size=batch).tolist()
    real[int(rng.integers(batch))] = max_len
    return real


def key_padding_mask(batch: int, t_k: int, seed: int) -> torch.Tensor:
    """``(B, 1, T_k)`` bool, True = real key; every row keeps at least its first key."""
    real = lengths_with_padding(batch, t_k, seed)
    return (torch.arange(t_k)[None, :] < torch.tensor(real)[:, None]).unsqueeze(1)


def causal(size: int) -> torch.Tensor:
    """``(1, T, T)`` bool, True on and below the diagonal: position i may attend to 0..i."""
    return torch.tril(torch.ones(size, size, dtype=torch.bool)).unsqueeze(0)


def random_mask(batch: int, t_q: int, t_k: int, seed: int) -> torch.Tensor:
    """``(B, T_q, T_k)`` bool with random holes; every query row keeps at least one key."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, t_q, t_k, generator=generator) < 0.6
    keep = torch.randint(0, t_k, (batch, t_q), generator=generator)
    mask[torch.arange(batch)[:, None], torch.arange(t_q)[None, :], keep] = True
    return mask


def attention_mask(kind: str | None, batch: int, t_q: int, t_k: int, seed: int) -> torch.Tensor | None:
    """A mask of one of the kinds that ``oracles.attention.mask_label`` describes: None, "padding"
    ``(B, 1, T_k)``, "random" ``(B, T_q, T_k)``, "shared" ``(1, T_q, T_k)`` or "causal" ``(1, T_q, T_q)``."""
    if kind == "padding":
        return key_padding_mask(batch, t_k, seed)
    if kind == "random":
        return random_mask(batch, t_q, t_k, seed)
    if kind == "shared":
        return random_mask(1, t_q, t_k, seed)
    if kind == "causal":
        return causal(t_q)
    return None


@st.composite
def attention_shapes(draw):
    """(B, T_q, T_k, d_k, d_v) for scaled dot-product attention."""
    return (draw(batch_sizes), draw(lengths), draw(lengths), draw(head_dims), draw(head_dims))


@st.composite
def model_dims(draw):
    """(d_model, num_heads) with d_model divisible by num_heads."""
    heads = draw(head_counts)
    return heads * draw(st.integers(1, 4)), heads


def fewer_examples() -> settings:
    """For properties that need fewer examples than a test against the reference: 2/5 of the
    profile's examples, at least 5 (the `deep` profile still scales them up). Call it where a
    test is defined, once ``conftest.py`` has loaded the profile."""
    return settings(max_examples=max(5, settings().max_examples * 2 // 5))
