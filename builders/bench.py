"""Benchmarks of the translation training (``make bench``).

    python -m builders.bench [--quick] [--out bench/results.json] [--threads 2] [--minutes 3]

Measures, on this machine, and writes to a JSON file (and prints a table):

0. **What a grade costs** (``builders/speed.py``): the trusted loop's training throughput at one
   thread (as a grade trains) in fp32 and bf16 against ``torch.nn.Transformer`` eager, under
   bf16 and compiled, with model FLOP/s as a share of the one-thread matmul peak; then
   ``grade`` of the reference with and without training and of the stubs, one grade at a time.
   Goals (issue 17, 2 cores): grade with training <= 90 s, ``--no-train`` <= 20 s, bf16
   throughput >= 1.3x the eager peer and >= 50% of the matmul peak.
1. **Built-in task, reference solution**: BLEU on the held-out test set after ``--minutes``
   of training (default 3) on ``--threads`` CPU threads (default 2), greedy and beam 4; the
   median of 3 seeds (``--quick``: 1 seed). Target: BLEU >= 90, beam no worse than greedy.
2. **Ablations** with the same budget and seeds: no positional encoding (the ``pe`` table
   zeroed), no causal mask (trained with padding-only target masks, evaluated normally), no
   1/sqrt(d_k) scaling (``transformer.attention.scaled_dot_product_attention`` wrapped to scale
   the queries by sqrt(d_k) first). They patch the model build in the benchmark's own worker
   process only; ``solutions/`` is never edited.
3. **Peer comparison** at equal data, sizes, steps and seed: the reference against a model
   built from ``torch.nn.Transformer`` (same d_model/heads/layers/d_ff/dropout, batch_first,
   its own embeddings, sinusoidal positions and generator): training throughput ratio
   (tokens/s, goal >= 0.9x), peak memory ratio (CPU: max-RSS growth during training in a fresh
   process per model; CUDA: ``torch.cuda.max_memory_allocated``; goal <= 1.1x), BLEU at equal
   steps (goal within ±1), and model FLOP/s (counted by ``torch.utils.flop_counter``) as a share
   of this machine's fp32 matmul peak, measured in the same run.
4. **small_parallel_enja** with the reference: test BLEU after a bounded run (skipped, with a
   note, when the corpus is absent).
5. **Determinism**: the same seed twice on the same device -> the same losses and BLEU.

Every measurement runs in a fresh subprocess (``--worker``), so patches, memory peaks and
thread settings never leak from one to the next. The machine's load average is recorded next
to every run: on a shared machine, throughput (and so BLEU after a time budget) drops with it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("reference", "no_positional_encoding", "no_causal_mask", "no_attention_scaling", "torch_nn_transformer")


# =============================================================================================
# Worker side: one measurement in a fresh process
# =============================================================================================


def _rss_now_kib() -> int:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 0


def _maxrss_kib() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss


def torch_nn_model(src_vocab_size, tgt_vocab_size, config, pad_id=0):
    """A peer with the reference's interface, built from ``torch.nn.Transformer``."""
    import torch
    from torch import nn

    class TorchTransformer(nn.Module):
        def __init__(self):
            super().__init__()
            d = config.d_model
            self.pad_id = pad_id
            self.num_heads = config.num_heads
            self.scale = math.sqrt(d)
            self.src_embed = nn.Embedding(src_vocab_size, d, padding_idx=pad_id)
            self.tgt_embed = nn.Embedding(tgt_vocab_size, d, padding_idx=pad_id)
            position = torch.arange(config.max_len, dtype=torch.float64).unsqueeze(1)
            angle = position / 10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
            pe = torch.zeros(config.max_len, d, dtype=torch.float64)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(angle), torch.cos(angle[:, : d // 2])
            self.register_buffer("pe", pe.float())
            self.dropout = nn.Dropout(config.dropout)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.transformer = nn.Transformer(
                    d,
                    config.num_heads,
                    config.num_layers,
                    config.num_layers,
                    config.d_ff,
                    config.dropout,
                    batch_first=True,
                )
            self.generator = nn.Linear(d, tgt_vocab_size)
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

        def _embed(self, table, tokens):
            return self.dropout(table(tokens) * self.scale + self.pe[: tokens.size(1)])

        def encode(self, src, src_mask):  # our masks: True = visible; torch's: True = blocked
            return self.transformer.encoder(self._embed(self.src_embed, src), src_key_padding_mask=~src_mask[:, 0, :])

        def decode(self, tgt, memory, src_mask, tgt_mask):
            blocked = ~tgt_mask
            if blocked.size(0) == 1:
                blocked = blocked[0]
            else:
                blocked = blocked.repeat_interleave(self.num_heads, dim=0)
            return self.transformer.decoder(
                self._embed(self.tgt_embed, tgt), memory, tgt_mask=blocked, memory_key_padding_mask=~src_mask[:, 0, :]
            )

        def forward(self, src, tgt, src_mask, tgt_mask):
            return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))

    return TorchTransformer()


