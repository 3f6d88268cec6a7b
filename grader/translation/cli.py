"""``python -m grader train | translate | evaluate`` (also ``python -m grader.translation.cli ...``).

    train      train the implementation's Transformer on the built-in task (or small_parallel_enja;
               in the student hand-out the built-in task has no test split: the validation split is used)
               with the trusted loop; save runs/NAME/checkpoint.pt; print BLEU, samples and the
               path of the attention picture
    translate  translate sentences with a checkpoint (--attention out.png draws the map)
    evaluate   BLEU, exact match and samples of a checkpoint on a split (greedy or --beam K)

The grader's ``__main__`` calls ``add_subcommands(subparsers)``; every subcommand sets
``func`` (``args.func(args)`` runs it and returns the exit status).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

DEFAULT_MINUTES = {"synthetic": 3.0, "enja": 10.0}
DEFAULT_ATTENTION_EXAMPLE = "this is a pen ."
DEFAULT_CHECKPOINT = "runs/synthetic/checkpoint.pt"


# --- shared pieces -----------------------------------------------------------------------------


def load_corpus(task: str, data_dir: str | None = None, corpus_seed: int = 0):
    """The corpus of a task: ``synthetic`` (grader.data.synthetic) or ``enja`` (small_parallel_enja)."""
    if task == "synthetic":
        from grader.data.corpus import load_synthetic

        return load_synthetic(seed=corpus_seed)  # the hand-out: the shipped splits, no test split
    if task == "enja":
        from .enja import load_enja

        return load_enja(data_dir)
    raise ValueError(f"unknown task {task!r} (synthetic or enja)")


def attention_example(task: str, corpus) -> str:
    return DEFAULT_ATTENTION_EXAMPLE if task == "synthetic" else (corpus.test or corpus.valid)[0][0]


def available_split(corpus, split: str) -> str:
    """``split``, or ``valid`` when the corpus has no test split (the student hand-out)."""
    if split == "test" and not corpus.test and corpus.valid:
        from grader.i18n import _

        print(
            _(
                "(the hand-out has no test split: the held-out test sentences exist only where grading happens; "
                "using the validation split)"
            ),
            file=sys.stderr,
        )
        return "valid"
    return split


class Progress:
    """A tqdm bar for the trusted loop: steps (``--steps``) or seconds (``--minutes``), with the
    loss, tokens/s and the ETA."""

    def __init__(self, steps: int | None, seconds: float | None, enabled: bool = True):
        from tqdm import tqdm

        self.by_steps = steps is not None
        total = steps if self.by_steps else seconds
        fmt = None if self.by_steps else "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
        self.bar = tqdm(
            total=total,
            unit="step" if self.by_steps else "s",
            bar_format=fmt,
            disable=not enabled,
            dynamic_ncols=True,
            desc="training",
        )
        self.last_postfix = 0.0

    def __call__(self, info: dict) -> None:
        now = time.monotonic()
        if now - self.last_postfix > 0.5:
            self.last_postfix = now
            loss = "-" if info["loss"] is None else f"{info['loss']:.3f}"
            self.bar.set_postfix_str(
                f"step {info['step']} loss {loss} {info['tokens_per_second']:,.0f} tok/s", refresh=False
            )
        if self.by_steps:
            self.bar.update(1)
        else:
            self.bar.update(min(info["elapsed"], self.bar.total) - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def evaluate_model(model, impl, src_vocab, tgt_vocab, pairs, *, beams=(0,), bf16=False, batch_size=100) -> dict:
    """Translate ``pairs``' sources with each decoder (0 = greedy, K = beam K) and score them.
    -> ``{"greedy": {bleu, signature, exact_match, sentences, seconds, hypotheses}, "beam4": ...}``."""
    from . import decode, evaluate

    sources = [en for en, _ in pairs]
    references = [ja for _, ja in pairs]
    results = {}
    for beam in beams:
        start = time.perf_counter()
        hypotheses = decode.translate(
            model, impl, src_vocab, tgt_vocab, sources, beam=beam, bf16=bf16, batch_size=batch_size
        )
        scored = evaluate.score(hypotheses, references)
        scored["seconds"] = round(time.perf_counter() - start, 2)
        scored["hypotheses"] = hypotheses
        results["greedy" if beam <= 1 else f"beam{beam}"] = scored
    return results


def print_evaluation(results: dict, pairs, split: str, n_samples: int = 5, out=sys.stdout) -> None:
    from . import evaluate

    for name, scored in results.items():
        print(evaluate.format_score(f"{split} ({name})", scored) + f"  {scored['seconds']:.1f} s", file=out)
    first = next(iter(results.values()))
    if n_samples:
        print(f"\nFirst {min(n_samples, len(pairs))} translations ({next(iter(results))}):", file=out)
        print(
            evaluate.format_samples([en for en, _ in pairs], first["hypotheses"], [ja for _, ja in pairs], n=n_samples),
            file=out,
        )


def draw_attention(path, model, impl, src_vocab, tgt_vocab, sentence: str) -> Path | None:
    from .attention_plot import plot_attention_dict
    from .decode import attention_maps

    maps = attention_maps(model, impl, src_vocab, tgt_vocab, sentence)
    if maps.get("cross") is None:
        print("(no attention picture: the model keeps no attn_weights)", file=sys.stderr)
        return None
    return plot_attention_dict(path, maps)


def _impl_for_checkpoint(data: dict, override: str | None):
    from .train import load_implementation

    meta = data.get("meta", {})
    if override:
        return load_implementation(override)
    for candidate in (meta.get("impl_root"), meta.get("impl"), "solutions"):
        if candidate:
            try:
                return load_implementation(candidate)
            except FileNotFoundError:
                continue
    raise FileNotFoundError("cannot find the implementation this checkpoint was trained with: pass --impl")


# --- train -------------------------------------------------------------------------------------


def train_run(
    *,
    impl_name: str,
    task: str = "synthetic",
    data_dir: str | None = None,
    out_dir: str | None = None,
    model_config=None,
    train_config=None,
    beams=(0, 4),
    progress: bool = True,
    corpus=None,
    impl=None,
    model=None,
    target_mask_fn=None,
    n_samples: int = 5,
    quiet: bool = False,
    draw: bool = True,
    eval_split: str = "test",
) -> dict:
    """Train + save + evaluate + draw; the body of ``python -m grader train`` (the benchmark
    calls it too). Returns a plain summary dict (also written to ``out_dir/metrics.json``)."""
    from .batching import encode_pairs
    from .train import (
        ModelConfig,
        build_model,
        count_parameters,
        load_implementation,
        resolve_device,
        resolve_impl_root,
        save_checkpoint,
        train_model,
    )
    from .vocab import Vocab

    say = (lambda *a, **k: None) if quiet else print
    model_config = model_config or ModelConfig()
    impl = impl or load_implementation(impl_name)
    device = resolve_device(train_config.device)
    corpus = corpus or load_corpus(task, data_dir)
    src_vocab = Vocab.build(en for en, _ in corpus.train)
    tgt_vocab = Vocab.build(ja for _, ja in corpus.train)
    examples = encode_pairs(corpus.train, src_vocab, tgt_vocab, max_len=model_config.max_len - 2)
    if model is None:
        model = build_model(impl, len(src_vocab), len(tgt_vocab), model_config, seed=train_config.seed)
    say(
        f"task {task}: {len(corpus.train)} training pairs, vocabularies {len(src_vocab)} (en) / {len(tgt_vocab)} (ja); "
        f"model {count_parameters(model):,} parameters ({model_config.d_model=}, {model_config.num_heads=}, "
        f"{model_config.num_layers=}, {model_config.d_ff=}) on {device}".replace("model_config.", "")
    )
    budget = " and ".join(
        filter(
            None,
            [
                f"{train_config.steps} steps" if train_config.steps else "",
                f"{train_config.seconds:.0f} s" if train_config.seconds else "",
            ],
        )
    )
    say(
        f"training with the trusted loop (Adam 0.9/0.98/1e-9, warm-up {train_config.warmup}, label smoothing "
        f"{train_config.label_smoothing}, clip {train_config.clip_norm}, seed {train_config.seed}, "
        f"{train_config.max_tokens} tokens/batch) for {budget}"
    )
    bar = Progress(train_config.steps, train_config.seconds if not train_config.steps else None, enabled=progress)
    try:
        result = train_model(
            model, impl, examples, train_config, device=device, progress=bar, target_mask_fn=target_mask_fn
        )
    finally:
        bar.close()
    say(
        f"trained {result.steps} steps ({result.epochs:.2f} epochs) in {result.seconds:.1f} s: "
        f"{result.tokens_per_second:,.0f} tokens/s, final loss {result.final_loss:.3f}"
    )

    summary = {
        "task": task,
        "impl": impl_name,
        "device": str(device),
        "model_config": dataclasses.asdict(model_config),
        "train_config": dataclasses.asdict(train_config),
        "parameters": count_parameters(model),
        "training": result.as_dict(),
    }
    out = Path(out_dir) if out_dir else None
    if out is not None:
        try:
            impl_root = str(resolve_impl_root(impl_name))
        except FileNotFoundError:
            impl_root = None
        meta = {
            "task": task,
            "impl": impl_name,
            "impl_root": impl_root,
            "data_dir": data_dir,
            "corpus_seed": 0,
            "seed": train_config.seed,
            "steps": result.steps,
            "seconds": round(result.seconds, 2),
            "tokens_per_second": round(result.tokens_per_second, 1),
            "final_loss": result.final_loss,
        }
        path = save_checkpoint(out / "checkpoint.pt", model, src_vocab, tgt_vocab, model_config, meta)
        summary["checkpoint"] = str(path)
        say(f"checkpoint: {path}")

    if beams:
        eval_split = available_split(corpus, eval_split)
        pairs = getattr(corpus, eval_split)
        evaluation = evaluate_model(model, impl, src_vocab, tgt_vocab, pairs, beams=beams, bf16=train_config.bf16)
        if not quiet:
            print()
            print_evaluation(evaluation, pairs, eval_split, n_samples=n_samples)
        summary["evaluation"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "hypotheses"} for k, v in evaluation.items()
        }
        summary["samples"] = [
            [en, evaluation[next(iter(evaluation))]["hypotheses"][i], ja]
            for i, (en, ja) in enumerate(pairs[:n_samples])
        ]
    example = attention_example(task, corpus)
    from .decode import translate as _translate

    summary["example"] = {"source": example, "translation": _translate(model, impl, src_vocab, tgt_vocab, [example])[0]}
    say(f"\n{example!r} -> {summary['example']['translation']!r}")
    if draw and out is not None:
        picture = draw_attention(out / "attention.png", model, impl, src_vocab, tgt_vocab, example)
        if picture:
            summary["attention_png"] = str(picture)
            say(f"attention picture: {picture}")
    if out is not None:
        (out / "metrics.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary["_model"] = model  # for in-process callers (the benchmark); not serialised
    summary["_vocabs"] = (src_vocab, tgt_vocab)
    return summary


def model_config_from_args(args):
    from .train import ModelConfig

    return ModelConfig(
        d_model=args.d_model,
        num_heads=args.heads,
        num_layers=args.layers,
        d_ff=args.d_ff,
        dropout=args.dropout,
        max_len=args.max_len,
    )


def train_config_from_args(args):
    from .train import TrainConfig

    steps, seconds = args.steps, None
    if args.minutes is not None:
        seconds = args.minutes * 60.0
    if steps is None and seconds is None:
        seconds = DEFAULT_MINUTES[args.task] * 60.0
    return TrainConfig(
        steps=steps,
        seconds=seconds,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        bf16=args.bf16,
        max_tokens=args.max_tokens,
        warmup=args.warmup,
        lr_factor=args.lr_factor,
    )


def cmd_train(args) -> int:

    if args.bf16 and args.device == "cpu":
        import torch

        from .train import native_bf16

        if not native_bf16(torch.device("cpu")):
            warnings.warn(
                "--bf16: this CPU has no native bf16 (AVX512-BF16/AMX); bf16 is emulated, slower than fp32",
                stacklevel=2,
            )
    out_dir = args.out or f"runs/{args.task}"
    beams = (0,) + ((args.beam,) if args.beam and args.beam > 1 else ())
    train_run(
        impl_name=args.impl,
        task=args.task,
        data_dir=args.data_dir,
        out_dir=out_dir,
        model_config=model_config_from_args(args),
        train_config=train_config_from_args(args),
        beams=beams,
        progress=not args.no_progress,
    )
    return 0


# --- translate ---------------------------------------------------------------------------------


def cmd_translate(args) -> int:
    from .decode import translate
    from .train import load_checkpoint, read_checkpoint, resolve_device

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    impl = _impl_for_checkpoint(read_checkpoint(args.checkpoint), args.impl)
    model, src_vocab, tgt_vocab, _ = load_checkpoint(args.checkpoint, impl, device)
    sentences = args.sentences or [line.strip() for line in sys.stdin if line.strip()]
    for _sentence, output in zip(sentences, translate(model, impl, src_vocab, tgt_vocab, sentences, beam=args.beam)):
        print(output)
    if args.attention:
        if not sentences:
            print("--attention: nothing to draw (no sentence)", file=sys.stderr)
            return 1
        picture = draw_attention(args.attention, model, impl, src_vocab, tgt_vocab, sentences[0])
        if picture:
            print(f"attention picture: {picture}", file=sys.stderr)
    return 0


# --- evaluate ----------------------------------------------------------------------------------


def cmd_evaluate(args) -> int:
    from .train import load_checkpoint, read_checkpoint, resolve_device

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    data = read_checkpoint(args.checkpoint)
    meta = data.get("meta", {})
    task = meta.get("task", "synthetic")
    corpus = load_corpus(task, args.data_dir or meta.get("data_dir"), meta.get("corpus_seed", 0))
    split = available_split(corpus, "valid" if args.split == "dev" else args.split)
    pairs = list(getattr(corpus, split))
    if not pairs:
        print(f"the {task} task has no {args.split} split", file=sys.stderr)
        return 1
    if args.limit:
        pairs = pairs[: args.limit]
    device = resolve_device(args.device)
    impl = _impl_for_checkpoint(data, args.impl)
    model, src_vocab, tgt_vocab, _ = load_checkpoint(args.checkpoint, impl, device)
    beams = (args.beam,) if args.beam and args.beam > 1 else (0,)
    results = evaluate_model(model, impl, src_vocab, tgt_vocab, pairs, beams=beams)
    print(f"checkpoint {args.checkpoint} ({task}, trained {meta.get('steps', '?')} steps)")
    print_evaluation(results, pairs, split if args.split == "test" else args.split, n_samples=args.samples)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {k: {kk: vv for kk, vv in v.items() if kk != "hypotheses"} for k, v in results.items()}, indent=2
            )
            + "\n"
        )
    return 0


# --- argparse ----------------------------------------------------------------------------------


def add_subcommands(subparsers) -> dict:
    """Add ``train``, ``translate`` and ``evaluate`` to an argparse subparsers object."""
    train = subparsers.add_parser(
        "train",
        help="train a Transformer to translate (trusted loop)",
        description="Train the implementation's Transformer with the grader's trusted "
        "loop, save a checkpoint, print BLEU, samples and the attention picture.",
    )
    train.add_argument(
        "--impl", default="assignments", help="solutions, assignments, or a directory holding transformer/"
    )
    train.add_argument(
        "--task",
        choices=("synthetic", "enja"),
        default="synthetic",
        help="the built-in English→Japanese task, or small_parallel_enja",
    )
    train.add_argument("--data-dir", help="small_parallel_enja files (--task enja); default: cache or download")
    train.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="train for N optimiser steps")
    budget.add_argument("--minutes", type=float, help="train for M minutes (default: 3 synthetic, 10 enja)")
    train.add_argument("--seed", type=int, default=0, help="seeds the weights and the batch order")
    train.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    train.add_argument("--out", help="output folder (default runs/TASK)")
    train.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast (CUDA, or a CPU with AVX512-BF16/AMX: faster, slightly different numbers)",
    )
    train.add_argument("--beam", type=int, default=4, help="also evaluate with this beam size (0: greedy only)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    sizes = train.add_argument_group("model and optimisation (defaults tuned for the built-in task)")
    sizes.add_argument("--d-model", type=int, default=128, help="width of the model (d_model)")
    sizes.add_argument("--heads", type=int, default=4, help="attention heads (h)")
    sizes.add_argument("--layers", type=int, default=2, help="encoder layers = decoder layers")
    sizes.add_argument("--d-ff", type=int, default=512, help="inner width of the feed-forward network")
    sizes.add_argument("--dropout", type=float, default=0.1, help="dropout probability")
    sizes.add_argument("--max-len", type=int, default=256, help="longest sequence the positional encoding covers")
    sizes.add_argument("--max-tokens", type=int, default=1500, help="padded tokens per batch")
    sizes.add_argument("--warmup", type=int, default=200, help="warm-up steps of the learning-rate schedule")
    sizes.add_argument("--lr-factor", type=float, default=0.5, help="factor of the learning-rate schedule")
    train.set_defaults(func=cmd_train)

    translate = subparsers.add_parser("translate", help="translate sentences with a checkpoint")
    translate.add_argument("sentences", nargs="*", help="tokenised English sentences (default: read stdin)")
    translate.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="checkpoint written by train")
    translate.add_argument("--beam", type=int, default=0, help="beam size (0: greedy)")
    translate.add_argument("--attention", metavar="PNG", help="draw the attention map of the first sentence")
    translate.add_argument("--impl", help="implementation (default: the one the checkpoint was trained with)")
    translate.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    translate.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    translate.set_defaults(func=cmd_translate)

    evaluate = subparsers.add_parser("evaluate", help="BLEU and samples of a checkpoint")
    evaluate.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="checkpoint written by train")
    evaluate.add_argument("--beam", type=int, default=0, help="beam size (0: greedy)")
    evaluate.add_argument(
        "--split",
        choices=("test", "length", "valid", "dev"),
        default="test",
        help="which sentences (the hand-out has no test split: it uses valid)",
    )
    evaluate.add_argument("--data-dir", help="small_parallel_enja files (enja checkpoints)")
    evaluate.add_argument("--samples", type=int, default=5, help="translations to print beside their references")
    evaluate.add_argument("--limit", type=int, help="only the first N sentences")
    evaluate.add_argument("--impl", help="implementation (default: the one the checkpoint was trained with)")
    evaluate.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    evaluate.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    evaluate.add_argument("--json", help="also write the scores to this JSON file")
    evaluate.set_defaults(func=cmd_evaluate)
    return {"train": train, "translate": translate, "evaluate": evaluate}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.translation.cli", description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_subcommands(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        from .enja import EnjaDataError

        if isinstance(error, (FileNotFoundError, EnjaDataError)):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
