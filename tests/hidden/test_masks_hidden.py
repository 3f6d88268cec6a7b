"""Hidden checks of part `masks` (run only when grading): long sequences and pad ids other
than 0. Every input is one the docstrings allow: (B, T) long tokens padded on the right, any
pad id, any size >= 1.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.checks import assert_equal, check
from tests.support.strategies import causal, right_padded_tokens, seeds


@given(size=st.sampled_from([13, 32, 100]))
def test_causal_mask_for_long_sequences(impl, size):
    assert_equal(
        impl.masks.causal_mask(size),
        causal(size),
        what=_("causal mask"),
        case=f"causal_mask({size})",
        hint=_("build it from size: torch.tril(torch.ones(size, size, dtype=torch.bool)).unsqueeze(0)"),
    )


@given(batch=st.integers(1, 6), length=st.integers(1, 40), seed=seeds, pad_id=st.sampled_from([1, 2, 57, 199]))
def test_padding_mask_with_any_pad_id(impl, batch, length, seed, pad_id):
    """Padding mask with a pad id other than 0, next to larger and smaller token ids."""
    tokens = right_padded_tokens(batch, length, seed, pad_id, 0, 200, lengths_seed=seed + 7)
    assert_equal(
        impl.masks.padding_mask(tokens, pad_id),
        (tokens != pad_id).unsqueeze(1),
        what=_("padding mask"),
        case=_("padding_mask(tokens of shape {shape}, pad_id={pad_id})", shape=tuple(tokens.shape), pad_id=pad_id),
        hint=_("compare with the pad_id argument (never a fixed 0), then unsqueeze(1)"),
        likely_bugs={_("the padding id is fixed to 0 instead of the pad_id argument"): (tokens != 0).unsqueeze(1)},
    )


@given(batch=st.integers(1, 4), length=st.integers(1, 20), seed=seeds, pad_id=st.sampled_from([2, 9]))
def test_target_mask_with_any_pad_id(impl, batch, length, seed, pad_id):
    """Target mask with a pad id other than 0 (tokens include the id 0)."""
    tokens = right_padded_tokens(batch, length, seed, pad_id, 0, 12, lengths_seed=seed + 7)
    expected = (tokens != pad_id).unsqueeze(1) & causal(length)
    assert_equal(
        impl.masks.target_mask(tokens, pad_id),
        expected,
        what=_("target mask"),
        case=_("target_mask(tokens of shape {shape}, pad_id={pad_id})", shape=tuple(tokens.shape), pad_id=pad_id),
        hint=_("pass pad_id on to padding_mask; combine with causal_mask(T) using &"),
        likely_bugs={
            _("the padding id is fixed to 0 instead of the pad_id argument"): (tokens != 0).unsqueeze(1)
            & causal(length)
        },
    )


@given(length=st.sampled_from([33, 64]), seed=seeds)
def test_target_mask_for_long_sequences(impl, length, seed):
    """Target mask of a long padded batch: the causal part must be built for T, not a fixed size."""
    tokens = right_padded_tokens(2, length, seed, 0, 1, 50, lengths_seed=seed + 7)
    expected = (tokens != 0).unsqueeze(1) & causal(length)
    actual = impl.masks.target_mask(tokens, 0)
    check(
        actual.dtype == torch.bool,
        _("the target mask must be bool, got {dtype}", dtype=actual.dtype),
        _("combine two bool masks with &"),
        case=f"target_mask(tokens {tuple(tokens.shape)}, 0)",
    )
    assert_equal(
        actual,
        expected,
        what=_("target mask"),
        case=_("target_mask(tokens of shape {shape}, pad_id={pad_id})", shape=tuple(tokens.shape), pad_id=0),
        hint=_("causal_mask(tokens.size(1)) & padding_mask(tokens, pad_id)"),
    )
