"""Part `masks`: padding_mask, causal_mask, target_mask (paper §3.2.3).

Convention: bool masks, True = this key may be attended to.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.checks import assert_equal, check
from tests.support.strategies import batch_sizes, causal, lengths, right_padded_tokens, seeds

PAD = 0


@given(batch=batch_sizes, length=lengths, seed=seeds, pad_id=st.sampled_from([0, 3]))
def test_padding_mask_marks_real_tokens(impl, batch, length, seed, pad_id):
    tokens = right_padded_tokens(batch, length, seed, pad_id, 1, 20, lengths_seed=seed + 1)
    actual = impl.masks.padding_mask(tokens, pad_id)
    expected = (tokens != pad_id).unsqueeze(1)
    assert_equal(
        actual,
        expected,
        what=_("padding mask"),
        case=_("padding_mask(tokens of shape {shape}, pad_id={pad_id})", shape=tuple(tokens.shape), pad_id=pad_id),
        hint=_("shape (B, 1, T), True where the token is NOT padding"),
        likely_bugs={
            _("the mask is inverted: True must mean 'real token, may be attended to'"): ~expected,
            _(
                "the mask has shape (B, T, 1) instead of (B, 1, T): unsqueeze(1), so that it broadcasts over "
                "the queries"
            ): expected.transpose(1, 2),
        },
    )


@given(size=st.integers(1, 12))
def test_causal_mask_is_lower_triangular(impl, size):
    expected = causal(size)
    actual = impl.masks.causal_mask(size)
    assert_equal(
        actual,
        expected,
        what=_("causal mask"),
        case=_("causal_mask({size})", size=size),
        hint=_("shape (1, T, T); position i may see 0..i (torch.tril), as bool"),
        likely_bugs={
            _(
                "the mask is transposed: it lets position i see the future j > i (torch.triu instead of torch.tril)"
            ): expected.transpose(-2, -1),
            _("the diagonal is missing: position i must be allowed to see itself"): torch.tril(
                torch.ones(size, size, dtype=torch.bool), diagonal=-1
            ).unsqueeze(0),
            _("the mask is inverted: True must mean 'may attend'"): ~expected,
            _("off by one: position i sees i+1 too (diagonal=1)"): torch.tril(
                torch.ones(size, size, dtype=torch.bool), diagonal=1
            ).unsqueeze(0),
        },
    )


def test_causal_mask_on_requested_device(impl):
    mask = impl.masks.causal_mask(4, device=torch.device("cpu"))
    case = _("causal_mask(4, device='cpu')")
    check(
        mask.device.type == "cpu",
        _("the mask came back on the device {device}, not on the requested cpu", device=mask.device),
        _("create the mask on the device argument: torch.ones(..., device=device)"),
        case=case,
    )
    check(
        mask.dtype == torch.bool,
        _("the causal mask must be bool, got {dtype}", dtype=mask.dtype),
        _("use dtype=torch.bool"),
        case=case,
    )


@given(batch=batch_sizes, length=lengths, seed=seeds)
def test_target_mask_combines_padding_and_causal(impl, batch, length, seed):
    tokens = right_padded_tokens(batch, length, seed, PAD, 1, 20, lengths_seed=seed + 1)
    expected = (tokens != PAD).unsqueeze(1) & causal(length)
    actual = impl.masks.target_mask(tokens, PAD)
    assert_equal(
        actual,
        expected,
        what=_("target mask"),
        case=_("target_mask(tokens of shape {shape}, pad_id={pad_id})", shape=tuple(tokens.shape), pad_id=PAD),
        hint=_("shape (B, T, T): padding_mask(tokens) & causal_mask(T); query i sees key j iff j <= i and j is real"),
        likely_bugs={
            _("padding and causal combined with | instead of &"): (tokens != PAD).unsqueeze(1) | causal(length),
            _("only the causal part: padding keys are not hidden"): causal(length).expand(batch, -1, -1),
            _("only the padding part: the future is not hidden"): (tokens != PAD).unsqueeze(1).expand(-1, length, -1),
        },
    )


def test_masks_length_one(impl):
    tokens = torch.tensor([[5]])
    assert_equal(
        impl.masks.padding_mask(tokens, PAD),
        torch.tensor([[[True]]]),
        what=_("padding mask"),
        case=_("padding_mask([[5]], pad_id=0)"),
    )
    assert_equal(impl.masks.causal_mask(1), torch.tensor([[[True]]]), what=_("causal mask"), case=_("causal_mask(1)"))
    assert_equal(
        impl.masks.target_mask(tokens, PAD),
        torch.tensor([[[True]]]),
        what=_("target mask"),
        case=_("target_mask([[5]], pad_id=0)"),
    )
