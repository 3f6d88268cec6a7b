"""Part `training`: LabelSmoothingLoss (paper §5.4, ε_ls = 0.1) and noam_lr, the warm-up
learning-rate schedule (paper §5.3, equation 3).

References: F.cross_entropy(label_smoothing=ε, ignore_index=...) and a numpy float64
re-implementation (tests/support/oracles/training.py); equation (3) in Python floats.
"""

import numbers

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.i18n import _
from tests.support.checks import assert_close, check, tolerance
from tests.support.oracles import training as oracle
from tests.support.strategies import dtypes, seeds

SMOOTHINGS = (0.0, 0.1, 0.3)


@st.composite
def loss_cases(draw, max_rows=8, max_vocab=10):
    """(logits, target, smoothing, ignore_index): some rows ignored, never all."""
    n = draw(st.integers(1, max_rows))
    v = draw(st.integers(2, max_vocab))
    seed = draw(seeds)
    dtype = draw(dtypes)
    smoothing = draw(st.sampled_from(SMOOTHINGS))
    kind = draw(st.sampled_from(["zero", "minus100", "class"]))
    ignore_index = {"zero": 0, "minus100": -100}.get(kind)
    if ignore_index is None:
        ignore_index = draw(st.integers(0, v - 1))
    generator = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.5, 3.0]))
    logits = (torch.randn(n, v, generator=generator, dtype=torch.float64) * scale).to(dtype)
    target = torch.randint(0, v, (n,), generator=generator)
    ignored = torch.rand(n, generator=generator) < 0.4
    target[ignored] = ignore_index
    if bool((target == ignore_index).all()):
        target[0] = (ignore_index + 1) % v if ignore_index >= 0 else 0
    return logits, target, smoothing, ignore_index


def describe(logits, target, smoothing, ignore_index):
    """The input, for ``case=``: the loss's arguments, the logits' dtype and shape, the rows kept."""
    kept = int((target != ignore_index).sum())
    return _(
        "LabelSmoothingLoss(smoothing={smoothing}, ignore_index={ignore_index}) on {dtype} logits {shape}, "
        "{kept} of {total} targets kept",
        smoothing=smoothing,
        ignore_index=ignore_index,
        dtype=logits.dtype,
        shape=tuple(logits.shape),
        kept=kept,
        total=len(target),
    )


LOSS_HINT = _(
    "loss_n = (1-ε)·(-log p_n[target_n]) + ε·mean_v(-log p_n[v]) with p = softmax(logits); "
    "average over the rows whose target != ignore_index"
)


@given(case=loss_cases())
def test_label_smoothing_matches_reference(impl, case):
    logits, target, smoothing, ignore_index = case
    loss = impl.training.LabelSmoothingLoss(smoothing=smoothing, ignore_index=ignore_index)
    actual = loss(logits, target)
    described = describe(*case)
    expected = torch.tensor(oracle.label_smoothing_np(*case), dtype=logits.dtype)
    assert_close(
        actual,
        expected,
        what=_("loss vs numpy float64"),
        case=described,
        hint=LOSS_HINT,
        **tolerance(logits.dtype),
        likely_bugs=oracle.likely_loss_bugs(*case, dtype=logits.dtype),
    )
    builtin = oracle.label_smoothing_builtin(*case)
    assert_close(
        actual,
        builtin,
        what=_("loss vs F.cross_entropy(label_smoothing=ε)"),
        case=described,
        hint=LOSS_HINT,
        **tolerance(logits.dtype),
    )


