"""Part `training` (hidden): LabelSmoothingLoss (paper §5.4) on larger and extreme inputs, its
defaults, and noam_lr (paper §5.3, equation 3) against literal reference values.
"""

import math
import numbers

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.i18n import _
from tests.public.test_training import LOSS_HINT, check_raises_value_error, describe, loss_cases
from tests.support.checks import assert_close, check, tolerance
from tests.support.oracles import training as oracle
from tests.support.strategies import dtypes, seeds


@settings(max_examples=30)
@given(case=loss_cases(max_rows=64, max_vocab=50))
def test_label_smoothing_matches_reference_larger(impl, case):
    logits, target, smoothing, ignore_index = case
    actual = impl.training.LabelSmoothingLoss(smoothing=smoothing, ignore_index=ignore_index)(logits, target)
    expected = torch.tensor(oracle.label_smoothing_np(*case), dtype=logits.dtype)
    assert_close(
        actual,
        expected,
        what=_("loss vs numpy float64"),
        case=describe(*case),
        hint=LOSS_HINT,
        **tolerance(logits.dtype),
        likely_bugs=oracle.likely_loss_bugs(*case, dtype=logits.dtype),
    )


@given(dtype=dtypes, seed=seeds, smoothing=st.sampled_from([0.0, 0.1]), scale=st.sampled_from([100.0, 1000.0]))
def test_label_smoothing_is_stable_for_large_logits(impl, dtype, seed, smoothing, scale):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(6, 9, generator=generator, dtype=torch.float64) * scale).to(dtype)
    target = torch.randint(1, 9, (6,), generator=generator)
    actual = impl.training.LabelSmoothingLoss(smoothing=smoothing, ignore_index=0)(logits, target)
    expected = torch.tensor(oracle.label_smoothing_np(logits, target, smoothing, 0), dtype=dtype)
    assert_close(
        actual,
        expected,
        what=_("loss on large logits vs numpy float64"),
        case=_(
            "LabelSmoothingLoss(smoothing={smoothing}, ignore_index=0) on {dtype} logits (6, 9) of size ~{scale}",
            smoothing=smoothing,
            dtype=dtype,
            scale=format(scale, "g"),
        ),
        hint=_("exp() of large logits overflows: use log_softmax (it subtracts the row maximum)"),
        **tolerance(dtype),
    )


def test_label_smoothing_defaults(impl):
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(7, 6, generator=generator, dtype=torch.float64)
    target = torch.tensor([1, 0, 5, 2, 0, 3, 4])
    actual = impl.training.LabelSmoothingLoss()(logits, target)
    expected = oracle.label_smoothing_builtin(logits, target, 0.1, 0)
    assert_close(
        actual,
        expected,
        what=_("loss with the default arguments"),
        case=_(
            "LabelSmoothingLoss() on float64 logits (7, 6), targets {target} (two of them 0)", target=target.tolist()
        ),
        hint=_("the defaults are smoothing=0.1 (paper §5.4) and ignore_index=0 (the padding id)"),
        **tolerance(torch.float64),
        likely_bugs={
            _("the default ignore_index is not 0 (rows with target 0 are kept)"): torch.tensor(
                oracle.label_smoothing_np(logits, target, 0.1, -100), dtype=torch.float64
            ),
            _("the default smoothing is not 0.1"): torch.tensor(
                oracle.label_smoothing_np(logits, target, 0.0, 0), dtype=torch.float64
            ),
        },
    )


@given(dtype=dtypes, seed=seeds, smoothing=st.sampled_from([0.0, 0.1, 0.3]))
def test_label_smoothing_single_row_two_classes(impl, dtype, seed, smoothing):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 2, generator=generator, dtype=torch.float64).to(dtype)
    target = torch.tensor([1])
    actual = impl.training.LabelSmoothingLoss(smoothing=smoothing, ignore_index=0)(logits, target)
    expected = torch.tensor(oracle.label_smoothing_np(logits, target, smoothing, 0), dtype=dtype)
    assert_close(
        actual,
        expected,
        what=_("loss vs numpy float64"),
        case=describe(logits, target, smoothing, 0),
        hint=LOSS_HINT,
        **tolerance(dtype),
        likely_bugs=oracle.likely_loss_bugs(logits, target, smoothing, 0, dtype),
    )


@given(seed=seeds, n=st.integers(2, 12), ignore_index=st.sampled_from([0, 4, -100]))
def test_label_smoothing_with_one_kept_row(impl, seed, n, ignore_index):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 7, generator=generator, dtype=torch.float64)
    target = torch.full((n,), ignore_index)
    keep_row = int(torch.randint(0, n, (1,), generator=generator))
    target[keep_row] = 6
    actual = impl.training.LabelSmoothingLoss(smoothing=0.1, ignore_index=ignore_index)(logits, target)
    expected = oracle.label_smoothing_builtin(logits, target, 0.1, ignore_index)
    assert_close(
        actual,
        expected,
        what=_("loss with a single kept row vs F.cross_entropy"),
        case=describe(logits, target, 0.1, ignore_index),
        hint=_("the mean runs over the kept rows only; ignored targets must never be used as an index"),
        **tolerance(torch.float64),
        likely_bugs=oracle.likely_loss_bugs(logits, target, 0.1, ignore_index, torch.float64),
    )


