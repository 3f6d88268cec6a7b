"""Trusted decoding of a trained state dict (judge side; never imports student code).

The grading job trains the student's ``Transformer`` in the sandboxed worker and returns its
trained weights as plain tensors. Everything the worker sends is attacker-controlled, so the
BLEU that earns points is computed here from those weights alone: they are checked against the
contract (every key of ``transformer.model.Transformer``'s state dict, with its shape), loaded
into the model assembled from PyTorch built-ins that the tests already use as their oracle
(``tests.support.oracles.model.BuiltinTransformer``: post-norm ``nn.TransformerEncoder`` /
``nn.TransformerDecoder``, sinusoidal positions, a linear generator) and decoded with the
decoding tests' own reference greedy decoder (``tests.support.oracles.decoding``). A correct
model's weights fit exactly; weights that do not fit score 0 with the offending keys named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .vocab import PAD_ID, Vocab


class ContractMismatch(ValueError):
    """The returned weights do not fit the contract's state dict."""

    def __init__(self, report: StateReport):
        self.report = report
        super().__init__(report.describe())


@dataclass
class StateReport:
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: (got) ≠ (expected)"
    not_tensors: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not (self.missing or self.mismatched or self.not_tensors)

    def describe(self, limit: int = 12) -> str:
        from grader.i18n import _

        def cut(items):
            more = _(", … ({count} more)", count=len(items) - limit) if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(_("missing keys: {keys}", keys=cut(self.missing)))
        if self.mismatched:
            parts.append(_("wrong shapes: {keys}", keys=cut(self.mismatched)))
        if self.not_tensors:
            parts.append(_("not tensors: {keys}", keys=cut(self.not_tensors)))
        if self.extra:
            parts.append(_("extra keys (ignored): {keys}", keys=cut(self.extra)))
        return "; ".join(parts) or _("the state dict fits the contract")


def oracle_config(src_vocab_size: int, tgt_vocab_size: int, model_config):
    """The oracle's ``Config`` for a ``train.ModelConfig``."""
    from tests.support.oracles.model import Config

    return Config(
        src_vocab=src_vocab_size,
        tgt_vocab=tgt_vocab_size,
        d_model=model_config.d_model,
        num_heads=model_config.num_heads,
        num_layers=model_config.num_layers,
        d_ff=model_config.d_ff,
        max_len=model_config.max_len,
        pad_id=PAD_ID,
    )


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """``{contract key: shape}`` of a ``Transformer`` of these sizes (from the oracle's own
    contract state dict, the one the model tests load)."""
    from tests.support.oracles.model import transformer_state

    return {k: tuple(v.shape) for k, v in transformer_state(config, seed=0, dtype=torch.float32).items()}


def check_state(state, config) -> StateReport:
    """Compare a returned state dict with the contract's keys and shapes."""
    expected = expected_shapes(config)
    report = StateReport()
    if not isinstance(state, dict):
        report.missing = sorted(expected)
        return report
    for key in sorted(expected):
        if key not in state:
            report.missing.append(key)
        elif not isinstance(state[key], torch.Tensor):
            report.not_tensors.append(f"{key} ({type(state[key]).__name__})")
        elif tuple(state[key].shape) != expected[key]:
            report.mismatched.append(f"{key}: {tuple(state[key].shape)} ≠ {expected[key]}")
    report.extra = sorted(str(k) for k in state if k not in expected)
    return report


def trusted_model(state: dict, config, dtype=torch.float32):
    """The oracle model with ``state`` loaded; raises ``ContractMismatch`` if it does not fit."""
    from tests.support.oracles.model import BuiltinTransformer

    report = check_state(state, config)
    if not report.fits:
        raise ContractMismatch(report)
    expected = expected_shapes(config)
    weights = {k: state[k].detach().to("cpu", dtype) for k in expected}
    return BuiltinTransformer(weights, config, dtype=dtype), report


@torch.no_grad()
def translate(
    model, src_vocab: Vocab, tgt_vocab: Vocab, sentences: Sequence[str], *, batch_size: int = 250
) -> list[str]:
    """Translate tokenised sentences with the trusted model, greedily: the grader's batched
    decoder (``validation.greedy_translate``: finished rows leave the batch), which the
    validation looks and the judge's check of a stop use too; input order kept. It translates
    the reference's test split exactly as the decoding tests' row-by-row decoder does, about six
    times faster (docs/translation.md, "Grading to the threshold"). The student hand-out has no
    batched decoder (it would give ``decoding.greedy_decode`` away: builders/release.py), so
    there the judge decodes row by row (``translate_row_by_row``)."""
    try:
        from .validation import greedy_translate
    except ImportError:
        return translate_row_by_row(model, src_vocab, tgt_vocab, sentences)
    return greedy_translate(model, src_vocab, tgt_vocab, sentences, batch_size=batch_size, device="cpu")


def translate_row_by_row(
    model, src_vocab: Vocab, tgt_vocab: Vocab, sentences: Sequence[str], *, batch_size: int = 100
) -> list[str]:
    """Greedy translations with the decoding tests' own reference decoder
    (``tests.support.oracles.decoding.greedy_rows``: one row at a time, the whole prefix
    re-decoded under a causal mask, ``max_decode_len`` new tokens at most); input order kept."""
    from tests.support.oracles.decoding import greedy_rows

    from .batching import pad
    from .decode import max_decode_len
    from .vocab import BOS_ID, EOS_ID, PAD_ID

    encoded = [src_vocab.encode(s, eos=True) for s in sentences]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src = pad([encoded[i] for i in chunk])
        rows, _margin = greedy_rows(
            model, src, (src != PAD_ID).unsqueeze(1), max_decode_len(src.size(1)), BOS_ID, EOS_ID
        )
        for row, i in zip(rows, chunk):
            out[i] = tgt_vocab.decode(row)
    return out


def finite(state: dict) -> bool:
    """Whether every floating-point tensor of ``state`` is finite."""
    return all(
        bool(torch.isfinite(v).all()) for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()
    )