@given(case=loss_cases(max_rows=6, max_vocab=7))
def test_label_smoothing_gradients_match_builtin(impl, case):
    logits, target, smoothing, ignore_index = case
    loss = impl.training.LabelSmoothingLoss(smoothing=smoothing, ignore_index=ignore_index)
    (grad, _target_grad), _outputs = impl.gradients(loss, [logits, target])
    leaf = logits.detach().clone().requires_grad_(True)
    oracle.label_smoothing_builtin(leaf, target, smoothing, ignore_index).backward()
    tol = {"rtol": 1e-9, "atol": 1e-12} if logits.dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-6}
    check(
        grad is not None,
        _("the loss does not depend on the logits (no gradient)"),
        _("build the loss from logits.log_softmax(-1) with differentiable torch operations"),
        case=describe(*case),
    )
    assert_close(
        grad,
        leaf.grad,
        what=_("d loss / d logits"),
        case=describe(*case),
        **tol,
        hint=_("ignored rows get zero gradient; kept rows (softmax - smoothed target) / number kept"),
        likely_bugs={
            _("the gradient is divided by N (all rows) instead of the number of kept rows"): leaf.grad
            * int((target != ignore_index).sum())
            / len(target),
        },
    )


@given(dtype=dtypes, n=st.integers(1, 5), v=st.integers(2, 6), seed=seeds)
def test_label_smoothing_returns_scalar_in_input_dtype(impl, dtype, n, v, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=generator, dtype=torch.float64).to(dtype)
    target = torch.randint(1, v, (n,), generator=generator)
    actual = impl.training.LabelSmoothingLoss(smoothing=0.1, ignore_index=0)(logits, target)
    case = _("LabelSmoothingLoss(smoothing=0.1, ignore_index=0) on {dtype} logits {shape}", dtype=dtype, shape=(n, v))
    check(
        isinstance(actual, torch.Tensor),
        _("the loss is a {type}, not a torch.Tensor", type=type(actual).__name__),
        case=case,
    )
    check(
        actual.dim() == 0,
        _("the loss has shape {shape}; it must be a scalar (0-dim) tensor", shape=tuple(actual.shape)),
        _("average the per-row losses into one number"),
        case=case,
    )
    check(
        actual.dtype == dtype,
        _("the loss has dtype {actual}, expected {expected} (the logits' dtype)", actual=actual.dtype, expected=dtype),
        _("no hard-coded dtypes: follow the logits' dtype"),
        case=case,
    )


@given(case=loss_cases(max_rows=6))
def test_zero_smoothing_is_negative_log_likelihood(impl, case):
    logits, target, _smoothing, ignore_index = case
    actual = impl.training.LabelSmoothingLoss(smoothing=0.0, ignore_index=ignore_index)(logits, target)
    keep = target != ignore_index
    expected = torch.nn.functional.nll_loss(logits[keep].double().log_softmax(-1), target[keep]).to(logits.dtype)
    assert_close(
        actual,
        expected,
        what=_("loss with ε = 0 vs the negative log-likelihood"),
        case=describe(logits, target, 0.0, ignore_index),
        hint=_("with ε = 0 the loss is the mean of -log softmax(logits)[target] over the kept rows"),
        **tolerance(logits.dtype),
    )


# --- noam_lr ------------------------------------------------------------------------------------


@given(
    step=st.integers(1, 20000),
    d_model=st.sampled_from([8, 64, 512, 1024]),
    warmup=st.sampled_from([1, 10, 400, 4000]),
    factor=st.sampled_from([1.0, 2.0, 0.5]),
)
def test_noam_lr_matches_equation_3(impl, step, d_model, warmup, factor):
    actual = impl.training.noam_lr(step, d_model, warmup, factor)
    case = f"noam_lr(step={step}, d_model={d_model}, warmup={warmup}, factor={factor})"
    check(
        isinstance(actual, numbers.Real) and not isinstance(actual, bool),
        _("noam_lr returned a {type}, expected a Python float", type=type(actual).__name__),
        _("return a float, not a tensor"),
        case=case,
    )
    expected = oracle.noam_lr_reference(step, d_model, warmup, factor)
    assert_close(
        torch.tensor([float(actual)], dtype=torch.float64),
        torch.tensor([expected], dtype=torch.float64),
        what=_("learning rate vs equation (3)"),
        case=case,
        hint="factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)",
        rtol=1e-12,
        atol=0.0,
        likely_bugs=oracle.noam_likely_bugs([step], d_model, warmup, factor),
    )