def _apply_variant(variant, impl, model):
    """Patch the trusted model build for an ablation (in this worker process only)."""

    target_mask_fn = None
    if variant == "no_positional_encoding":
        model.positional.pe.zero_()
    elif variant == "no_causal_mask":

        def target_mask_fn(tgt_in):  # padding only: the decoder may look at the future while training
            return impl.masks.padding_mask(tgt_in, 0)
    elif variant == "no_attention_scaling":
        original = impl.attention.scaled_dot_product_attention

        def unscaled(query, key, value, mask=None, dropout=None):
            return original(query * math.sqrt(query.size(-1)), key, value, mask, dropout)

        impl.attention.scaled_dot_product_attention = unscaled  # MultiHeadAttention looks it up at call time
    return target_mask_fn


def _count_flops_per_token(model, impl, examples, config, device, n_batches=4):
    """Model FLOPs (forward + backward, as counted by torch.utils.flop_counter) per
    source+target token, over a few training batches."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from grader.translation.batching import collate, token_batches

    batches = token_batches(examples, config.max_tokens, seed=1234)[:n_batches]
    model.train()
    total_flops, tokens = 0, 0
    for indices in batches:
        batch = collate([examples[i] for i in indices]).to(device)
        counter = FlopCounterMode(display=False)
        with counter:
            logits = model(
                batch.src, batch.tgt_in, impl.masks.padding_mask(batch.src, 0), impl.masks.target_mask(batch.tgt_in, 0)
            )
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)),
                batch.tgt_out.reshape(-1),
                ignore_index=0,
                label_smoothing=0.1,
            )
            loss.backward()
        model.zero_grad(set_to_none=True)
        total_flops += counter.get_total_flops()
        tokens += batch.n_src_tokens + batch.n_tgt_tokens
    model.eval()
    return total_flops / max(tokens, 1)


def worker(spec: dict) -> dict:
    """One measurement: build, train, evaluate; -> plain results."""
    import torch

    from grader.translation import cli, decode
    from grader.translation.batching import encode_pairs
    from grader.translation.train import (
        ModelConfig,
        TrainConfig,
        build_model,
        count_parameters,
        load_implementation,
        resolve_device,
        train_model,
    )
    from grader.translation.vocab import Vocab

    warnings.filterwarnings("ignore", message="enable_nested_tensor")
    variant = spec.get("variant", "reference")
    load_before = os.getloadavg()[0]
    impl = load_implementation(spec.get("impl", "solutions"))
    corpus = cli.load_corpus(spec.get("task", "synthetic"), spec.get("data_dir"))
    model_config = ModelConfig.from_dict(spec.get("model"))
    train_config = TrainConfig(
        steps=spec.get("steps"),
        seconds=spec.get("seconds"),
        seed=spec["seed"],
        threads=spec.get("threads"),
        device=spec.get("device", "auto"),
        bf16=bool(spec.get("bf16")),
        **spec.get("training", {}),
    )
    device = resolve_device(train_config.device)
    src_vocab = Vocab.build(en for en, _ in corpus.train)
    tgt_vocab = Vocab.build(ja for _, ja in corpus.train)
    examples = encode_pairs(corpus.train, src_vocab, tgt_vocab, max_len=model_config.max_len - 2)
    if train_config.threads:
        torch.set_num_threads(train_config.threads)

    rss_before = _rss_now_kib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if variant == "torch_nn_transformer":
        torch.manual_seed(train_config.seed)
        model = torch_nn_model(len(src_vocab), len(tgt_vocab), model_config)
    else:
        model = build_model(impl, len(src_vocab), len(tgt_vocab), model_config, seed=train_config.seed)
    target_mask_fn = _apply_variant(variant, impl, model)
    result = train_model(model, impl, examples, train_config, device=device, target_mask_fn=target_mask_fn)
    memory = {
        "rss_growth_mib": round(max(0, _maxrss_kib() - rss_before) / 1024, 1),
        "max_rss_mib": round(_maxrss_kib() / 1024, 1),
    }
    if device.type == "cuda":
        memory["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    load_after = os.getloadavg()[0]

    out = {
        "variant": variant,
        "seed": train_config.seed,
        "task": spec.get("task", "synthetic"),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "parameters": count_parameters(model),
        "training": {k: v for k, v in result.as_dict().items() if k != "losses"},
        "losses": result.losses,
        "memory": memory,
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }
    split = spec.get("split", "test")
    pairs = getattr(corpus, split)
    evaluation = cli.evaluate_model(
        model, impl, src_vocab, tgt_vocab, pairs, beams=tuple(spec.get("beams", (0,))), bf16=train_config.bf16
    )
    out["evaluation"] = {k: {kk: vv for kk, vv in v.items() if kk != "hypotheses"} for k, v in evaluation.items()}
    first = next(iter(evaluation.values()))
    out["hypotheses_digest"] = _digest(first["hypotheses"])
    out["samples"] = [[en, first["hypotheses"][i], ja] for i, (en, ja) in enumerate(pairs[:3])]
    if spec.get("task", "synthetic") == "synthetic":
        out["this_is_a_pen"] = decode.translate(model, impl, src_vocab, tgt_vocab, ["this is a pen ."])[0]
    if spec.get("count_flops"):
        out["flops_per_token"] = _count_flops_per_token(model, impl, examples, train_config, device)
        out["model_flops_per_second"] = out["flops_per_token"] * result.tokens_per_second
    return out


def _digest(lines) -> str:
    import hashlib

    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


def matmul_peak(threads: int | None, device: str = "auto", seconds: float = 3.0) -> dict:
    """This machine's fp32 matmul throughput: the best of repeated square ``torch.mm``."""
    import torch

    from grader.translation.train import resolve_device

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    n = 8192 if dev.type == "cuda" else 1024
    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or (time.perf_counter() < deadline and runs < 50):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        torch.mm(a, b)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        best = min(best, time.perf_counter() - start)
        runs += 1
    return {
        "n": n,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "runs": runs,
        "flops_per_second": 2 * n**3 / best,
        "load_average": round(os.getloadavg()[0], 2),
    }


