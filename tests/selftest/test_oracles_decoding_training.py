"""Self-tests of the references of the `decoding` and `training` parts, independent of any
implementation under test (no `impl` fixture): the toys in grader/runtime/toys.py, the naive
decoders and the brute-force enumeration in tests/support/oracles/decoding.py, and the numpy
label-smoothing loss and the noam schedule in tests/support/oracles/training.py.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.i18n import _
from grader.runtime.toys import (
    FORBIDDEN_LOGIT,
    TOY_CLASSES,
    AttentionToy,
    MarkovToy,
    PrefixToy,
    SourceMarkovToy,
    build_toy,
)
from tests.support.oracles import decoding as D
from tests.support.oracles import training as T
from tests.support.oracles.decoding import BOS, EOS, PAD, A, B, C
from tests.support.strategies import dtypes, seeds

DTYPE_NAMES = ("float32", "float64")


def make_toy(kind, seed, dtype="float64", **kwargs):
    if kind == "markov":
        return MarkovToy.random(seed, 7, dtype=dtype, **kwargs)
    if kind == "source":
        return SourceMarkovToy.random(seed, 3, 7, dtype=dtype, **kwargs)
    if kind == "attention":
        return AttentionToy.random(seed, 7, 9, d_model=5, num_layers=2, dtype=dtype, **kwargs)
    return PrefixToy.random(seed, 7, 9, d_model=5, dtype=dtype, **kwargs)


def source(batch, length, seed):
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 9, (batch, length), generator=generator)
    real = torch.randint(1, length + 1, (batch,), generator=generator)
    src[torch.arange(length)[None, :] >= real[:, None]] = PAD
    return src, (src != PAD).unsqueeze(1)


KINDS = st.sampled_from(["markov", "source", "prefix", "attention"])


# --- toys ---------------------------------------------------------------------------------------


@given(kind=KINDS, seed=seeds, dtype=st.sampled_from(DTYPE_NAMES))
def test_toys_rebuild_from_name_kwargs_and_state_dict(kind, seed, dtype):
    toy = make_toy(kind, seed, dtype)
    name, kwargs, state = toy.describe()
    assert name in TOY_CLASSES
    assert all(isinstance(v, (int, float, str, bool)) for v in kwargs.values()), kwargs
    rebuilt = build_toy(name, kwargs, state)
    src, mask = source(2, 4, seed)
    tgt = torch.randint(2, 7, (2, 5), generator=torch.Generator().manual_seed(seed))
    tgt_mask = D.causal(5)
    expected = toy(src, tgt, mask, tgt_mask)
    actual = rebuilt(src, tgt, mask, tgt_mask)
    assert actual.dtype == getattr(torch, dtype)
    assert torch.equal(actual, expected)


@given(kind=KINDS, seed=seeds, length=st.integers(1, 6))
def test_toys_are_causal(kind, seed, length):
    toy = make_toy(kind, seed)
    src, mask = source(2, 4, seed)
    memory = toy.encode(src, mask)
    tgt = torch.randint(2, 7, (2, length), generator=torch.Generator().manual_seed(seed))
    full = toy.decode(tgt, memory, mask, D.causal(length))
    for t in range(1, length + 1):
        prefix = toy.decode(tgt[:, :t], memory, mask, D.causal(t))
        assert torch.allclose(prefix, full[:, :t], rtol=1e-12, atol=1e-12)
    changed = tgt.clone()
    changed[:, -1] = (changed[:, -1] + 1 - 2) % 5 + 2  # another token in [2, 7)
    assert torch.allclose(toy.decode(changed, memory, mask, D.causal(length))[:, :-1], full[:, :-1], atol=1e-12)


def test_markov_toy_logits_are_the_table():
    toy = D.greedy_trap_toy()
    probs = toy.generator(toy.decode(torch.tensor([[BOS, A, B]]), None, None, None))[0].exp()
    assert torch.allclose(probs[0, [A, B, EOS]], torch.tensor([0.5, 0.4, 0.1], dtype=torch.float64))
    assert torch.allclose(probs[1, [EOS, A, B]], torch.tensor([0.34, 0.33, 0.33], dtype=torch.float64))
    assert torch.allclose(probs[2, [EOS, A, B]], torch.tensor([0.9, 0.05, 0.05], dtype=torch.float64))
    assert probs[:, PAD].max() < 1e-20 and probs[:, BOS].max() < 1e-20
    assert torch.allclose(probs.sum(-1), torch.ones(3, dtype=torch.float64))


def test_source_toy_reads_the_first_source_token():
    toy = D.two_context_toy()
    src = torch.tensor([[4, 7, 0], [3, 0, 0]])
    mask = (src != PAD).unsqueeze(1)
    memory = toy.encode(src, mask)
    assert memory.shape == (2, 3, 2)
    assert torch.equal(memory[:, 0].argmax(-1), torch.tensor([0, 1]))
    logits = toy.generator(toy.decode(torch.tensor([[BOS], [BOS]]), memory, mask, D.causal(1)))[:, -1]
    assert logits.argmax(-1).tolist() == [A, B]


@given(seed=seeds)
def test_prefix_toy_depends_on_prefix_source_and_mask(seed):
    toy = PrefixToy.random(seed, 7, 9, d_model=5)
    src = torch.tensor([[4, 5, 6, PAD]])
    mask = (src != PAD).unsqueeze(1)
    memory = toy.encode(src, mask)
    hidden = toy.decode(torch.tensor([[BOS, A, B]]), memory, mask, D.causal(3))[:, -1]
    other_prefix = toy.decode(torch.tensor([[BOS, B, B]]), memory, mask, D.causal(3))[:, -1]
    assert not torch.allclose(hidden, other_prefix)
    other_src = torch.tensor([[7, 5, 6, PAD]])
    assert not torch.allclose(
        hidden, toy.decode(torch.tensor([[BOS, A, B]]), toy.encode(other_src, mask), mask, D.causal(3))[:, -1]
    )
    trimmed = toy.decode(
        torch.tensor([[BOS, A, B]]), toy.encode(src[:, :3], mask[:, :, :3]), mask[:, :, :3], D.causal(3)
    )[:, -1]
    assert torch.allclose(hidden, trimmed, rtol=1e-12, atol=1e-12)
    unmasked = torch.ones_like(mask)
    assert not torch.allclose(
        hidden, toy.decode(torch.tensor([[BOS, A, B]]), toy.encode(src, unmasked), unmasked, D.causal(3))[:, -1]
    )


def test_attention_toy_needs_the_causal_mask():
    """Without the causal mask the earlier positions see the later tokens (the other toys are
    causal whatever mask they get), and greedy decoding mostly chooses other tokens: the
    decoding checks that use this toy rely on it. Rates over 40 seeds, as the toys are random."""
    earlier_changed = outputs_changed = 0
    for seed in range(40):
        toy = AttentionToy.random(seed, 7, 9, d_model=6, num_layers=2)
        src, mask = source(3, 5, seed)
        memory = toy.encode(src, mask)
        tgt = torch.randint(2, 7, (3, 4), generator=torch.Generator().manual_seed(seed))
        changed = tgt.clone()
        changed[:, -1] = (changed[:, -1] + 1 - 2) % 5 + 2
        unmasked = toy.decode(tgt, memory, mask, None)
        assert torch.equal(toy.decode(tgt, memory, mask, torch.ones(1, 4, 4, dtype=torch.bool)), unmasked)
        earlier_changed += not torch.allclose(toy.decode(changed, memory, mask, None)[:, :-1], unmasked[:, :-1])
        rows = D.greedy_rows(toy, src, mask, 6, BOS, EOS)[0]
        outputs_changed += D.greedy_rows(toy, src, mask, 6, BOS, EOS, causal_mask=False)[0] != rows
    assert earlier_changed == 40
    assert outputs_changed >= 24, outputs_changed


@given(seed=seeds, length=st.integers(1, 5))
def test_attention_toy_accepts_every_mask_layout(seed, length):
    toy = AttentionToy.random(seed, 7, 9, d_model=5)
    src, mask = source(3, 4, seed)
    memory = toy.encode(src, mask)
    tgt = torch.randint(2, 7, (3, length), generator=torch.Generator().manual_seed(seed))
    expected = toy.decode(tgt, memory, mask, D.causal(length))
    causal = D.causal(length)
    padded = torch.ones(3, 1, length, dtype=torch.bool)
    for layout in (
        causal[0],
        causal.expand(3, -1, -1),
        causal.unsqueeze(1).expand(3, 2, -1, -1),
        causal & padded,
        causal.to(torch.uint8),
    ):
        assert torch.equal(toy.decode(tgt, memory, mask, layout), expected)


@given(seed=seeds)
def test_attention_toy_reads_the_source_masks(seed):
    toy = AttentionToy.random(seed, 7, 9, d_model=5)
    src = torch.tensor([[4, 5, 6, PAD, PAD]])
    mask = (src != PAD).unsqueeze(1)
    tgt = torch.tensor([[BOS, A, B]])
    hidden = toy.decode(tgt, toy.encode(src, mask), mask, D.causal(3))
    trimmed = toy.decode(tgt, toy.encode(src[:, :3], mask[:, :, :3]), mask[:, :, :3], D.causal(3))
    assert torch.allclose(hidden, trimmed, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(hidden, toy.decode(tgt, toy.encode(src, mask), None, D.causal(3)))
    assert not torch.allclose(toy.encode(src, mask)[:, :3], toy.encode(src, None)[:, :3])


@given(kind=KINDS, seed=seeds)
def test_random_toys_never_generate_forbidden_tokens(kind, seed):
    allowed = [EOS, 3, 5]
    toy = make_toy(kind, seed, allowed=allowed)
    src, mask = source(2, 3, seed)
    tgt = torch.randint(2, 7, (2, 4), generator=torch.Generator().manual_seed(seed))
    log_probs = toy(src, tgt, mask, D.causal(4)).log_softmax(-1)
    forbidden = [t for t in range(7) if t not in allowed]
    assert log_probs[..., forbidden].max() < FORBIDDEN_LOGIT + 30
    assert log_probs[..., allowed].min() > -30


# --- decoding oracles -------------------------------------------------------------------------------


def test_naive_greedy_follows_the_table():
    toy = D.greedy_trap_toy()
    src, mask = source(2, 3, 0)
    rows, margin = D.greedy_rows(toy, src, mask, 4, BOS, EOS)
    assert rows == [D.GREEDY_TRAP_GREEDY] * 2
    assert margin == pytest.approx(math.log(0.34) - math.log(0.33))
    assert D.greedy_rows_ignoring_eos(toy, src, mask, 4, BOS) == [[A, EOS, A, EOS]] * 2


@given(kind=KINDS, seed=seeds, max_len=st.integers(1, 6), dtype=st.sampled_from(DTYPE_NAMES))
def test_greedy_output_agrees_with_teacher_forcing(kind, seed, max_len, dtype):
    toy = make_toy(kind, seed, dtype)
    src, mask = source(3, 4, seed)
    rows, margin = D.greedy_rows(toy, src, mask, max_len, BOS, EOS)
    if margin < 1e-4:
        return
    assert D.teacher_forced_argmax(toy, src, mask, rows, BOS) == rows
    if kind != "attention":  # causal by construction: the mask flags change nothing
        assert D.greedy_rows(toy, src, mask, max_len, BOS, EOS, causal_mask=False)[0] == rows


def test_mask_probe_tells_the_forgotten_masks_apart():
    toy, src, mask, max_len = D.mask_probe()
    assert bool((~mask).any(dim=-1).sum() >= 2)  # padded sources
    variants = [
        {},
        dict(causal_mask=False),
        dict(decode_src_mask=False),
        dict(encode_src_mask=False),
        dict(encode_src_mask=False, decode_src_mask=False),
    ]
    outputs = []
    for flags in variants:
        rows, margin = D.greedy_rows(toy, src, mask, max_len, BOS, EOS, **flags)
        assert margin > 0.05, flags
        outputs.append(rows)
    assert all(outputs[i] != outputs[j] for i in range(len(outputs)) for j in range(i))
    assert all(row != correct for row, correct in zip(outputs[1], outputs[0]))  # no causal mask: every row


def test_generated_rows():
    tokens = torch.tensor([[A, EOS, PAD], [B, C, A], [EOS, PAD, PAD], [A, PAD, PAD], [PAD, PAD, PAD]])
    assert D.generated_rows(tokens, EOS, PAD) == [[A, EOS], [B, C, A], [EOS], [A], []]


def test_layout_and_strip():
    out = D.layout([[A, EOS], [B, C, EOS]], PAD)
    assert out.tolist() == [[A, EOS, PAD], [B, C, EOS]] and out.dtype == torch.long
    padded = D.layout([[A, EOS], [EOS]], PAD, width=5)
    assert D.strip_trailing_pad(padded, PAD).tolist() == [[A, EOS], [EOS, PAD]]
    assert D.with_bos(out, BOS)[:, 0].tolist() == [BOS, BOS]
    bug = D.bug_no_stop_until_all_done([[A, EOS, A, EOS], [B, C, EOS, A]], [[A, EOS], [B, C, EOS]], PAD)
    assert bug.tolist() == [[A, EOS, A], [B, C, EOS]]


@settings(max_examples=15)
@given(kind=KINDS, seed=seeds, max_len=st.integers(1, 3), real_tokens=st.integers(1, 3))
def test_enumeration_is_complete_and_matches_teacher_forcing(kind, seed, max_len, real_tokens):
    allowed = [EOS] + list(range(3, 3 + real_tokens))
    toy = make_toy(kind, seed, allowed=allowed)
    src, mask = source(1, 3, seed)
    hyps = D.enumerate_hypotheses(toy, src, mask, max_len, BOS, EOS, allowed)
    assert sorted(tuple(s) for s, _, _ in hyps) == sorted(
        tuple(s) for s in D.all_final_sequences(max_len, EOS, allowed)
    )
    assert len(hyps) == D.hypothesis_count(max_len, real_tokens)
    for seq, lp, n in hyps:
        assert n == len(seq)
        assert lp == pytest.approx(D.teacher_forced_log_prob(toy, src, mask, seq, BOS), abs=1e-9)
    # the final hypotheses partition the probability mass of the allowed tokens
    assert sum(math.exp(lp) for _, lp, _ in hyps) == pytest.approx(1.0, abs=1e-9)


def test_hand_built_toys_have_the_documented_answers():
    src = torch.tensor([[5, 6, 7]])
    mask = (src != PAD).unsqueeze(1)

    def best(toy, max_len, alpha, allowed):
        return D.brute_force_best(toy, src, mask, max_len, BOS, EOS, alpha, allowed)

    rows, margin, _ = best(D.greedy_trap_toy(), 4, 0.6, [EOS, A, B])
    assert rows == [D.GREEDY_TRAP_BEST] and margin > 0.1
    rows, margin, _ = best(D.length_penalty_toy(), 4, 0.6, [EOS, A, B, C])
    assert rows == [D.LENGTH_PENALTY_LONG] and margin > 0.02
    rows, margin, _ = best(D.length_penalty_toy(), 4, 1.0, [EOS, A, B, C])
    assert rows == [D.LENGTH_PENALTY_LONG]
    rows, margin, _ = best(D.length_penalty_toy(), 4, 0.0, [EOS, A, B, C])
    assert rows == [D.LENGTH_PENALTY_SHORT] and margin > 0.1
    rows, margin, _ = best(D.open_hypothesis_toy(), 3, 0.6, [EOS, A, B])
    assert rows == [D.OPEN_HYPOTHESIS_BEST] and margin > 1.0
    hyps = D.enumerate_hypotheses(D.open_hypothesis_toy(), src, mask, 3, BOS, EOS, [EOS, A, B])
    ended = max((D.gnmt_score(lp, n, 0.6), s) for s, lp, n in hyps if s[-1] == EOS)
    assert ended[1] == D.OPEN_HYPOTHESIS_BEST_ENDED

    toy = D.two_context_toy()
    src2 = torch.tensor([[4, 7, 0], [3, 0, 0]])
    mask2 = (src2 != PAD).unsqueeze(1)
    rows, margin, _ = D.brute_force_best(toy, src2, mask2, 5, BOS, EOS, 0.6, [EOS, A, B, C])
    assert rows == [D.TWO_CONTEXT_EVEN, D.TWO_CONTEXT_ODD] and margin > 0.5
    assert D.greedy_rows(toy, src2, mask2, 5, BOS, EOS)[0] == rows


def test_gnmt_score():
    assert D.gnmt_score(-1.2, 1, 0.6) == pytest.approx(-1.2)
    assert D.gnmt_score(-2.0, 4, 0.6) == pytest.approx(-2.0 / 1.5**0.6)
    assert D.gnmt_score(-2.0, 4, 0.0) == -2.0


# --- training oracles -----------------------------------------------------------------------------


@st.composite
def ls_cases(draw):
    n, v = draw(st.integers(1, 12)), draw(st.integers(2, 12))
    seed = draw(seeds)
    smoothing = draw(st.sampled_from([0.0, 0.1, 0.3, 0.7]))
    ignore_index = draw(st.sampled_from([0, -100, v - 1]))
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=generator, dtype=torch.float64) * draw(st.sampled_from([0.3, 3.0, 30.0]))
    target = torch.randint(0, v, (n,), generator=generator)
    target[torch.rand(n, generator=generator) < 0.4] = ignore_index
    if bool((target == ignore_index).all()):
        target[0] = (ignore_index + 1) % v if ignore_index >= 0 else 0
    return logits, target, smoothing, ignore_index


@given(case=ls_cases())
def test_numpy_label_smoothing_matches_cross_entropy(case):
    logits, target, smoothing, ignore_index = case
    expected = float(F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=smoothing))
    assert T.label_smoothing_np(*case) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert float(T.label_smoothing_builtin(*case)) == expected


@given(case=ls_cases())
def test_numpy_label_smoothing_gradient_matches_autograd(case):
    logits, target, smoothing, ignore_index = case
    leaf = logits.clone().requires_grad_(True)
    F.cross_entropy(leaf, target, ignore_index=ignore_index, label_smoothing=smoothing).backward()
    np.testing.assert_allclose(T.label_smoothing_grad_np(*case), leaf.grad.numpy(), rtol=1e-10, atol=1e-14)


@given(case=ls_cases(), dtype=dtypes)
def test_bug_signatures_differ_from_the_correct_loss(case, dtype):
    logits, target, smoothing, ignore_index = case
    bugs = T.likely_loss_bugs(*case, dtype=dtype)
    correct = T.label_smoothing_np(*case)
    for text, value in bugs.items():
        assert value.dim() == 0 and value.dtype == dtype, text
        assert not math.isclose(float(value), correct, rel_tol=1e-6, abs_tol=1e-9), text


@given(case=ls_cases())
def test_annotated_transformer_signature_is_its_kl_loss(case):
    logits, target, smoothing, ignore_index = case
    v = logits.shape[1]
    if not 0 <= ignore_index < v or v < 3:
        assert T.bug_annotated_transformer_kl(*case) is None
        return
    # The Annotated Transformer's LabelSmoothing, ported: KLDivLoss(sum) over a smoothed target.
    true_dist = torch.full_like(logits, smoothing / (v - 2))
    true_dist.scatter_(1, target.unsqueeze(1), 1.0 - smoothing)
    true_dist[:, ignore_index] = 0
    true_dist[target == ignore_index] = 0
    loss = torch.nn.KLDivLoss(reduction="sum")(logits.log_softmax(-1), true_dist)
    kept = int((target != ignore_index).sum())
    assert T.bug_annotated_transformer_kl(*case) == pytest.approx(float(loss) / kept, rel=1e-10, abs=1e-12)


def test_bug_spread_over_other_classes_by_hand():
    logits = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64)
    log_p = logits.log_softmax(-1)[0]
    expected = -(0.9 * log_p[1] + 0.05 * log_p[0] + 0.05 * log_p[2])
    assert T.bug_spread_over_other_classes(logits, torch.tensor([1]), 0.1, -100) == pytest.approx(float(expected))


@given(
    step=st.integers(1, 10**6), d_model=st.integers(1, 2048), warmup=st.integers(1, 10**5), factor=st.floats(0.01, 10)
)
def test_noam_reference_is_equation_3(step, d_model, warmup, factor):
    expected = factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
    assert T.noam_lr_reference(step, d_model, warmup, factor) == pytest.approx(expected, rel=1e-13)


def test_noam_reference_peak_and_errors():
    assert T.noam_lr_reference(4000, 512, 4000) == pytest.approx((512 * 4000) ** -0.5, rel=1e-14)
    for bad in (0, -3):
        with pytest.raises(ValueError):
            T.noam_lr_reference(bad, 512, 4000)
    bugs = T.noam_likely_bugs([1, 2, 50], 64, 10, 2.0)
    assert math.isnan(
        float(bugs[_("off by one: the schedule is evaluated at step - 1 (peak at warmup + 1); steps count from 1")][0])
    )
    correct = torch.tensor([T.noam_lr_reference(s, 64, 10, 2.0) for s in (1, 2, 50)], dtype=torch.float64)
    for text, values in bugs.items():
        assert not torch.allclose(values, correct, rtol=1e-9, atol=0), text
