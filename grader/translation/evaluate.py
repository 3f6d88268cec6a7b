"""Scoring translations: corpus BLEU with sacrebleu and exact-match accuracy (judge side).

The corpora are already tokenised (spaces between tokens on both sides), so BLEU is
computed on the tokens as they are: ``tokenize="none"`` — the equivalent of
``sacrebleu.corpus_bleu(hyps, [refs], tokenize="none")`` — and its signature is reported
with every score so that numbers stay comparable.
"""

from __future__ import annotations

from collections.abc import Sequence


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """-> ``(corpus BLEU in 0..100, sacrebleu signature)``."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    metric = BLEU(tokenize="none")
    result = metric.corpus_score([h.strip() for h in hypotheses], [[r.strip() for r in references]])
    return float(result.score), str(metric.get_signature())


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share of sentences translated token for token right (0..1)."""
    if not references:
        return 0.0
    return sum(h.split() == r.split() for h, r in zip(hypotheses, references)) / len(references)


def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    value, signature = bleu(hypotheses, references)
    return {
        "bleu": round(value, 2),
        "signature": signature,
        "exact_match": round(exact_match(hypotheses, references), 4),
        "sentences": len(references),
    }


def format_samples(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str], n: int = 5) -> str:
    """The first ``n`` translations beside their references (``=`` exact, ``≠`` not)."""
    lines = []
    for src, hyp, ref in list(zip(sources, hypotheses, references))[:n]:
        mark = "=" if hyp.split() == ref.split() else "≠"
        lines += [f"  src: {src}", f"  out: {hyp}", f"  ref: {ref}   [{mark}]", ""]
    return "\n".join(lines).rstrip()


def format_score(name: str, result: dict) -> str:
    return (
        f"{name}: BLEU {result['bleu']:.2f}  exact match {100 * result['exact_match']:.1f}% "
        f"({result['sentences']} sentences)  [{result['signature']}]"
    )
