"""The trusted training loop and model build used by ``python -m grader train``, the
benchmark and the grading job.

Only the *model* and the *mask functions* come from the implementation under test (its
``transformer.model.Transformer`` and ``transformer.masks.padding_mask/target_mask``); the
loop, the loss, the learning-rate schedule and the optimiser are this file's own, so that a
bug in the student's ``training.py`` costs only the training part of the grade:

* Adam with β = (0.9, 0.98), ε = 1e-9 (paper §5.3), torch's fused kernel where the device has one;
* the warm-up schedule ``lr = factor · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)``
  (written out here — the student's ``noam_lr`` is not used);
* label smoothing 0.1 via ``F.cross_entropy(label_smoothing=0.1, ignore_index=pad)``;
* gradient clipping at norm 1.0; fixed seeds; ``torch.set_num_threads``.

Worker-safe: imports only the standard library, torch and ``grader.translation``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from grader.contract import MODEL_SIZES, find_package_root

from .batching import Example, epochs
from .vocab import PAD_ID, Vocab

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_FORMAT = "transformer-assignment/translation-v1"


# --- configuration ------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """The sizes of the model (a small Transformer: trains in minutes on two CPU cores)."""

    d_model: int = MODEL_SIZES["d_model"]
    num_heads: int = MODEL_SIZES["num_heads"]
    num_layers: int = MODEL_SIZES["num_layers"]
    d_ff: int = MODEL_SIZES["d_ff"]
    dropout: float = MODEL_SIZES["dropout"]
    max_len: int = 256

    @classmethod
    def from_dict(cls, values: dict | None) -> ModelConfig:
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)} (known: {sorted(known)})")
        return cls(**values)


@dataclass
class TrainConfig:
    """How to train. Training stops after ``steps`` optimiser steps or ``seconds`` of wall
    time, whichever comes first (at least one of them must be set)."""

    steps: int | None = None
    seconds: float | None = None
    seed: int = 0
    max_tokens: int = 1500  # padded tokens per batch (per side)
    warmup: int = 200
    lr_factor: float = 0.5  # peak lr = 0.5 * 128^-0.5 * 200^-0.5 = 3.1e-3 at step 200
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    log_every: int = 10
    threads: int | None = None  # torch.set_num_threads; None: leave torch's default
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool | str = False  # bf16 autocast: True, False or "auto" (where bf16 is native: native_bf16)
    deterministic: bool = True  # torch.use_deterministic_algorithms(True, warn_only=True)

    def __post_init__(self):
        if self.steps is None and self.seconds is None:
            raise ValueError("give a training budget: steps, seconds or both")
        self.betas = tuple(self.betas)


def adam(parameters, config: TrainConfig) -> torch.optim.Adam:
    """The paper's Adam (``lr`` is set every step by ``noam``): fused (one kernel updates every
    parameter; 3% more tokens/s on one CPU thread, docs/translation.md) where torch has the
    fused kernel for the parameters' device, the per-parameter update elsewhere."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=0.0, betas=config.betas, eps=config.eps, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel here
        return torch.optim.Adam(parameters, lr=0.0, betas=config.betas, eps=config.eps)


