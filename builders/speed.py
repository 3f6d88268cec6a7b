"""How fast the trusted loop trains, and what a grade costs (the ``grading`` step of ``make bench``).

    python -m builders.speed [--steps 60] [--rounds 2] [--variants fp32,bf16,peer,...]
                             [--grades] [--grading] [--profile VARIANT] [--out speed.json]

1. **Throughput, A/B interleaved** (``throughput``). One thread, as a grade trains. Variants:
   ``fp32`` the reference in the trusted loop without autocast (the loop before bf16); ``bf16``
   the same under bf16 autocast (what grading uses where bf16 is native: ``train.native_bf16``);
   ``peer`` the ``torch.nn.Transformer`` of the same sizes (builders/bench.py), eager fp32;
   ``peer_bf16`` the peer under the same autocast; ``peer_compiled`` the peer under
   ``torch.compile`` (its compile time, over ``COMPILE_WARMUP_STEPS`` steps of other batches, is
   reported apart and left out of its tokens/s). Each runs ``--steps`` steps on the same batches,
   ``--rounds`` times in the order fp32, bf16, peer, ..., fp32, bf16, peer, ..., every run in a
   fresh process: on a shared machine the load drifts, and interleaving spreads it over all
   variants. Reported: every run's tokens/s and CPU seconds, the medians, the ratios, whether
   the runs of one variant had identical losses (same seed, same device: they must), and model
   FLOP/s as a share of this machine's one-thread fp32 matmul peak.
2. **What a grade costs** (``--grades``, ``grade_costs``): ``python -m grader grade`` of the
   reference with training, the same with ``--part-jobs 1`` (the parts one after the other),
   ``--no-train``, and the stubs: wall time, points, seconds per part, where training stopped.
3. **Grading to the threshold** (``--grading``): the translation part of the grade run on the
   reference in this process (no sandbox), as ``grade`` runs it.
4. **Profile** (``--profile VARIANT``): where the time of one training step goes
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fp32", "bf16", "peer", "peer_bf16", "peer_compiled")
COMPILE_WARMUP_STEPS = 20


def _setup(variant: str, steps: int, seed: int, threads: int):
    import warnings

    import torch

    from builders.bench import torch_nn_model
    from grader.contract import MODEL_SIZES
    from grader.data.corpus import load_synthetic
    from grader.translation.batching import encode_pairs
    from grader.translation.train import ModelConfig, TrainConfig, build_model, load_implementation
    from grader.translation.vocab import Vocab

    warnings.filterwarnings("ignore", message="enable_nested_tensor")
    impl = load_implementation("solutions")
    corpus = load_synthetic(seed=0)
    src_vocab = Vocab.build(en for en, _ in corpus.train)
    tgt_vocab = Vocab.build(ja for _, ja in corpus.train)
    examples = encode_pairs(corpus.train, src_vocab, tgt_vocab)
    model_config = ModelConfig.from_dict(MODEL_SIZES)
    if variant.startswith("peer"):
        torch.manual_seed(seed)
        model = torch_nn_model(len(src_vocab), len(tgt_vocab), model_config)
    else:
        model = build_model(impl, len(src_vocab), len(tgt_vocab), model_config, seed=seed)
    bf16 = variant in ("bf16", "peer_bf16")
    config = TrainConfig(steps=steps, seed=seed, threads=threads, device="cpu", bf16=bf16)
    return impl, model, examples, config


def measure(variant: str, steps: int, seed: int = 0, threads: int = 1) -> dict:
    """One run of the trusted loop (in this process)."""
    import dataclasses

    import torch

    from builders.bench import _count_flops_per_token
    from grader.translation.train import train_model

    impl, model, examples, config = _setup(variant, steps, seed, threads)
    extra = {}
    if variant == "flops":  # not a run: the model FLOPs per token of the reference and the peer
        _, peer, _, _ = _setup("peer", steps, seed, threads)
        device = torch.device("cpu")
        return {
            "variant": variant,
            "reference": _count_flops_per_token(model, impl, examples, config, device),
            "peer": _count_flops_per_token(peer, impl, examples, config, device),
        }
    if variant == "peer_compiled":
        model = torch.compile(model)
        started = time.perf_counter()
        train_model(model, impl, examples, dataclasses.replace(config, steps=COMPILE_WARMUP_STEPS, seed=seed + 1))
        extra["compile_and_warmup_seconds"] = round(time.perf_counter() - started, 1)
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
        **extra,
    }


def profile(variant: str, threads: int = 1, warmup: int = 10, steps: int = 10, rows: int = 25) -> str:
    """The busiest operators of ``steps`` training steps, after ``warmup`` steps."""
    import dataclasses

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from grader.translation.train import train_model

    impl, model, examples, config = _setup(variant, warmup, 0, threads)
    train_model(model, impl, examples, config)
    config = dataclasses.replace(config, steps=steps, seed=1)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        result = train_model(model, impl, examples, config)
    header = f"{variant}: {steps} steps in {result.seconds:.2f} s ({result.seconds / steps * 1000:.0f} ms per step)"
    return header + "\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def grading_run() -> dict:
    """The translation part of the grade on the reference, in this process (no sandbox)."""
    from grader.rubric import load_rubric
    from grader.translation import grading

    sys.path.insert(0, str(ROOT / "solutions"))  # the job imports the package "transformer"
    part = load_rubric().parts["translation"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        (check,) = grading.grade_translation(None, part, Path(out))
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
    command = [sys.executable, "-m", "builders.speed", "--worker", json.dumps(spec)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"variant": spec["variant"], "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput(steps: int, rounds: int, threads: int = 1, variants=VARIANTS) -> dict:
    """The interleaved A/B runs, their summary, and model FLOP/s against the matmul peak."""
    from builders.bench import matmul_peak

    runs = []
    for _ in range(rounds):
        for variant in variants:
            runs.append(_run_worker({"variant": variant, "steps": steps, "threads": threads}))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "losses"}), file=sys.stderr, flush=True)
    flops = _run_worker({"variant": "flops", "steps": steps, "threads": threads})
    peak = matmul_peak(threads, "cpu")["flops_per_second"]
    summary = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant and "error" not in r]
        if mine:
            tokens_per_second = statistics.median(r["tokens_per_second"] for r in mine)
            per_token = flops.get("peer" if variant.startswith("peer") else "reference")
            summary[variant] = {
                "tokens_per_second": [r["tokens_per_second"] for r in mine],
                "median_tokens_per_second": tokens_per_second,
                "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in mine),
                "deterministic": all(r["losses"] == mine[0]["losses"] for r in mine),
                "final_loss": mine[0]["losses"][-1][1] if mine[0]["losses"] else None,
                "share_of_fp32_matmul_peak": round(per_token * tokens_per_second / peak, 3) if per_token else None,
                **(
                    {"compile_and_warmup_seconds": mine[0]["compile_and_warmup_seconds"]}
                    if variant == "peer_compiled"
                    else {}
                ),
            }

    def ratio(a, b, key="median_tokens_per_second"):
        if a in summary and b in summary and summary[b][key]:
            return round(summary[a][key] / summary[b][key], 3)
        return None

    return {
        "steps": steps,
        "rounds": rounds,
        "threads": threads,
        "fp32_matmul_peak_flops_per_second": peak,
        "flops_per_token": {k: v for k, v in flops.items() if k != "variant"},
        "runs": [{k: v for k, v in r.items() if k != "losses"} for r in runs],
        "summary": summary,
        "ratios": {
            f"{a}/{b}": ratio(a, b)
            for a, b in (("bf16", "fp32"), ("bf16", "peer"), ("bf16", "peer_bf16"), ("bf16", "peer_compiled"))
        },
    }


def _grade(submission: str, *options: str) -> dict:
    """``python -m grader grade SUBMISSION`` with ``options``: its wall time and what it gave."""
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as out:
        command = [sys.executable, "-m", "grader", "grade", submission, "--out", out, "--quiet", *options]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = round(time.perf_counter() - started, 1)
        try:
            results = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"command": " ".join(command[1:]), "wall_seconds": wall, "error": done.stderr[-400:]}
    extra = results["extra_data"]
    training = extra["parts"].get("translation", {}).get("training") or {}
    return {
        "command": " ".join(["python", *command[1:4], "..."] + list(options)),
        "wall_seconds": wall,
        "score": results["score"],
        "max_score": extra["max_score"],
        "points": {name: part["score"] for name, part in extra["parts"].items()},
        "part_seconds": extra["timings"]["parts_s"],
        "stopped_by": training.get("stopped_by"),
        "training_steps": training.get("steps"),
    }


def grade_costs(with_one_lane: bool = True) -> dict:
    """What ``grade`` costs on this machine (one grade at a time, nothing else running)."""
    runs = {
        "reference": _grade("solutions"),
        "reference_no_train": _grade("solutions", "--no-train"),
        "stubs": _grade("assignments"),
    }
    if with_one_lane:
        runs["reference_one_lane"] = _grade("solutions", "--part-jobs", "1")
    from grader.grade import default_part_jobs

    return {"part_jobs": default_part_jobs(), "runs": runs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--grades", action="store_true", help="also time grade on the reference and the stubs")
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

    from grader.translation.train import native_bf16

    results = {
        "native_bf16": native_bf16(torch.device("cpu")),
        "throughput": throughput(args.steps, args.rounds, args.threads, tuple(args.variants.split(","))),
    }
    if args.grades:
        results["grades"] = grade_costs()
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
