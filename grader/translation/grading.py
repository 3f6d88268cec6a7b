"""The ``translation`` part of the grade (runs in the judge).

``grade_translation(proxy, part, out_dir)`` generates the built-in corpus
(``grader.data.synthetic.generate_corpus``), has the trusted job
(``grader.translation.job:run``) train the student's model and translate the held-out test
sources inside the sandbox (``proxy.call_trusted``), then scores the translations here with
sacrebleu against the references (which never enter the sandbox), awards points from
``part.bleu_thresholds``, and draws the attention picture into ``out_dir``.

Budget: ``GRADING_STEPS`` optimiser steps (about 2.5 minutes on 2 idle CPU cores for the
reference solution, plus decoding: about 3 minutes in all). The step count, not the clock,
ends training, so that the grade does not depend on the machine's speed or load and the same
submission always gets the same BLEU; ``GRADING_SECONDS`` is only a safety cap for very slow
submissions (a few times the reference's time). The worker's thread count (``grade --threads``)
applies; ``GRADING_THREADS`` = None leaves it alone.

The check's ``output`` is in the grading language (``grader.i18n``); its name stays English.
"""
from __future__ import annotations

import math
import traceback
from pathlib import Path

from grader.i18n import _

GRADING_SEED = 0
GRADING_STEPS = 700
GRADING_SECONDS = 480.0
GRADING_THREADS = None
GRADING_MODEL = {"d_model": 128, "num_heads": 4, "num_layers": 2, "d_ff": 512, "dropout": 0.1}
ATTENTION_EXAMPLE = "this is a pen ."
JOB_TARGET = "grader.translation.job:run"
CHECK_NAME = "translation: BLEU on the held-out test set"
PICTURE_NAME = "translation_attention.png"


def build_job(corpus, *, steps: int | None = GRADING_STEPS, seconds: float | None = GRADING_SECONDS,
              seed: int = GRADING_SEED, threads: int | None = GRADING_THREADS, model: dict | None = None,
              attention_example: str = ATTENTION_EXAMPLE, split: str = "test") -> dict:
    """The plain-data job for ``job.run``: training pairs and test *sources* only."""
    return {
        "train": [[en, ja] for en, ja in corpus.train],
        "sources": [en for en, _ in getattr(corpus, split)],
        "seed": seed,
        "steps": steps,
        "seconds": seconds,
        "threads": threads,
        "model": dict(model or GRADING_MODEL),
        "attention_example": attention_example,
    }


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


def _run_job(proxy, job: dict) -> dict:
    if proxy is not None and hasattr(proxy, "call_trusted"):
        return proxy.call_trusted(JOB_TARGET, job)
    from . import job as job_module  # in-process (make demo without a sandbox, tests)

    return job_module.run(job)


def _thresholds_text(part) -> str:
    thresholds = sorted(((float(b), float(p)) for b, p in _get(part, "bleu_thresholds", ()) or ()), reverse=True)
    if not thresholds:
        return _("no thresholds")
    first = f"BLEU ≥ {thresholds[0][0]:g} → {float(_get(part, 'points', 0)):g}"
    return ", ".join([first] + [f"≥ {b:g} → {p:g}" for b, p in thresholds[1:]])


def grade_translation(proxy, part, out_dir, *, corpus=None, job_overrides: dict | None = None) -> list[dict]:
    """Train, translate, score; -> ``[check dict]`` (name, score, max_score, output, visibility)."""
    from . import evaluate

    max_score = float(_get(part, "points", 0.0))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check = {"name": CHECK_NAME, "score": 0.0, "max_score": max_score, "visibility": "visible"}
    if corpus is None:
        from grader.data.synthetic import generate_corpus

        corpus = generate_corpus(seed=0)
    job = build_job(corpus)
    job.update(job_overrides or {})
    references = [ja for _, ja in corpus.test]
    sources = [en for en, _ in corpus.test]

    try:
        result = _run_job(proxy, job)
        hypotheses = [str(h) for h in result["hypotheses"]]
        if len(hypotheses) != len(references):
            raise ValueError(_("the job returned {count} translations for {sources} sources",
                               count=len(hypotheses), sources=len(references)))
    except Exception as error:
        if type(error).__name__ in ("StudentCodeError", "WorkerCrashed"):
            raise  # the grader reports these itself (grader/grade.py: run_translation)
        check["output"] = (
            _("Training or translating with your model failed, so this part scores 0.") + "\n"
            f"{type(error).__name__}: {error}\n\n{_tail(traceback.format_exc())}"
        )
        return [check]

    scored = evaluate.score(hypotheses, references)
    points = points_for(scored["bleu"], part)
    check["score"] = points

    picture = None
    attention = result.get("attention")
    if isinstance(attention, dict) and attention.get("cross") is not None:
        try:
            from .attention_plot import plot_attention_dict

            picture = plot_attention_dict(out_dir / PICTURE_NAME, attention)
        except Exception as error:  # a missing picture never costs points
            picture = None
            attention = {"error": _("could not draw the attention picture: {error}", error=str(error))}

    tokens_per_second = float(result.get("tokens_per_second", 0.0))
    lines = [
        _("BLEU {bleu} on {sentences} held-out test sentences (sacrebleu {signature}); exact match {exact}%.",
          bleu=f"{scored['bleu']:.2f}", sentences=scored["sentences"], signature=scored["signature"],
          exact=f"{100 * scored['exact_match']:.1f}"),
        _("Points: {points}/{max_score}  ({thresholds}).", points=f"{points:g}", max_score=f"{max_score:g}",
          thresholds=_thresholds_text(part)),
        _("Training (trusted loop, your Transformer and masks): {steps} steps in {seconds} s, {epochs} epochs, "
          "{speed} tokens/s; {losses}.", steps=result.get("steps", "?"),
          seconds=f"{float(result.get('seconds', 0)):.0f}", epochs=f"{float(result.get('epochs', 0) or 0):.1f}",
          speed=f"{tokens_per_second:,.0f}", losses=loss_summary(result.get("losses") or [])),
        "",
        _("First translations (out) beside the references (ref):"),
        evaluate.format_samples(sources, hypotheses, references, n=5),
    ]
    if picture is not None:
        lines += ["", _("Attention picture ({source} → {target}): {picture}", source=repr(ATTENTION_EXAMPLE),
                        target=repr(" ".join(attention["target"][:-1])), picture=str(picture))]
    elif isinstance(attention, dict) and attention.get("error"):
        lines += ["", _("No attention picture: {error}", error=attention["error"])]
    else:
        lines += ["", _("No attention picture: the model kept no attn_weights in decoder.layers[-1].cross_attn.")]
    check["output"] = "\n".join(lines)
    check["extra_data"] = {
        "bleu": scored["bleu"], "signature": scored["signature"], "exact_match": scored["exact_match"],
        "tokens_per_second": tokens_per_second, "steps": result.get("steps"),
        "attention_png": str(picture) if picture else None,
    }
    return [check]


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
