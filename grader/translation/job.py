"""The grading hook that runs *inside* the grader's sandboxed worker, next to the student's
code: train the student's ``transformer.model.Transformer`` with the trusted loop, translate
the test sources, and read one attention map. Plain data in, plain data out.

Imports: the standard library, torch, and ``grader.translation`` (worker-safe modules only);
the student's package is imported as ``transformer`` (already importable in the worker).
Scoring (sacrebleu) and drawing (matplotlib) happen in the judge (``grading.py``). While it
trains, it writes a progress line to stderr every few seconds (``progress.py``), which the judge
shows while it waits (display only). Nothing
this returns is trusted: once the student's package is imported, this module and its callees
can be replaced. The points come from the judge's own decode of ``state_dict``; the
``hypotheses`` are only compared with it.

``run(job)`` takes::

    {"train": [[english, japanese], ...],   # tokenised training pairs
     "sources": [english, ...],              # test sources (no references)
     "seed": 0,
     "steps": 900, "seconds": 170,           # budget: steps and/or a wall-clock cap
     "threads": 2,                           # torch.set_num_threads (None: leave it)
     "model": {"d_model": 128, ...},         # ModelConfig fields; missing ones: defaults
     "attention_example": "this is a pen .",
     "progress": True,                       # optional: progress lines on stderr (progress.py)
     # optional: "training": {TrainConfig fields: max_tokens, warmup, lr_factor, bf16, ...},
     #           "beam": 0 (greedy) or a beam size, "device": "auto" | "cpu" | "cuda",
     #           "validation": {"pairs": [[english, japanese], ...], "target": 85.0, "every": 25,
     #                          "first": 100, "gate": 0.9}: stop once the greedy BLEU on these pairs
     #                          (the validation split, never the test split) reaches target; greedy
     #                          only once the teacher-forced token accuracy reaches gate (validation.py)
     }

and returns::

    {"hypotheses": [japanese, ...],          # one per source, in order (the student's decoder)
     "state_dict": {key: tensor, ...},       # the trained weights, plain CPU tensors: the judge
                                             # decodes them itself (grader/translation/trusted.py)
     "losses": [[step, loss], ...],
     "tokens_per_second": float,
     "attention": {"source": [...], "target": [...],
                   "cross": (h, T_tgt, T_src) nested lists, "encoder": (h, T_src, T_src) | None},
     "steps": int, "seconds": float, "epochs": float, "stopped_by": "steps" | "time" | "validation",
     "parameters": int, "device": str, "bf16": bool, "decode_seconds": float,
     "validation": {"target", "every", "first", "gate", "history": [[step, accuracy, BLEU | None], ...],
                    "seconds", "error", "sentences"} | None}
"""

from __future__ import annotations

import time

from grader.contract import MODEL_SIZES

from .batching import encode_pairs
from .decode import attention_maps, translate
from .progress import StderrProgress
from .train import ImportedImplementation, ModelConfig, TrainConfig, build_model, count_parameters, train_model
from .vocab import Vocab

TRAINING_KEYS = ("max_tokens", "warmup", "lr_factor", "log_every", "bf16", "deterministic")


def run(job: dict) -> dict:
    pairs = [(str(en), str(ja)) for en, ja in job["train"]]
    sources = [str(s) for s in job.get("sources", [])]
    seed = int(job.get("seed", 0))
    steps = job.get("steps")
    seconds = job.get("seconds")
    model_config = ModelConfig.from_dict({**MODEL_SIZES, **dict(job.get("model") or {})})
    overrides = {k: v for k, v in dict(job.get("training") or {}).items() if k in TRAINING_KEYS}
    config = TrainConfig(
        steps=None if steps is None else int(steps),
        seconds=None if seconds is None else float(seconds),
        seed=seed,
        threads=job.get("threads"),
        device=str(job.get("device", "auto")),
        **overrides,
    )

    impl = ImportedImplementation("transformer")
    src_vocab = Vocab.build(en for en, _ in pairs)
    tgt_vocab = Vocab.build(ja for _, ja in pairs)
    examples = encode_pairs(pairs, src_vocab, tgt_vocab)
    model = build_model(impl, len(src_vocab), len(tgt_vocab), model_config, seed=seed)
    validation = None
    if job.get("validation"):
        spec = dict(job["validation"])
        from .validation import Validation  # grading to the threshold only: not in the student hand-out

        validation = Validation(
            [(str(en), str(ja)) for en, ja in spec["pairs"]],
            src_vocab,
            tgt_vocab,
            target=float(spec["target"]),
            every=int(spec.get("every", 50)),
            first=spec.get("first"),
            gate=float(spec.get("gate", 0.0)),
        )
    # Progress lines on stderr for the judge's display only (progress.py); never scored.
    progress = StderrProgress() if job.get("progress") else None
    result = train_model(model, impl, examples, config, progress=progress, validation=validation)
    if progress is not None:
        progress.decoding(result.steps, result.seconds)
    bf16 = bool(getattr(result, "bf16", False))

    start = time.perf_counter()
    hypotheses = translate(model, impl, src_vocab, tgt_vocab, sources, beam=int(job.get("beam", 0) or 0), bf16=bf16)
    decode_seconds = time.perf_counter() - start

    attention = None
    example = job.get("attention_example")
    if example:
        try:
            attention = attention_maps(model, impl, src_vocab, tgt_vocab, str(example))
        except Exception as error:  # a picture is a bonus; never lose the grade over it
            attention = {"error": f"{type(error).__name__}: {error}"}

    state_dict = {str(k): v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    return {
        "hypotheses": hypotheses,
        "state_dict": state_dict,
        "losses": result.losses,
        "tokens_per_second": result.tokens_per_second,
        "attention": attention,
        "steps": result.steps,
        "seconds": result.seconds,
        "epochs": result.epochs,
        "stopped_by": result.stopped_by,
        "parameters": count_parameters(model),
        "device": result.device,
        "bf16": bf16,
        "decode_seconds": decode_seconds,
        "validation": None if validation is None else validation.as_dict(),
    }