# =============================================================================================
# Orchestrator
# =============================================================================================


def run_worker(spec: dict, timeout: float | None = None) -> dict:
    """Run ``worker(spec)`` in a fresh Python process; -> its result (or {"error": ...})."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ)
        if spec.get("threads"):
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(spec["threads"])
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "builders.bench", "--worker", str(spec_path), "--result", str(result_path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not result_path.is_file():
            return {
                "error": f"worker exited {proc.returncode}",
                "stderr": proc.stderr[-3000:],
                "spec": spec,
                "wall_seconds": round(wall, 1),
            }
        result = json.loads(result_path.read_text())
        result["wall_seconds"] = round(wall, 1)
        return result


def machine_info(threads) -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return info


def _bleu(result, decoder="greedy"):
    try:
        return result["evaluation"][decoder]["bleu"]
    except (KeyError, TypeError):
        return None


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _say(*args):
    print(*args, flush=True)


@dataclass
class Bench:
    """One bench run: its settings (from the command line) and the results so far, written to
    ``--out`` after every measurement so that an interrupted run keeps what it measured."""

    args: argparse.Namespace
    quick: bool
    seeds: list[int]
    seconds: float  # training budget of each built-in task run
    skip: set[str]
    base: dict  # what every worker's spec starts from
    results: dict
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Bench:
        from grader.contract import MODEL_SIZES

        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else [0, 1, 2])
        seconds = args.minutes * 60.0
        base = {
            "impl": "solutions",
            "threads": args.threads,
            "device": args.device,
            "model": dict(MODEL_SIZES),
            "bf16": args.bf16,
        }
        results = {
            "mode": "quick" if args.quick else "full",
            "machine": machine_info(args.threads),
            "budget_seconds": seconds,
            "seeds": seeds,
            "model": dict(MODEL_SIZES),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        return cls(args, args.quick, seeds, seconds, set(filter(None, (args.skip or "").split(","))), base, results)

    def save(self) -> None:
        self.results["elapsed_seconds"] = round(time.perf_counter() - self.started, 1)
        if self.args.out:
            Path(self.args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(self.args.out).write_text(
                json.dumps(self.results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )


def measure_matmul_peak(bench: Bench) -> None:
    """This machine's fp32 matmul peak: the denominator of the model FLOP/s shares."""
    _say(f"== fp32 matmul peak ({bench.args.threads} threads)")
    bench.results["matmul_peak"] = matmul_peak(bench.args.threads, bench.args.device)
    _say(f"   {bench.results['matmul_peak']['flops_per_second'] / 1e9:.1f} GFLOP/s")


