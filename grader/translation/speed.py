"""How fast the trusted loop trains, and where a grade's training stops (``make bench`` part).

    python -m grader.translation.speed [--steps 60] [--rounds 2] [--threads 1] [--out speed.json]
                                       [--grading] [--profile VARIANT]

1. **Throughput, A/B interleaved.** The reference in the trusted loop in fp32 (the loop before
   bf16), in bf16 autocast (what grading uses where bf16 is native: ``train.native_bf16``), and
   the ``torch.nn.Transformer`` peer of the same sizes (eager, fp32, the benchmark's own model),
   each for ``--steps`` steps on the same batches, ``--rounds`` times in the order fp32, bf16,
   peer, fp32, bf16, peer, ..., every run in a fresh process: on a shared machine the load
   drifts, and interleaving spreads it over all variants. Reported: every run's tokens/s and
   CPU seconds, the medians, the ratios bf16/fp32 and bf16/peer, and whether the runs of one
   variant had identical losses (same seed, same device: they must).
2. **Grading to the threshold** (``--grading``): the translation part of the grade run on the
   reference in this process (no sandbox), as ``grade`` runs it: when and why training stopped,
   the validation looks, the test BLEU and the points.
3. **Profile** (``--profile fp32|bf16|peer``): where the time of one training step goes
   (``torch.profiler``, the busiest operators over 10 steps after 10 warm-up steps).

Prints one JSON document (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("fp32", "bf16", "peer")


def _peer_model(src_vocab_size, tgt_vocab_size, config):
    """The benchmark's ``torch.nn.Transformer`` peer (grader/bench.py, or builders/bench.py)."""
    try:
        from builders.bench import torch_nn_model
    except ImportError:
        from grader.bench import torch_nn_model
    return torch_nn_model(src_vocab_size, tgt_vocab_size, config)


def _setup(variant: str, steps: int, seed: int, threads: int):
    import warnings

    import torch

    from grader.contract import MODEL_SIZES
    from grader.data.corpus import load_synthetic

    from .batching import encode_pairs
    from .train import ModelConfig, TrainConfig, build_model, load_implementation
    from .vocab import Vocab

    warnings.filterwarnings("ignore", message="enable_nested_tensor")
    impl = load_implementation("solutions")
    corpus = load_synthetic(seed=0)
    src_vocab = Vocab.build(en for en, _ in corpus.train)
    tgt_vocab = Vocab.build(ja for _, ja in corpus.train)
    examples = encode_pairs(corpus.train, src_vocab, tgt_vocab)
    model_config = ModelConfig.from_dict(MODEL_SIZES)
    if variant == "peer":
        torch.manual_seed(seed)
        model = _peer_model(len(src_vocab), len(tgt_vocab), model_config)
    else:
        model = build_model(impl, len(src_vocab), len(tgt_vocab), model_config, seed=seed)
    config = TrainConfig(steps=steps, seed=seed, threads=threads, device="cpu", bf16=variant == "bf16")
    return impl, model, examples, config


def measure(variant: str, steps: int, seed: int = 0, threads: int = 1) -> dict:
    """One run of the trusted loop (in this process)."""
    from .train import train_model

    impl, model, examples, config = _setup(variant, steps, seed, threads)
    load = os.getloadavg()[0]
    result = train_model(model, impl, examples, config)
    return {
        "variant": variant,
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "cpu_seconds": round(result.cpu_seconds, 3),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "bf16": result.bf16,
        "losses": result.losses,
        "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


def profile(variant: str, threads: int = 1, warmup: int = 10, steps: int = 10, rows: int = 25) -> str:
    """The busiest operators of ``steps`` training steps, after ``warmup`` steps."""
    import dataclasses

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from .train import train_model

    impl, model, examples, config = _setup(variant, warmup, 0, threads)
    train_model(model, impl, examples, config)
    config = dataclasses.replace(config, steps=steps, seed=1)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        result = train_model(model, impl, examples, config)
    header = f"{variant}: {steps} steps in {result.seconds:.2f} s ({result.seconds / steps * 1000:.0f} ms per step)"
    return header + "\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def grading_run() -> dict:
    """The translation part of the grade on the reference, in this process (no sandbox)."""
    import tempfile

    from grader.rubric import load_rubric
    from grader.translation import grading

    part = load_rubric().parts["translation"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        (check,) = grading.grade_translation(None, part, out)
    extra = check["extra_data"]
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "points": check["score"],
        "max_points": check["max_score"],
        "test_bleu": extra.get("bleu"),
        "tokens_per_second": extra.get("tokens_per_second"),
        "training": extra.get("training"),
    }


def _run_worker(spec: dict) -> dict:
    command = [sys.executable, "-m", "grader.translation.speed", "--worker", json.dumps(spec)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"variant": spec["variant"], "error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput(steps: int, rounds: int, threads: int, variants=VARIANTS) -> dict:
    """The interleaved A/B runs and their summary."""
    runs = []
    for _ in range(rounds):
        for variant in variants:
            runs.append(_run_worker({"variant": variant, "steps": steps, "threads": threads}))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "losses"}), file=sys.stderr, flush=True)
    summary = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant and "error" not in r]
        if mine:
            summary[variant] = {
                "tokens_per_second": [r["tokens_per_second"] for r in mine],
                "median_tokens_per_second": statistics.median(r["tokens_per_second"] for r in mine),
                "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in mine),
                "deterministic": all(r["losses"] == mine[0]["losses"] for r in mine),
                "final_loss": mine[0]["losses"][-1][1] if mine[0]["losses"] else None,
            }

    def ratio(a, b, key="median_tokens_per_second"):
        if a in summary and b in summary and summary[b][key]:
            return round(summary[a][key] / summary[b][key], 3)
        return None

    return {
        "steps": steps,
        "rounds": rounds,
        "threads": threads,
        "runs": [{k: v for k, v in r.items() if k != "losses"} for r in runs],
        "summary": summary,
        "bf16_over_fp32": ratio("bf16", "fp32"),
        "bf16_over_peer": ratio("bf16", "peer"),
        "fp32_over_peer": ratio("fp32", "peer"),
        "cpu_time_fp32_over_bf16": ratio("fp32", "bf16", "median_cpu_seconds"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--grading", action="store_true", help="also grade the reference's translation part")
    parser.add_argument("--profile", choices=VARIANTS, help="print where one training step's time goes, and stop")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(measure(spec["variant"], spec["steps"], spec.get("seed", 0), spec.get("threads", 1))))
        return 0
    if args.profile:
        print(profile(args.profile, args.threads))
        return 0
    import torch

    from .train import native_bf16

    results = {
        "native_bf16": native_bf16(torch.device("cpu")),
        "throughput": throughput(args.steps, args.rounds, args.threads, tuple(args.variants.split(","))),
    }
    if args.grading:
        results["grading"] = grading_run()
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
