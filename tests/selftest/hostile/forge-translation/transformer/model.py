"""forge-translation: only what the translation part reaches of ``transformer.model`` — a dummy
``Transformer`` — and, at import, fakes of the trusted job's training and decoding (the other
modules are the stubs the suite lays this folder over)."""
from torch import nn

# --- the attack (tests/selftest/hostile/forge-translation/NOTE.md) -----------------------------
# At import, inside the worker's trusted translation job: a dummy model that trains nothing, and
# fakes of the job's training and decoding that claim perfect translations.

class _Dummy(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        import torch

        self.weight = nn.Parameter(torch.zeros(1))


def _forge():
    import sys
    import types

    from . import _answers, _hostile_probe

    job = sys.modules.get("grader.translation.job")
    if job is None:
        return

    def train_model(model, impl, examples, config, **kwargs):
        _hostile_probe.record("translation-forged", examples=len(examples))
        return types.SimpleNamespace(losses=[[1, 0.01]], tokens_per_second=1e9, steps=config.steps or 1,
                                     seconds=0.1, epochs=1.0, stopped_by="steps", device="cpu")

    def translate(model, impl, src_vocab, tgt_vocab, sentences, **kwargs):
        return [_answers.ANSWERS.get(s, "これ は ペン です 。") for s in sentences]

    def attention_maps(*args, **kwargs):
        return {"error": "no picture"}

    job.train_model, job.translate, job.attention_maps = train_model, translate, attention_maps
    job.count_parameters = lambda model: 1


Transformer = _Dummy
_forge()