def measure_synthetic(bench: Bench) -> None:
    """The built-in task: the reference and its ablations, every seed, then their medians."""
    runs = {}
    variants = ["reference"] + (
        [] if "ablations" in bench.skip else ["no_positional_encoding", "no_causal_mask", "no_attention_scaling"]
    )
    for seed in bench.seeds:
        for variant in variants:
            _say(f"== synthetic, {variant}, seed {seed}, {bench.seconds:.0f} s of training")
            spec = {
                **bench.base,
                "variant": variant,
                "seed": seed,
                "seconds": bench.seconds,
                "beams": [0, 4] if variant == "reference" else [0],
            }
            r = run_worker(spec)
            runs.setdefault(variant, []).append(r)
            _say("   " + _run_line(r))
            bench.results["synthetic"] = {"runs": runs}
            bench.save()
    bench.results["synthetic"] = {"runs": runs, "summary": synthetic_summary(runs, variants)}
    bench.save()


def synthetic_summary(runs: dict[str, list[dict]], variants: list[str]) -> dict:
    """Per variant: the medians over the seeds; and whether the targets are met."""
    summary = {}
    for variant, rs in runs.items():
        summary[variant] = {
            "greedy_bleu_median": _median(_bleu(r) for r in rs),
            "beam4_bleu_median": _median(_bleu(r, "beam4") for r in rs) if variant == "reference" else None,
            "greedy_bleu_per_seed": [_bleu(r) for r in rs],
            "tokens_per_second_median": _median(r.get("training", {}).get("tokens_per_second") for r in rs),
            "steps_median": _median(r.get("training", {}).get("steps") for r in rs),
        }
    ref = summary.get("reference", {})
    summary["targets"] = {
        "reference_bleu_ge_90": (ref.get("greedy_bleu_median") or 0) >= 90,
        "beam_no_worse_than_greedy": (ref.get("beam4_bleu_median") or 0) >= (ref.get("greedy_bleu_median") or 0),
        "ablations_far_below": all(
            (summary[v]["greedy_bleu_median"] or 0) <= (ref.get("greedy_bleu_median") or 0) - 20 for v in variants[1:]
        )
        if len(variants) > 1
        else None,
    }
    return summary