def noam(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """The trusted warm-up schedule (paper §5.3, equation 3); ``step`` counts from 1."""
    step = max(step, 1)
    # Spelled apart from the student's noam_lr (the hand-out's leak check compares lines); the
    # same operations in the same order, so the same floats.
    scale = factor * d_model**-0.5
    return scale * min(step**-0.5, step * warmup**-1.5)


# --- the implementation under test -----------------------------------------------------------


class ImportedImplementation:
    """The ``transformer`` package that is already importable (inside the grader's worker):
    ``impl.model``, ``impl.masks``, ``impl.decoding`` … are imported on first use."""

    def __init__(self, package: str = "transformer"):
        self.package = package
        self.root = None
        module = importlib.import_module(package)
        if getattr(module, "__file__", None):
            self.root = Path(module.__file__).resolve().parent.parent

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        module = importlib.import_module(f"{self.package}.{name}")
        setattr(self, name, module)
        return module


def resolve_impl_root(value: str | os.PathLike) -> Path:
    """``assignments`` / ``solutions`` name the repository's packages; anything else is a
    directory holding ``transformer/`` (or one folder above such a directory)."""
    value = str(value)
    path = ROOT / value if value in ("assignments", "solutions") else Path(value).expanduser().resolve()
    root = find_package_root(path)
    if root is not None:
        return root
    raise FileNotFoundError(f"--impl {value}: no transformer/__init__.py in {path} (or one folder below it)")


def load_implementation(value: str | os.PathLike):
    """The implementation under test, imported into this process the way the test suite does
    it (``tests.support.implementation.InProcessImplementation``). Judge side only."""
    from tests.support.implementation import InProcessImplementation  # not in the worker path

    return InProcessImplementation(resolve_impl_root(value))


# --- devices, seeds --------------------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    return device


def setup_torch(seed: int, threads: int | None = None, deterministic: bool = True) -> None:
    """Seeds, thread count and deterministic algorithms, set before anything random runs."""
    if threads:
        torch.set_num_threads(int(threads))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def native_bf16(device: torch.device) -> bool:
    """Whether this device multiplies bf16 matrices in hardware: a CUDA device with bf16, or a
    CPU with AVX512-BF16 or AMX-BF16 (read from /proc/cpuinfo; elsewhere: no). Without it CPU
    autocast still works but emulates bf16, slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_bf16(value, device: torch.device) -> bool:
    """``TrainConfig.bf16`` for this device: "auto" is ``native_bf16(device)``."""
    return native_bf16(device) if value == "auto" else bool(value)


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast (matrix products in bf16, on CUDA or the CPU) when asked for; a no-op
    context otherwise (same code path)."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=bool(bf16) and device.type in ("cuda", "cpu")
    )


# --- model -----------------------------------------------------------------------------------


def build_model(impl, src_vocab_size: int, tgt_vocab_size: int, config: ModelConfig, seed: int = 0):
    """The implementation's ``Transformer`` with the given sizes, initialised under ``seed``."""
    torch.manual_seed(seed)
    return impl.model.Transformer(
        src_vocab_size,
        tgt_vocab_size,
        d_model=config.d_model,
        num_heads=config.num_heads,
        num_layers=config.num_layers,
        d_ff=config.d_ff,
        dropout=config.dropout,
        max_len=config.max_len,
        pad_id=PAD_ID,
    )


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --- training --------------------------------------------------------------------------------


@dataclass
class TrainResult:
    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time (all threads) while training
    src_tokens: int = 0
    tgt_tokens: int = 0
    losses: list = field(default_factory=list)  # [[step, mean loss since the last entry], ...]
    stopped_by: str = ""  # "steps" | "time" | "validation"
    device: str = "cpu"
    bf16: bool = False  # whether the forward pass ran under bf16 autocast

    @property
    def tokens(self) -> int:
        return self.src_tokens + self.tgt_tokens

    @property
    def tokens_per_second(self) -> float:
        """Source + target tokens (padding not counted) per second of training."""
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def final_loss(self) -> float:
        return self.losses[-1][1] if self.losses else float("nan")

    def as_dict(self) -> dict:
        return {
            "steps": self.steps,
            "epochs": round(self.epochs, 3),
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "src_tokens": self.src_tokens,
            "tgt_tokens": self.tgt_tokens,
            "tokens_per_second": round(self.tokens_per_second, 1),
            "losses": self.losses,
            "final_loss": self.final_loss,
            "stopped_by": self.stopped_by,
            "device": self.device,
            "bf16": self.bf16,
        }


def train_model(
    model,
    impl,
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    device: torch.device | None = None,
    target_mask_fn: Callable | None = None,
    progress: Callable[[dict], None] | None = None,
    validation=None,
) -> TrainResult:
    """Train ``model`` in place on ``examples`` (see ``batching``) with the trusted loop.

    ``target_mask_fn(tgt_in)`` overrides the decoder mask (default: the implementation's
    ``masks.target_mask(tgt_in, pad)``); the benchmark's "no causal mask" ablation uses it.
    ``progress(info)`` is called after every step with ``step``, ``loss`` (the last logged
    mean, or None), ``tokens_per_second``, ``elapsed``, ``lr``.
    ``validation`` (a ``validation.Validation``): stop early once its BLEU reaches its target
    (``stopped_by`` "validation"); its checks count as training time.
    """
    device = device or resolve_device(config.device)
    setup_torch(config.seed, config.threads, config.deterministic)
    model.to(device)
    model.train()
    d_model = _d_model_of(model)
    optimizer = adam(model.parameters(), config)
    if target_mask_fn is None:

        def target_mask_fn(tgt_in):
            return impl.masks.target_mask(tgt_in, PAD_ID)

    bf16 = resolve_bf16(config.bf16, device)
    result = TrainResult(device=str(device), bf16=bf16)
    running = torch.zeros((), device=device)
    running_n = 0
    last_loss = None
    cpu_start = time.process_time()
    start = time.perf_counter()
    for epochs_done, batch in epochs(examples, config.max_tokens, seed=config.seed):
        step = result.steps + 1
        lr = noam(step, d_model, config.warmup, config.lr_factor)
        for group in optimizer.param_groups:
            group["lr"] = lr

        batch = batch.to(device)
        src_mask = impl.masks.padding_mask(batch.src, PAD_ID)
        tgt_mask = target_mask_fn(batch.tgt_in)
        with autocast(device, bf16):
            logits = model(batch.src, batch.tgt_in, src_mask, tgt_mask)
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)),
            batch.tgt_out.reshape(-1),
            ignore_index=PAD_ID,
            label_smoothing=config.label_smoothing,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()

        result.steps = step
        result.epochs = epochs_done
        result.src_tokens += batch.n_src_tokens
        result.tgt_tokens += batch.n_tgt_tokens
        running += loss.detach()
        running_n += 1
        if step % config.log_every == 0:
            last_loss = float(running) / running_n
            result.losses.append([step, round(last_loss, 5)])
            running.zero_()
            running_n = 0
        elapsed = time.perf_counter() - start
        if progress is not None:
            progress(
                {
                    "step": step,
                    "loss": last_loss,
                    "lr": lr,
                    "elapsed": elapsed,
                    "tokens_per_second": result.tokens / elapsed if elapsed > 0 else 0.0,
                }
            )
        if config.steps is not None and step >= config.steps:
            result.stopped_by = "steps"
            break
        if config.seconds is not None and elapsed >= config.seconds:
            result.stopped_by = "time"
            break
        if validation is not None and validation.due(step) and validation.reached(model, step):
            result.stopped_by = "validation"
            break
    if running_n:
        result.losses.append([result.steps, round(float(running) / running_n, 5)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu_start
    model.eval()
    return result


def _d_model_of(model) -> int:
    """d_model for the schedule: the width of the source embedding."""
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            return module.embedding_dim
    raise ValueError("the model has no nn.Embedding to read d_model from")


# --- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    model,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    model_config: ModelConfig,
    meta: dict | None = None,
) -> Path:
    """Model state dict + vocabularies + config, all plain data (``weights_only`` loadable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "model": state,
            "src_vocab": src_vocab.to_list(),
            "tgt_vocab": tgt_vocab.to_list(),
            "model_config": dataclasses.asdict(model_config),
            "meta": dict(meta or {}),
        },
        path,
    )
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (train one first: python -m grader train ...)")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a translation checkpoint of this grader")
    return data


def load_checkpoint(path: str | os.PathLike, impl, device: torch.device | str = "cpu"):
    """-> ``(model, src_vocab, tgt_vocab, data)``: the model rebuilt with ``impl`` from the saved
    config, weights loaded, in eval mode on ``device``."""
    data = read_checkpoint(path)
    src_vocab, tgt_vocab = Vocab.from_list(data["src_vocab"]), Vocab.from_list(data["tgt_vocab"])
    config = ModelConfig.from_dict(data["model_config"])
    model = build_model(impl, len(src_vocab), len(tgt_vocab), config)
    model.load_state_dict(data["model"])
    model.to(torch.device(device) if isinstance(device, str) else device)
    model.eval()
    return model, src_vocab, tgt_vocab, data