@given(case=loss_cases(max_rows=20, max_vocab=30), upstream=st.sampled_from([1.0, -2.5]))
def test_label_smoothing_gradients_with_upstream(impl, case, upstream):
    logits, target, smoothing, ignore_index = case
    loss = impl.training.LabelSmoothingLoss(smoothing=smoothing, ignore_index=ignore_index)
    (grad, _target_grad), _outputs = impl.gradients(loss, [logits, target], torch.tensor(upstream, dtype=logits.dtype))
    expected = torch.from_numpy(oracle.label_smoothing_grad_np(*case) * upstream).to(logits.dtype)
    tol = {"rtol": 1e-9, "atol": 1e-12} if logits.dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-6}
    check(grad is not None, _("the loss does not depend on the logits (no gradient)"), case=describe(*case))
    assert_close(
        grad,
        expected,
        what=_("{upstream} * d loss / d logits", upstream=upstream),
        case=describe(*case),
        **tol,
        hint=_("(softmax - smoothed target) / number of kept rows on kept rows, 0 on ignored rows"),
    )


# --- noam_lr ------------------------------------------------------------------------------------

# Literal values of equation (3), computed once by hand (d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)).
LITERAL = [
    # (step, d_model, warmup, factor, lr)
    (4000, 512, 4000, 1.0, 6.987712429686844e-04),  # the paper's peak: (512 * 4000) ** -0.5
    (1, 512, 4000, 1.0, 1.746928107421711e-07),
    (16000, 512, 4000, 1.0, 3.493856214843422e-04),
    (100, 64, 10, 2.0, 0.025),
    (5, 64, 10, 2.0, 0.03952847075210474),
    (1, 1, 1, 1.0, 1.0),
]


def test_noam_lr_literal_values(impl):
    actual = torch.tensor(
        [float(impl.training.noam_lr(s, d, w, f)) for s, d, w, f, _lr in LITERAL], dtype=torch.float64
    )
    expected = torch.tensor([point[-1] for point in LITERAL], dtype=torch.float64)
    assert_close(
        actual,
        expected,
        rtol=1e-12,
        atol=0.0,
        what=_("learning rate vs values of equation (3) computed by hand"),
        case=_("noam_lr at (step, d_model, warmup, factor) = {points}", points=", ".join(str(c[:4]) for c in LITERAL)),
        hint="lr = factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)",
    )


@settings(max_examples=50)
@given(
    step=st.integers(1, 10**9),
    d_model=st.integers(1, 4096),
    warmup=st.integers(1, 100000),
    factor=st.floats(0.01, 10.0),
)
def test_noam_lr_matches_equation_3_anywhere(impl, step, d_model, warmup, factor):
    actual = impl.training.noam_lr(step, d_model, warmup, factor)
    case = f"noam_lr(step={step}, d_model={d_model}, warmup={warmup}, factor={factor})"
    check(
        isinstance(actual, numbers.Real) and not isinstance(actual, bool),
        _("noam_lr returned a {type}, expected a Python float", type=type(actual).__name__),
        case=case,
    )
    expected = oracle.noam_lr_reference(step, d_model, warmup, factor)
    check(
        math.isclose(float(actual), expected, rel_tol=1e-12, abs_tol=0.0),
        _("learning rate {actual}, expected {expected}", actual=repr(float(actual)), expected=repr(expected)),
        "factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)",
        case=case,
    )


def test_noam_lr_paper_schedule_shape(impl):
    warmup = 4000
    steps = [1, 10, 1000, 3999, 4000, 4001, 8000, 100000]
    lr = [float(impl.training.noam_lr(s, 512, warmup)) for s in steps]
    case = _("noam_lr(step, d_model=512, warmup=4000) at steps {steps}", steps=steps)
    check(
        all(a < b for a, b in zip(lr[:5], lr[1:5])),
        _(
            "the learning rate does not rise until step 4000 (the end of warm-up): {values} at steps {steps}",
            values=lr[:5],
            steps=steps[:5],
        ),
        case=case,
    )
    check(
        all(a > b for a, b in zip(lr[4:], lr[5:])),
        _("the learning rate does not fall after step 4000: {values} at steps {steps}", values=lr[4:], steps=steps[4:]),
        _("the peak is at step == warmup"),
        case=case,
    )


def test_noam_lr_with_warmup_one_only_decays(impl):
    lr = [float(impl.training.noam_lr(s, 16, 1, 1.0)) for s in range(1, 30)]
    check(
        all(a > b for a, b in zip(lr, lr[1:])),
        _("the learning rate does not decrease from step 1 on"),
        _("with warmup = 1 the step**-0.5 branch is the smaller one from step 1"),
        case="noam_lr(step, d_model=16, warmup=1, factor=1.0), step = 1..29",
    )


@given(
    step=st.integers(-(10**6), 0),
    d_model=st.sampled_from([8, 512]),
    warmup=st.sampled_from([1, 4000]),
    factor=st.sampled_from([1.0, 2.0]),
)
def test_noam_lr_rejects_nonpositive_steps(impl, step, d_model, warmup, factor):
    check_raises_value_error(
        lambda: impl.training.noam_lr(step, d_model, warmup, factor),
        f"noam_lr(step={step}, d_model={d_model}, warmup={warmup}, factor={factor})",
    )