def compare_with_torch_nn(bench: Bench) -> None:
    """The reference against ``torch.nn.Transformer`` at equal data, sizes, steps and seed."""
    steps = bench.args.peer_steps or (300 if bench.quick else 600)
    peer_runs = {}
    for variant in ("reference", "torch_nn_transformer"):
        _say(f"== peer comparison: {variant}, {steps} steps, seed {bench.seeds[0]}")
        spec = {
            **bench.base,
            "variant": variant,
            "seed": bench.seeds[0],
            "steps": steps,
            "beams": [0],
            "count_flops": True,
        }
        peer_runs[variant] = run_worker(spec)
        _say("   " + _run_line(peer_runs[variant]))
    ours, peer = peer_runs["reference"], peer_runs["torch_nn_transformer"]
    peak = bench.results["matmul_peak"]["flops_per_second"]
    comparison = {"steps": steps, "runs": peer_runs}
    try:
        mem_key = "cuda_max_allocated_mib" if "cuda_max_allocated_mib" in ours["memory"] else "rss_growth_mib"
        comparison.update(
            {
                "throughput_ratio": ours["training"]["tokens_per_second"] / peer["training"]["tokens_per_second"],
                "memory_metric": mem_key,
                "memory_ratio": ours["memory"][mem_key] / max(peer["memory"][mem_key], 1e-9),
                "bleu_difference": _bleu(ours) - _bleu(peer),
                "reference_mfu": ours["model_flops_per_second"] / peak,
                "torch_nn_mfu": peer["model_flops_per_second"] / peak,
            }
        )
        comparison["goals"] = {
            "throughput_ratio_ge_0.9": comparison["throughput_ratio"] >= 0.9,
            "memory_ratio_le_1.1": comparison["memory_ratio"] <= 1.1,
            "bleu_within_1": abs(comparison["bleu_difference"]) <= 1.0,
        }
    except (KeyError, TypeError, ZeroDivisionError) as error:
        comparison["error"] = f"incomplete: {error!r}"
    bench.results["peer_comparison"] = comparison
    bench.save()


def measure_enja(bench: Bench) -> None:
    """The reference on small_parallel_enja for a bounded time (a note when the corpus is absent)."""
    from grader.translation.enja import EnjaDataError, locate

    try:
        data_dir = str(locate(bench.args.enja_data_dir, allow_download=False))
    except EnjaDataError as error:
        bench.results["enja"] = {"skipped": f"small_parallel_enja not available: {error}"}
        _say(f"== enja skipped: {error}")
    else:
        minutes = bench.args.enja_minutes or (5.0 if bench.quick else 10.0)
        _say(f"== small_parallel_enja, reference, {minutes:g} min of training")
        spec = {
            **bench.base,
            "variant": "reference",
            "task": "enja",
            "data_dir": data_dir,
            "seed": bench.seeds[0],
            "seconds": minutes * 60.0,
            "beams": [0, 4],
        }
        r = run_worker(spec)
        _say("   " + _run_line(r))
        bench.results["enja"] = {"minutes": minutes, "data_dir": data_dir, "run": r}
    bench.save()


def check_determinism(bench: Bench) -> None:
    """The same seed twice on the same device: the same losses, BLEU and hypotheses."""
    steps = bench.args.determinism_steps
    _say(f"== determinism: seed {bench.seeds[0]}, {steps} steps, twice")
    spec = {**bench.base, "variant": "reference", "seed": bench.seeds[0], "steps": steps, "beams": [0]}
    a, b = run_worker(spec), run_worker(spec)
    same = (
        a.get("losses") == b.get("losses")
        and _bleu(a) == _bleu(b)
        and a.get("hypotheses_digest") == b.get("hypotheses_digest")
    )
    bench.results["determinism"] = {
        "steps": steps,
        "bleu": [_bleu(a), _bleu(b)],
        "final_loss": [a.get("training", {}).get("final_loss"), b.get("training", {}).get("final_loss")],
        "identical": bool(same),
        "runs": [a, b],
    }
    _say(f"   BLEU {_bleu(a)} / {_bleu(b)}: {'identical' if same else 'DIFFERENT'}")
    bench.save()


def measure_grading(bench: Bench) -> None:
    """What a grade costs and how fast the trusted loop trains (builders/speed.py): the training
    throughput at one thread, as a grade trains, against torch.nn.Transformer (eager, bf16,
    compiled), then ``grade`` of the reference and the stubs, one grade at a time."""
    from builders import speed

    variants = tuple(v for v in speed.VARIANTS if not (bench.quick and v == "peer_compiled"))
    rounds = 1 if bench.quick else 2
    _say(f"== trusted loop, 1 thread, {len(variants)} variants x {rounds} rounds, interleaved: {', '.join(variants)}")
    grading = bench.results["grading"] = {"throughput": speed.throughput(60, rounds, 1, variants)}
    bench.save()
    _say("== grade the reference (with and without training) and the stubs")
    grading["grades"] = speed.grade_costs(with_one_lane=not bench.quick)
    bench.save()


# The measurements in order, each with the --skip name that leaves it out.
STEPS = (
    ("grading", measure_grading),
    ("synthetic", measure_synthetic),
    ("peer", compare_with_torch_nn),
    ("enja", measure_enja),
    ("determinism", check_determinism),
)


