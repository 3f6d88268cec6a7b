"""Does grading to the threshold (and decoding the test split batched) change any mutant's
translation points?

    python -m tests.selftest.mutants.early_stop [--jobs N] [--only ID,ID] [--json out.json]

For each mutant of the catalogue whose module the trusted loop uses (all but ``training``;
``decoding`` is left out too: the trusted loop, the validation looks and the judge never call
the student's decoder, so those mutants train and stop exactly like the reference, which is
run as ``reference``), in its own process: the translation part's training (seed 0, the
grading settings: ``GRADING_STEPS``, bf16 "auto", one thread) runs the whole budget while a
``Validation`` with the grading constants looks on without stopping. At its first look over
the bar the judge's side is computed as ``grade_translation`` does (``_confirm_stop``: its own
model of the weights on the validation split; if that is below the bar the grade would train
again without looks, i.e. exactly the full-budget run) and the judge's test BLEU at that step;
after the whole budget, the judge's test BLEU again. Since looks leave training unchanged
(``test_validation_checks_leave_the_training_unchanged``), this one run shows both grades: the
grade before (the whole budget, the test split decoded row by row: ``trusted.translate_row_by_row``) and
now (the accepted stop, else the whole budget; the test split decoded batched by
``validation.greedy_translate``, as the grade does). Takes about as long as one graded training
per mutant (a few minutes each on one core).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run_one(mutant_id: str) -> dict:
    """One mutant (or "reference") in this process; -> plain data."""
    import torch

    from grader.contract import MODEL_SIZES
    from grader.data.corpus import load_synthetic
    from grader.rubric import load_rubric
    from grader.translation import evaluate, grading, trusted, validation
    from grader.translation.batching import encode_pairs
    from grader.translation.train import ModelConfig, TrainConfig, build_model, load_implementation, train_model
    from grader.translation.vocab import Vocab
    from tests.selftest.mutants.catalogue import MUTANTS
    from tests.selftest.mutants.run import apply

    torch.set_num_threads(1)
    part = load_rubric().parts["translation"]
    outcome = {"id": mutant_id}
    with tempfile.TemporaryDirectory(prefix=f"early-stop-{mutant_id}-") as tmp:
        if mutant_id == "reference":
            impl = load_implementation("solutions")
        else:
            apply(next(m for m in MUTANTS if m.id == mutant_id), Path(tmp))
            impl = load_implementation(tmp)
        corpus = load_synthetic(seed=0)
        src_vocab = Vocab.build(en for en, _ in corpus.train)
        tgt_vocab = Vocab.build(ja for _, ja in corpus.train)
        model_config = ModelConfig.from_dict(MODEL_SIZES)
        config = trusted.oracle_config(len(src_vocab), len(tgt_vocab), model_config)
        target = grading.top_threshold(part) + grading.VALIDATION_MARGIN

        def judged(state, split: str, batched: bool) -> float | None:
            """The judge's BLEU of ``state`` on a split: with the grader's batched greedy decoder
            (``validation.greedy_translate``: how the grade decodes both splits) or row by row
            (``trusted.translate_row_by_row``: how the test split was decoded before)."""
            try:
                model, _ = trusted.trusted_model(state, config)
            except trusted.ContractMismatch:
                return None
            pairs = getattr(corpus, split)
            sources = [en for en, _ in pairs]
            hypotheses = (
                validation.greedy_translate(model, src_vocab, tgt_vocab, sources, device="cpu")
                if batched
                else trusted.translate_row_by_row(model, src_vocab, tgt_vocab, sources)
            )
            return evaluate.score(hypotheses, [ja for _, ja in pairs])["bleu"]

        class Watching(validation.Validation):
            """The grading looks, recording the first stop instead of making it."""

            stop: dict | None = None

            def reached(self, model, step):
                if super().reached(model, step) and self.stop is None:
                    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
                    self.stop = {
                        "step": step,
                        "worker_bleu": self.history[-1][2],
                        "judge_valid_bleu": judged(state, "valid", batched=True),
                    }
                    if self.stop["judge_valid_bleu"] is not None and self.stop["judge_valid_bleu"] >= target:
                        self.stop["test_bleu"] = judged(state, "test", batched=True)
                        self.stop["test_bleu_rows"] = judged(state, "test", batched=False)
                return False

        try:
            model = build_model(impl, len(src_vocab), len(tgt_vocab), model_config, seed=grading.GRADING_SEED)
            watch = Watching(
                corpus.valid,
                src_vocab,
                tgt_vocab,
                target=target,
                every=grading.VALIDATION_EVERY,
                first=grading.VALIDATION_FIRST,
                gate=grading.VALIDATION_GATE,
            )
            result = train_model(
                model,
                impl,
                encode_pairs(corpus.train, src_vocab, tgt_vocab),
                TrainConfig(
                    steps=grading.GRADING_STEPS,
                    seconds=grading.GRADING_SECONDS,
                    seed=grading.GRADING_SEED,
                    threads=1,
                    bf16=grading.GRADING_BF16,
                ),
                validation=watch,
            )
        except Exception as error:  # the job fails: 0 points in both grades
            outcome.update(error=f"{type(error).__name__}: {error}"[:300], points_before=0.0, points_now=0.0, same=True)
            return outcome
        stop = watch.stop
        accepted = stop is not None and stop["judge_valid_bleu"] is not None and stop["judge_valid_bleu"] >= target
        outcome.update(
            steps=result.steps,
            stopped_by=result.stopped_by,
            stop=stop,
            accepted=accepted,
            looks=watch.history,
            look_error=watch.error,
        )
        # Before: the whole budget, the test split decoded row by row. Now: the stop if the judge
        # accepts it, else the whole budget; the test split decoded batched.
        state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        outcome["test_bleu_full_rows"] = judged(state, "test", batched=False)
        outcome["points_before"] = grading.points_for(outcome["test_bleu_full_rows"] or 0.0, part)
        if accepted:
            outcome["points_now"] = grading.points_for(stop["test_bleu"] or 0.0, part)
        else:
            outcome["test_bleu_full"] = judged(state, "test", batched=True)
            outcome["points_now"] = grading.points_for(outcome["test_bleu_full"] or 0.0, part)
        outcome["same"] = outcome["points_now"] == outcome["points_before"]
    return outcome


def mutant_ids() -> list[str]:
    from tests.selftest.mutants.catalogue import MUTANTS

    return ["reference"] + [m.id for m in MUTANTS if m.module not in ("training", "decoding")]


def _in_subprocess(mutant_id: str) -> dict:
    command = [sys.executable, "-m", "tests.selftest.mutants.early_stop", "--worker", mutant_id]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"id": mutant_id, "error": (done.stderr.strip().splitlines() or ["no output"])[-1], "same": None}


def report(outcomes: list[dict]) -> str:
    lines = [f"{'mutant':<34} {'stop':<26} {'points before':>13} {'points now':>10}  same"]
    for o in outcomes:
        stop = o.get("stop")
        if o.get("error"):
            where = "job fails"
        elif stop is None:
            where = "never reaches the bar"
        else:
            where = f"{stop['step']} " + (
                "accepted" if o.get("accepted") else f"rejected (judge {stop['judge_valid_bleu']})"
            )
        lines.append(
            f"{o['id']:<34} {where:<26} {o.get('points_before')!s:>13} {o.get('points_now')!s:>10}  {o.get('same')}"
        )
    changed = [o["id"] for o in outcomes if o.get("same") is False]
    lines += ["", f"{len(outcomes)} graded; points changed: {', '.join(changed) if changed else 'none'}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated mutant ids (reference: the solution)")
    parser.add_argument("--json", default=None, help="also write the outcomes to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_one(args.worker)))
        return 0
    chosen = [i for i in mutant_ids() if not args.only or i in args.only.split(",")]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(_in_subprocess, chosen))
    print(report(outcomes))
    if args.json:
        Path(args.json).write_text(json.dumps(outcomes, indent=1), encoding="utf-8")
    return 0 if all(o.get("same") is not False for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