@pytest.mark.parametrize("d_model,warmup,factor", [(512, 40, 1.0), (16, 7, 2.0), (64, 100, 0.5)])
def test_noam_lr_schedule_shape(impl, d_model, warmup, factor):
    steps = list(range(2, 3 * warmup + 2))
    actual = torch.tensor(
        [float(impl.training.noam_lr(s, d_model, warmup, factor)) for s in steps], dtype=torch.float64
    )
    expected = torch.tensor([oracle.noam_lr_reference(s, d_model, warmup, factor) for s in steps], dtype=torch.float64)
    assert_close(
        actual,
        expected,
        what=_("learning rate over the steps vs equation (3)"),
        case=_(
            "noam_lr(step, d_model={d_model}, warmup={warmup}, factor={factor}) for step = 2..{last}; "
            "entry i is step i + 2",
            d_model=d_model,
            warmup=warmup,
            factor=factor,
            last=steps[-1],
        ),
        rtol=1e-12,
        atol=0.0,
        hint="lr = factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)",
        likely_bugs=oracle.noam_likely_bugs(steps, d_model, warmup, factor),
    )


@given(warmup=st.integers(2, 300), d_model=st.sampled_from([8, 512]))
def test_noam_lr_rises_until_warmup_then_falls(impl, warmup, d_model):
    lr = {s: float(impl.training.noam_lr(s, d_model, warmup)) for s in range(1, 2 * warmup + 2)}
    case = f"noam_lr(step, d_model={d_model}, warmup={warmup})"
    rising = [s for s in range(1, warmup) if not lr[s] < lr[s + 1]]
    check(
        not rising,
        _(
            "the learning rate does not rise strictly during warm-up: lr({later}) <= lr({earlier})",
            later=rising[0] + 1,
            earlier=rising[0],
        )
        if rising
        else "",
        _("for step < warmup, lr grows linearly: step * warmup**-1.5"),
        case=case,
    )
    falling = [s for s in range(warmup, 2 * warmup + 1) if not lr[s + 1] < lr[s]]
    check(
        not falling,
        _(
            "the learning rate does not fall after warm-up: lr({later}) >= lr({earlier})",
            later=falling[0] + 1,
            earlier=falling[0],
        )
        if falling
        else "",
        _("for step >= warmup, lr decays as step**-0.5"),
        case=case,
    )
    peak = max(lr, key=lr.get)
    check(
        peak == warmup,
        _(
            "the learning rate peaks at step {peak}, expected step {warmup} (the end of warm-up)",
            peak=peak,
            warmup=warmup,
        ),
        _("the two branches of the min meet at step == warmup; steps count from 1 (no +1 or -1)"),
        case=case,
    )


STEP_NOT_REJECTED = _("a step below 1 is not rejected: noam_lr must raise ValueError for step < 1")


def check_raises_value_error(call, case):
    """``call()``, a noam_lr call with a step below 1, must raise ValueError."""
    __tracebackhide__ = True
    try:
        value = call()
    except ValueError:
        return
    except (ArithmeticError, TypeError) as error:  # the formula itself failed on the step (0 ** -0.5, ...)
        name = next(c.__name__ for c in type(error).__mro__ if c.__module__ == "builtins")  # also when sandboxed
        message = (str(error).strip().splitlines() or [""])[0][:120]
        outcome = _("noam_lr raised {error} ({message})", error=name, message=message)
    else:
        outcome = _("noam_lr returned {value}", value=repr(value)[:120])
    check(
        False,
        STEP_NOT_REJECTED,
        _(
            "{outcome} instead; steps count from 1: check `step < 1` before computing anything and raise ValueError",
            outcome=outcome,
        ),
        case=case,
        likely_bug=True,
    )


@pytest.mark.parametrize("step", [0, -1, -100])
def test_noam_lr_rejects_steps_below_one(impl, step):
    check_raises_value_error(
        lambda: impl.training.noam_lr(step, 512, 4000), f"noam_lr(step={step}, d_model=512, warmup=4000)"
    )