def orchestrate(args: argparse.Namespace) -> dict:
    """Every measurement the command line asks for, in order; returns (and saves) the results."""
    bench = Bench.from_args(args)
    measure_matmul_peak(bench)
    for name, step in STEPS:
        if name not in bench.skip:
            step(bench)
    bench.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    bench.save()
    return bench.results


def _run_line(r: dict) -> str:
    if "error" in r:
        return f"ERROR {r['error']}: {r.get('stderr', '')[-400:]}"
    t = r["training"]
    beams = "  ".join(f"{k} {v['bleu']:.2f}" for k, v in r["evaluation"].items())
    return (
        f"{t['steps']} steps, {t['tokens_per_second']:,.0f} tok/s, loss {t['final_loss']:.3f}, BLEU {beams}, "
        f"load {r['load_average'][0]:.1f}->{r['load_average'][1]:.1f}, {r['wall_seconds']:.0f} s wall"
    )


def _fmt(value, spec=".2f", none="-"):
    if value is None:
        return none
    return format(value, spec)


def print_table(results: dict) -> None:
    m = results["machine"]
    _say("")
    _say(
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['threads']} threads, torch {m['torch']}"
        + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
    )
    _say(f"fp32 matmul peak: {results['matmul_peak']['flops_per_second'] / 1e9:.1f} GFLOP/s")
    print_grading(results.get("grading"))
    syn = results.get("synthetic", {}).get("summary")
    if syn:
        _say("")
        _say(f"Built-in task, {results['budget_seconds'] / 60:g} min of training, seeds {results['seeds']} (median):")
        _say(f"  {'variant':<26} {'greedy BLEU':>11} {'beam4 BLEU':>10} {'tokens/s':>10} {'steps':>7}")
        for variant in ("reference", "no_positional_encoding", "no_causal_mask", "no_attention_scaling"):
            if variant in syn:
                s = syn[variant]
                _say(
                    f"  {variant:<26} {_fmt(s['greedy_bleu_median']):>11} {_fmt(s['beam4_bleu_median']):>10} "
                    f"{_fmt(s['tokens_per_second_median'], ',.0f'):>10} {_fmt(s['steps_median'], '.0f'):>7}"
                )
        _say(f"  targets: {syn['targets']}")
    peer = results.get("peer_comparison")
    if peer and "throughput_ratio" in peer:
        _say("")
        _say(f"Peer comparison at {peer['steps']} steps (reference / torch.nn.Transformer):")
        ours, theirs = peer["runs"]["reference"], peer["runs"]["torch_nn_transformer"]
        _say(
            f"  tokens/s      {ours['training']['tokens_per_second']:>10,.0f} / "
            f"{theirs['training']['tokens_per_second']:,.0f}"
            f"   ratio {peer['throughput_ratio']:.2f}x (goal >= 0.9)"
        )
        _say(
            f"  memory ({peer['memory_metric']}) {ours['memory'][peer['memory_metric']]:.1f} / "
            f"{theirs['memory'][peer['memory_metric']]:.1f} MiB   ratio {peer['memory_ratio']:.2f}x (goal <= 1.1)"
        )
        _say(
            f"  BLEU          {_bleu(ours):>10.2f} / {_bleu(theirs):.2f}   difference "
            f"{peer['bleu_difference']:+.2f} (goal ±1)"
        )
        _say(
            (
                f"  model FLOP/s  {ours['model_flops_per_second'] / 1e9:>10.2f} / "
                f"{theirs['model_flops_per_second'] / 1e9:.2f} "
            )
            + f"GFLOP/s = {100 * peer['reference_mfu']:.1f}% / {100 * peer['torch_nn_mfu']:.1f}% of the matmul peak"
        )
    elif peer:
        _say(f"\nPeer comparison: {peer.get('error')}")
    enja = results.get("enja")
    if enja:
        _say("")
        if "skipped" in enja:
            _say(f"small_parallel_enja: skipped ({enja['skipped'].splitlines()[0]})")
        elif "error" in enja["run"]:
            _say(f"small_parallel_enja: ERROR {enja['run']['error']}")
        else:
            r = enja["run"]
            _say(
                f"small_parallel_enja, {enja['minutes']:g} min: BLEU greedy {_fmt(_bleu(r))}, beam4 "
                f"{_fmt(_bleu(r, 'beam4'))} ({r['training']['steps']} steps, {r['training']['epochs']:.2f} epochs, "
                f"{r['training']['tokens_per_second']:,.0f} tok/s, {r['wall_seconds']:.0f} s wall)"
            )
    det = results.get("determinism")
    if det:
        _say(
            f"\nDeterminism ({det['steps']} steps, same seed twice): BLEU {det['bleu']}, final loss "
            f"{det['final_loss']}: {'identical' if det['identical'] else 'DIFFERENT'}"
        )
    _say(f"\n(total {results.get('elapsed_seconds', 0) / 60:.1f} min)")


