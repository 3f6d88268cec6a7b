"""The ``translation`` part of the grade (runs in the judge).

``grade_translation(proxy, part, out_dir)`` generates the built-in corpus
(``grader.data.synthetic.generate_corpus``; the student hand-out has only the shipped
train/valid splits, see ``grader.data.corpus``), has the job (``grader.translation.job:run``)
train the student's model inside the sandbox (``proxy.call_trusted``) and return the trained
weights, then — here, in the judge, which never imports student code — checks those weights
against the contract's state dict, loads them into the trusted built-in model
(``trusted.py``), decodes the held-out test sources with the grader's own greedy decoder,
scores the translations with sacrebleu against the references (which never enter the
sandbox) and awards points from ``part.bleu_thresholds``. The worker's own translations (the
student's ``greedy_decode``) are scored beside them: they earn nothing, and a large
disagreement is flagged (``DISAGREEMENT_BLEU``). The attention picture is drawn into ``out_dir``.

Budget: at most ``GRADING_STEPS`` optimiser steps. The step count, not the clock, ends
training, so that the grade does not depend on the machine's speed or load and the same
submission always gets the same BLEU; ``GRADING_SECONDS`` is only a safety cap for very slow
submissions (a few times the reference's time). The worker's thread count (``grade --threads``)
applies; ``GRADING_THREADS`` = None leaves it alone. Where the CPU (or GPU) multiplies bf16
natively, the forward pass runs under bf16 autocast (``GRADING_BF16`` = "auto", ``train.native_bf16``).

Grading to the threshold: from step ``VALIDATION_FIRST`` on, every ``VALIDATION_EVERY`` steps the
worker looks at the *validation* split (``validation.py``: the teacher-forced token accuracy, and
once that reaches ``VALIDATION_GATE`` the greedy translation; the test split never enters the
sandbox with its references) and training stops once the BLEU reaches the top threshold plus
``VALIDATION_MARGIN``: the test BLEU is then above the top threshold too (the margin is chosen
from the validation-minus-test gaps measured over seeds, docs/translation.md "Grading to the
threshold"), so more steps could not change the points. A model that never gets there trains
the whole budget, as before. The stop is decided in the worker, which the student controls, but
it can only cost them: the points still come from the judge's decode of the returned weights.
Without a test split (the hand-out) the validation split is what is scored, so it cannot also
decide when to stop: the hand-out trains the whole budget.

The check's ``output`` is in the grading language (``grader.i18n``); its name stays English.
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path

from grader.contract import MODEL_SIZES
from grader.i18n import _

from .progress import format_duration

GRADING_SEED = 0
GRADING_STEPS = 700
GRADING_SECONDS = 480.0
GRADING_THREADS = None
GRADING_BF16 = "auto"
# Grading to the threshold (see above and docs/translation.md for the measurements).
VALIDATION_FIRST = 100
VALIDATION_EVERY = 25
VALIDATION_MARGIN = 5.0
VALIDATION_GATE = 0.94  # teacher-forced token accuracy before a look translates (validation.py)
ATTENTION_EXAMPLE = "this is a pen ."
JOB_TARGET = "grader.translation.job:run"
CHECK_NAME = "translation: BLEU on the held-out test set"
PICTURE_NAME = "translation_attention.png"
# A student BLEU this far above the grader's own decode of the same weights is flagged. Both
# decode the same weights greedily, so an honest model differs only by float near-ties (the
# reference: 0.00 BLEU apart); 5 BLEU is far above that and below the 20 BLEU between two
# point thresholds.
DISAGREEMENT_BLEU = 5.0


def build_job(
    corpus,
    *,
    steps: int | None = GRADING_STEPS,
    seconds: float | None = GRADING_SECONDS,
    seed: int = GRADING_SEED,
    threads: int | None = GRADING_THREADS,
    model: dict | None = None,
    attention_example: str = ATTENTION_EXAMPLE,
    split: str = "test",
    validation_target: float | None = None,
) -> dict:
    """The plain-data job for ``job.run``: training pairs and test *sources* only; with
    ``validation_target``, the validation pairs and the BLEU at which training stops."""
    job = {
        "train": [[en, ja] for en, ja in corpus.train],
        "sources": [en for en, _ in getattr(corpus, split)],
        "seed": seed,
        "steps": steps,
        "seconds": seconds,
        "threads": threads,
        "model": dict(model or MODEL_SIZES),
        "training": {"bf16": GRADING_BF16},
        "attention_example": attention_example,
    }
    if validation_target is not None:
        if split == "valid":
            raise ValueError("the validation split cannot both decide when to stop and be scored")
        job["validation"] = {
            "pairs": [[en, ja] for en, ja in corpus.valid],
            "target": float(validation_target),
            "every": VALIDATION_EVERY,
            "first": VALIDATION_FIRST,
            "gate": VALIDATION_GATE,
        }
    return job


def top_threshold(part) -> float | None:
    """The BLEU that earns full points (the highest threshold), or None without thresholds."""
    thresholds = [float(b) for b, _ in _get(part, "bleu_thresholds", ()) or ()]
    return max(thresholds) if thresholds else None


def _get(part, name, default=None):
    if isinstance(part, dict):
        return part.get(name, default)
    return getattr(part, name, default)


def points_for(bleu: float, part) -> float:
    """Full points at or above the highest threshold; otherwise the points of the highest
    threshold reached; 0 below all of them."""
    max_points = float(_get(part, "points", 0.0))
    thresholds = sorted(((float(b), float(p)) for b, p in _get(part, "bleu_thresholds", ()) or ()), reverse=True)
    if not thresholds or not math.isfinite(bleu):
        return 0.0
    if bleu >= thresholds[0][0]:
        return max_points
    for threshold, points in thresholds[1:]:
        if bleu >= threshold:
            return min(points, max_points)
    return 0.0


def loss_summary(losses) -> str:
    """``loss 5.62 (step 10) → 3.1 (25%) → … → 1.52 (step 1200)``."""
    if not losses:
        return _("no loss recorded")
    n = len(losses)
    picks = sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1})
    values = [_("{loss} (step {step})", loss=f"{losses[i][1]:.3f}", step=losses[i][0]) for i in picks]
    return _("loss {values}", values=" → ".join(values))


def progress_text(info: dict, steps: int | None, cap: float | None) -> str:
    """One line for the terminal from a parsed progress line (``progress.parse``): steps, loss,
    time spent and an estimate of the time left (from the job's own step budget and time cap)."""
    step, elapsed = int(info.get("step", 0)), float(info.get("elapsed", 0.0))
    if info.get("phase") == "decode":
        return _(
            "translation: trained {step} steps in {elapsed}; translating the test sentences ...",
            step=step,
            elapsed=format_duration(elapsed),
        )
    left = None
    if steps and step > 0:
        left = elapsed / step * max(0, steps - step)
    if cap:
        left = max(0.0, cap - elapsed) if left is None else min(left, max(0.0, cap - elapsed))
    fields = {
        "step": step,
        "steps": steps or "?",
        "elapsed": format_duration(elapsed),
        "left": "?" if left is None else format_duration(left),
    }
    if info.get("loss") is None:
        return _("translation: step {step}/{steps}, {elapsed} elapsed, about {left} left", **fields)
    return _(
        "translation: step {step}/{steps}, loss {loss}, {elapsed} elapsed, about {left} left",
        loss=f"{info['loss']:.3f}",
        **fields,
    )


class ProgressDisplay:
    """Shows progress lines on ``stream``: rewritten in place on a terminal, otherwise (a log, a
    pipe) one line at most every ``every`` seconds and at each change of phase."""

    def __init__(self, stream, interactive: bool | None = None, every: float = 15.0, clock=None):
        import time

        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.every = every
        self.clock = clock or time.monotonic
        self.width = 0
        self.last: tuple[float, str] | None = None  # (time, phase) of the last line written

    def __call__(self, text: str, phase: str = "train") -> None:
        try:
            if self.interactive:
                self.stream.write("\r" + text.ljust(self.width))
                self.width = len(text)
            else:
                now = self.clock()
                if self.last is not None and self.last[1] == phase and now - self.last[0] < self.every:
                    return
                self.last = (now, phase)
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.interactive and self.width:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self.width = 0


PROGRESS_POLL_SECONDS = 1.0


def _run_job(proxy, job: dict, progress=None) -> dict:
    """The job's reply. With ``progress`` (a ``ProgressDisplay`` or any ``(text, phase)``
    callable) and a sandboxed worker, a thread tails the worker's stderr while the judge waits and
    shows the last progress line the job wrote (display only: the student can write such lines
    too; only bounded numbers are shown)."""
    if proxy is not None and hasattr(proxy, "call_trusted"):
        if progress is None or not hasattr(proxy, "stderr_tail"):
            return proxy.call_trusted(JOB_TARGET, job)
        import threading

        from .progress import parse

        stop = threading.Event()

        def watch() -> None:
            last = None
            while not stop.wait(PROGRESS_POLL_SECONDS):
                try:
                    info = parse(proxy.stderr_tail())
                    if info is not None and info != last:
                        last = info
                        progress(progress_text(info, job.get("steps"), job.get("seconds")), info["phase"])
                except Exception:
                    pass

        watcher = threading.Thread(target=watch, name="translation-progress", daemon=True)
        watcher.start()
        try:
            return proxy.call_trusted(JOB_TARGET, {**job, "progress": True})
        finally:
            stop.set()
            watcher.join(timeout=5)
            if hasattr(progress, "close"):
                progress.close()
    from . import job as job_module  # in-process (make demo without a sandbox, tests)

    return job_module.run(job)


def _thresholds_text(part) -> str:
    thresholds = sorted(((float(b), float(p)) for b, p in _get(part, "bleu_thresholds", ()) or ()), reverse=True)
    if not thresholds:
        return _("no thresholds")
    first = f"BLEU ≥ {thresholds[0][0]:g} → {float(_get(part, 'points', 0)):g}"
    return ", ".join([first] + [f"≥ {b:g} → {p:g}" for b, p in thresholds[1:]])


def _failed(check: dict, error: Exception) -> list[dict]:
    check["output"] = (
        _("Training or translating with your model failed, so this part scores 0.") + "\n"
        f"{type(error).__name__}: {error}\n\n{_tail(traceback.format_exc())}"
    )
    return [check]


def _student_score(result: dict, references: list[str]):
    """The student's own decode (the job's hypotheses) scored, or None when unusable."""
    from . import evaluate

    try:
        hypotheses = [str(h) for h in result["hypotheses"]]
    except Exception:
        return None, None
    if len(hypotheses) != len(references):
        return None, hypotheses
    return evaluate.score(hypotheses, references), hypotheses


def grade_translation(
    proxy, part, out_dir, *, corpus=None, job_overrides: dict | None = None, progress=None
) -> list[dict]:
    """Train (in the worker), decode the returned weights here, score; -> ``[check dict]``
    (name, score, max_score, output, visibility, extra_data).

    The points come from the trusted decode (``trusted.py``) of the trained ``state_dict``
    the job returns; the job's own ``hypotheses`` (the student's ``greedy_decode``) are scored
    beside it, and a student BLEU more than ``DISAGREEMENT_BLEU`` above the trusted one is
    flagged. ``progress``: see ``_run_job`` (the training's progress while the judge waits).
    Without the grading-side generator (the student hand-out) the validation split
    stands in for the held-out test split."""
    from grader.sandbox.proxy import StudentCodeError, WorkerCrashed

    from . import evaluate, trusted
    from .train import ModelConfig
    from .vocab import Vocab

    max_score = float(_get(part, "points", 0.0))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check = {"name": CHECK_NAME, "score": 0.0, "max_score": max_score, "visibility": "visible"}
    if corpus is None:
        from grader.data.corpus import load_synthetic

        corpus = load_synthetic(seed=0)
    split = "test" if corpus.test else "valid"
    threshold = top_threshold(part)
    target = threshold + VALIDATION_MARGIN if threshold is not None and split == "test" and corpus.valid else None
    job = build_job(corpus, split=split, validation_target=target)
    job.update(job_overrides or {})
    pairs = list(getattr(corpus, split))
    references = [ja for _, ja in pairs]
    sources = [en for en, _ in pairs]

    src_vocab = Vocab.build(en for en, _ in corpus.train)
    tgt_vocab = Vocab.build(ja for _, ja in corpus.train)
    config = trusted.oracle_config(
        len(src_vocab), len(tgt_vocab), ModelConfig.from_dict({**MODEL_SIZES, **dict(job.get("model") or {})})
    )
    try:
        result = _run_job(proxy, job, progress)
        if not isinstance(result, dict):
            raise ValueError(_("the job returned {kind}, not a dict", kind=type(result).__name__))
        result, confirmation = _confirm_stop(proxy, job, result, corpus, config, src_vocab, tgt_vocab, progress)
        if not isinstance(result, dict):
            raise ValueError(_("the job returned {kind}, not a dict", kind=type(result).__name__))
    except (StudentCodeError, WorkerCrashed):
        raise  # the grader reports these itself (grader/grade.py: run_translation)
    except Exception as error:
        return _failed(check, error)

    student_scored, student_hypotheses = _student_score(result, references)
    from grader.i18n import N_
    from grader.results import Text, english

    flags: list[Text] = []  # for a human: the check's output, and results.json's flags (grade.py)
    student_line = (
        _(
            "Your own decoding (decoding.greedy_decode, in the sandbox) scored BLEU {bleu}.",
            bleu=f"{student_scored['bleu']:.2f}",
        )
        if student_scored is not None
        else _("Your own decoding returned no usable translations (expected {count}).", count=len(references))
    )
    try:
        model, report = trusted.trusted_model(result.get("state_dict"), config)
    except trusted.ContractMismatch as error:
        if student_scored is not None and student_scored["bleu"] > DISAGREEMENT_BLEU:
            flags.append(
                Text(
                    N_("translation: no usable weights came back, yet the sandbox claims BLEU {bleu}"),
                    bleu=f"{student_scored['bleu']:.2f}",
                )
            )
        check["output"] = "\n".join(
            [
                _(
                    "The trained weights that came back do not fit the Transformer's state dict, so this part "
                    "scores 0 (the grader decodes your trained weights itself): {problems}.",
                    problems=error.report.describe(),
                ),
                student_line,
            ]
            + [_("Flag: {flag}", flag=f) for f in flags]
        )
        check["extra_data"] = {
            "bleu": 0.0,
            "student_bleu": student_scored and student_scored["bleu"],
            "split": split,
            "missing_keys": error.report.missing,
            "mismatched_keys": error.report.mismatched,
            "extra_keys": error.report.extra,
            "flags": [english(f) for f in flags],
            "attention_png": None,
        }
        check["flag_texts"] = flags
        return [check]
    try:
        hypotheses = trusted.translate(model, src_vocab, tgt_vocab, sources)
    except Exception as error:  # weights that fit but break the built-in modules (never seen)
        return _failed(check, error)

    scored = evaluate.score(hypotheses, references)
    points = points_for(scored["bleu"], part)
    check["score"] = points
    difference = None if student_scored is None else round(student_scored["bleu"] - scored["bleu"], 2)
    if difference is None or difference > DISAGREEMENT_BLEU:
        flags.append(
            Text(
                N_(
                    "translation: the sandbox's decoding claims BLEU {student}, the grader's decoding of "
                    "the returned weights gives {trusted}"
                ),
                student="?" if student_scored is None else f"{student_scored['bleu']:.2f}",
                trusted=f"{scored['bleu']:.2f}",
            )
        )

    picture = None
    attention = result.get("attention")
    if isinstance(attention, dict) and attention.get("cross") is not None:
        try:
            from .attention_plot import plot_attention_dict

            picture = plot_attention_dict(out_dir / PICTURE_NAME, attention)
        except Exception as error:  # a missing picture never costs points
            picture = None
            attention = {"error": _("could not draw the attention picture: {error}", error=str(error))}

    try:
        tokens_per_second = float(result.get("tokens_per_second", 0.0))
    except (TypeError, ValueError):
        tokens_per_second = 0.0
    stop_text, stop_data = training_stop(result, job, threshold, confirmation)
    if split == "test":
        headline = _(
            "BLEU {bleu} on {sentences} held-out test sentences (sacrebleu {signature}); exact match {exact}%.",
            bleu=f"{scored['bleu']:.2f}",
            sentences=scored["sentences"],
            signature=scored["signature"],
            exact=f"{100 * scored['exact_match']:.1f}",
        )
    else:
        headline = _(
            "BLEU {bleu} on {sentences} validation sentences (sacrebleu {signature}); exact match {exact}%. "
            "The hand-out has no test split: the real grade uses held-out test sentences.",
            bleu=f"{scored['bleu']:.2f}",
            sentences=scored["sentences"],
            signature=scored["signature"],
            exact=f"{100 * scored['exact_match']:.1f}",
        )
    lines = [
        headline,
        _(
            "Points: {points}/{max_score}  ({thresholds}).",
            points=f"{points:g}",
            max_score=f"{max_score:g}",
            thresholds=_thresholds_text(part),
        ),
        _(
            "The grader translated with your trained weights itself (its own greedy decoder and a model built "
            "from PyTorch modules); these translations earn the points."
        )
        + " "
        + student_line,
        _(
            "Training (trusted loop, your Transformer and masks): {steps} steps in {seconds} s, {epochs} epochs, "
            "{speed} tokens/s; {losses}.",
            steps=result.get("steps", "?"),
            seconds=_number(result.get("seconds"), "{:.0f}"),
            epochs=_number(result.get("epochs"), "{:.1f}"),
            speed=f"{tokens_per_second:,.0f}",
            losses=_losses(result.get("losses")),
        ),
        stop_text,
    ]
    if report.extra:
        lines.append(_("Extra keys in your state dict (not used): {keys}.", keys=", ".join(report.extra[:20])))
    if difference is not None and difference < -DISAGREEMENT_BLEU:
        lines.append(
            _(
                "Your decoding.greedy_decode scores {difference} BLEU below the grader's decoding of the same "
                "weights: check it against the decoding tests.",
                difference=f"{-difference:.2f}",
            )
        )
    lines += [_("Flag: {flag}", flag=f) for f in flags]
    lines += [
        "",
        _("First translations (out) beside the references (ref):"),
        evaluate.format_samples(sources, hypotheses, references, n=5),
    ]
    if picture is not None:
        lines += [
            "",
            _(
                "Attention picture ({source} → {target}): {picture}",
                source=repr(ATTENTION_EXAMPLE),
                target=repr(" ".join(str(t) for t in attention["target"][:-1])),
                picture=str(picture),
            ),
        ]
    elif isinstance(attention, dict) and attention.get("error"):
        lines += ["", _("No attention picture: {error}", error=str(attention["error"]))]
    else:
        lines += ["", _("No attention picture: the model kept no attn_weights in decoder.layers[-1].cross_attn.")]
    check["output"] = "\n".join(lines)
    check["extra_data"] = {
        "bleu": scored["bleu"],
        "signature": scored["signature"],
        "exact_match": scored["exact_match"],
        "split": split,
        "student_bleu": None if student_scored is None else student_scored["bleu"],
        "bleu_difference": difference,
        "disagreement_threshold": DISAGREEMENT_BLEU,
        "flags": [english(f) for f in flags],
        "extra_keys": report.extra,
        "tokens_per_second": tokens_per_second,
        "steps": result.get("steps"),
        "training": stop_data,
        "attention_png": str(picture) if picture else None,
    }
    check["flag_texts"] = flags
    return [check]


def _confirm_stop(proxy, job: dict, result: dict, corpus, config, src_vocab, tgt_vocab, progress=None):
    """-> ``(result, confirmation)``. A stop decided in the worker (on the student's own forward
    pass) counts only if the judge, decoding the returned weights with its own model, finds the
    validation BLEU at the bar too; otherwise the job runs again without looks, i.e. the whole
    budget with the same seed: the training of a grade without early stopping. ``confirmation``:
    None when the worker did not stop on validation or the weights do not fit (scored 0 later)."""
    from . import evaluate, trusted

    if not job.get("validation") or result.get("stopped_by") != "validation":
        return result, None
    try:
        model, _report = trusted.trusted_model(result.get("state_dict"), config)
    except trusted.ContractMismatch:
        return result, None
    hypotheses = trusted.translate(model, src_vocab, tgt_vocab, [en for en, _ in corpus.valid])
    bleu = evaluate.score(hypotheses, [ja for _, ja in corpus.valid])["bleu"]
    if bleu >= job["validation"]["target"]:
        return result, {"judge_bleu": bleu, "confirmed": True}
    again = {key: value for key, value in job.items() if key != "validation"}
    return _run_job(proxy, again, progress), {
        "judge_bleu": bleu,
        "confirmed": False,
        "first_steps": _integer(result.get("steps")),
    }


def training_stop(
    result: dict, job: dict, threshold: float | None, confirmation: dict | None = None
) -> tuple[str, dict]:
    """Why training stopped, for the student (one line) and for machines (``extra_data.training``).

    ``result`` is the worker's reply (attacker-controlled: every value is checked and bounded);
    ``job`` is what the judge asked for; ``confirmation`` what the judge made of a stop
    (``_confirm_stop``)."""
    budget = job.get("steps")
    asked = job.get("validation") or {}
    reason = result.get("stopped_by")
    reason = reason if reason in ("steps", "time", "validation") else "unknown"
    steps = _integer(result.get("steps"))
    seen = result.get("validation") if isinstance(result.get("validation"), dict) else {}
    history = []
    for entry in (seen.get("history") if isinstance(seen.get("history"), list) else [])[:1000]:
        try:  # [step, teacher-forced accuracy, BLEU or None when the gate was shut]
            step, accuracy = int(entry[0]), float(entry[1])
            bleu = None if entry[2] is None else float(entry[2])
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            break
        if not math.isfinite(accuracy) or (bleu is not None and not math.isfinite(bleu)):
            break
        history.append([step, round(accuracy, 4), None if bleu is None else round(bleu, 2)])
    error = str(seen.get("error") or "")[:200]
    data = {
        "stopped_by": reason,
        "steps": steps,
        "budget_steps": budget,
        "budget_seconds": job.get("seconds"),
        "bf16": result.get("bf16") is True,
        "validation": None
        if not asked
        else {
            "target": asked["target"],
            "threshold": threshold,
            "margin": VALIDATION_MARGIN,
            "every": asked.get("every"),
            "first": asked.get("first"),
            "gate": asked.get("gate"),
            "sentences": len(asked.get("pairs", ())),
            "history": history,
            "seconds": _seconds(seen.get("seconds")),
            "error": error,
            "confirmation": confirmation,
        },
    }
    last = next(([step, bleu] for step, _, bleu in reversed(history) if bleu is not None), None)  # last translation
    if confirmation is not None and not confirmation["confirmed"]:
        text = _(
            "Training first stopped at step {step}: your model's own forward pass reached the validation "
            "BLEU of {target}, but the grader's decoding of the trained weights gave only {bleu}, so it "
            "trained your model again for the whole budget of {budget} steps (check your model against "
            "the model tests).",
            step=confirmation["first_steps"],
            target=f"{asked['target']:g}",
            bleu=f"{confirmation['judge_bleu']:.2f}",
            budget=budget,
        )
    elif reason == "validation" and asked and last is not None and last[1] >= asked["target"]:
        judged = confirmation["judge_bleu"] if confirmation else last[1]
        text = _(
            "Training stopped at step {step} of {budget}: the BLEU on the {sentences} validation sentences "
            "reached {bleu} (the grader's decoding of the weights: {judged}), at least {target} (the "
            "full-points threshold {threshold} plus a margin of {margin}), so more steps could not change "
            "your points.",
            step=last[0],
            budget=budget,
            sentences=len(asked.get("pairs", ())),
            bleu=f"{last[1]:.2f}",
            judged=f"{judged:.2f}",
            target=f"{asked['target']:g}",
            threshold=f"{threshold:g}",
            margin=f"{VALIDATION_MARGIN:g}",
        )
    elif reason == "time" and job.get("seconds"):
        text = _(
            "Training stopped at the time cap ({seconds} s) after {step} of {budget} steps: your model "
            "trains much more slowly than the reference.",
            seconds=f"{job['seconds']:g}",
            step=steps,
            budget=budget,
        )
    elif asked and error:
        text = _(
            "Training ran the whole budget of {budget} steps: the validation check failed ({error}).",
            budget=budget,
            error=error,
        )
    elif asked and last is not None:
        text = _(
            "Training ran the whole budget of {budget} steps: the validation BLEU stayed below {target} "
            "(last check: {bleu} at step {step}).",
            budget=budget,
            target=f"{asked['target']:g}",
            bleu=f"{last[1]:.2f}",
            step=last[0],
        )
    elif asked and history and reason == "steps":
        text = _(
            "Training ran the whole budget of {budget} steps: your model never came near the validation BLEU "
            "of {target} (its teacher-forced token accuracy on the validation sentences stayed below "
            "{gate}%, last {accuracy}%, so they were not translated).",
            budget=budget,
            target=f"{asked['target']:g}",
            gate=f"{100 * float(asked.get('gate') or 0):g}",
            accuracy=f"{100 * history[-1][1]:.1f}",
        )
    elif reason == "steps":
        text = _("Training ran the whole budget of {budget} steps.", budget=budget)
    else:
        text = _("Training stopped after {step} steps.", step=steps)
    return text, data


def _integer(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _seconds(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return round(value, 3) if math.isfinite(value) else None


def _number(value, fmt: str) -> str:
    try:
        return fmt.format(float(value or 0))
    except (TypeError, ValueError):
        return "?"


def _losses(losses) -> str:
    try:
        return loss_summary([[int(step), float(loss)] for step, loss in (losses or [])])
    except (TypeError, ValueError):
        return _("no loss recorded")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