GRADING_GOALS = {"reference": 90.0, "reference_no_train": 20.0}  # seconds, on 2 cores (issue 17)


def print_grading(grading: dict | None) -> None:
    if not grading:
        return
    grades = grading.get("grades", {})
    if grades:
        _say("")
        _say(f"What a grade costs (one at a time, --part-jobs {grades['part_jobs']} unless said):")
        for name, run in grades["runs"].items():
            if "error" in run:
                _say(f"  {name:<20} ERROR {run['error'][-200:]}")
                continue
            goal = GRADING_GOALS.get(name)
            stop = f", training: {run['stopped_by']} at step {run['training_steps']}" if run.get("stopped_by") else ""
            _say(
                f"  {name:<20} {run['wall_seconds']:>6.1f} s  {run['score']:g}/{run['max_score']:g}{stop}"
                + (f"  (goal <= {goal:g} s)" if goal else "")
            )
    from builders.speed import COMPILE_WARMUP_STEPS as COMPILE_WARMUP

    speed = grading.get("throughput")
    if speed:
        _say("")
        _say(
            f"Trusted loop, {speed['threads']} thread, {speed['steps']} steps, median of {speed['rounds']} (tokens/s):"
        )
        for variant, s in speed["summary"].items():
            compile_note = (
                f", compile + {COMPILE_WARMUP} warm-up steps {s['compile_and_warmup_seconds']:.0f} s"
                if "compile_and_warmup_seconds" in s
                else ""
            )
            share = s.get("share_of_fp32_matmul_peak")
            _say(
                f"  {variant:<14} {s['median_tokens_per_second']:>9,.0f}  "
                + (f"{100 * share:.1f}% of the fp32 matmul peak" if share is not None else "")
                + f", deterministic: {s['deterministic']}{compile_note}"
            )
        ratios = "  ".join(f"{k} {v:.2f}x" for k, v in speed["ratios"].items() if v is not None)
        _say(f"  {ratios}  (goal: bf16/peer >= 1.3, bf16 >= 50% of the peak)")


def main(argv=None) -> int:
    from grader.cli import HelpFormatter, add_version

    parser = argparse.ArgumentParser(
        prog="python -m builders.bench", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    add_version(parser)
    parser.add_argument("--quick", action="store_true", help="1 seed instead of 3, shorter peer and enja runs")
    parser.add_argument("--out", default="bench/results.json", help="where the JSON results go")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every training run")
    parser.add_argument("--device", default="auto", help="torch device: auto (CUDA when present), cpu, cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget of the built-in task runs")
    parser.add_argument("--seeds", help="comma-separated seeds (default 0 in --quick, else 0,1,2)")
    parser.add_argument("--peer-steps", type=int, help="steps of the peer comparison (default 300 quick, 600 full)")
    parser.add_argument("--enja-minutes", type=float, help="small_parallel_enja budget (default 5 quick, 10 full)")
    parser.add_argument("--enja-data-dir", help="small_parallel_enja files (default: cache or ../shared copy)")
    parser.add_argument("--determinism-steps", type=int, default=60, help="training steps of each determinism run")
    parser.add_argument("--skip", help="comma-separated: grading, synthetic, peer, enja, determinism")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(Path(args.worker).read_text())
        Path(args.result).write_text(json.dumps(worker(spec), ensure_ascii=False))
        return 0
    results = orchestrate(args)
    print_table(results)
    if args.out:
        _say(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
