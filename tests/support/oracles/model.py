"""Oracles for the encoder/decoder stacks and the whole Transformer (paper §3.1, Figure 1).

The reference is assembled from PyTorch built-ins, with weights copied from a state dict in
the contract's names:

    memory = nn.TransformerEncoder(positional(nn.Embedding(src) * sqrt(d)))   (no final norm)
    hidden = nn.TransformerDecoder(positional(nn.Embedding(tgt) * sqrt(d)), memory)
    logits = nn.Linear(hidden)

where ``positional`` adds the numpy table of ``oracles.embedding.sinusoid_table``. The same
object can also compute what the usual mistakes produce (layers not stacked, memory not
passed, no positional encoding, the source embedding used for the target, …) and a numpy
float64 composition of ``oracles.layers`` (used only by the self-tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from grader.i18n import _
from tests.support.oracles import embedding as emb_oracle
from tests.support.oracles import layers as layer_oracle


@dataclass(frozen=True)
class Config:
    src_vocab: int = 11
    tgt_vocab: int = 9
    d_model: int = 8
    num_heads: int = 2
    num_layers: int = 2
    d_ff: int = 16
    max_len: int = 24
    pad_id: int = 0

    def kwargs(self, dropout: float = 0.0) -> dict:
        """Keyword arguments of ``Transformer(...)``."""
        return dict(
            src_vocab_size=self.src_vocab,
            tgt_vocab_size=self.tgt_vocab,
            d_model=self.d_model,
            num_heads=self.num_heads,
            num_layers=self.num_layers,
            d_ff=self.d_ff,
            dropout=dropout,
            max_len=self.max_len,
            pad_id=self.pad_id,
        )


def encoder_state(num_layers: int, d_model: int, d_ff: int, seed: int, dtype=torch.float64) -> dict:
    """Contract state dict of an ``Encoder`` (keys ``layers.<i>.…``)."""
    state = {}
    for i in range(num_layers):
        state.update(
            layer_oracle.with_prefix(
                layer_oracle.encoder_layer_state(d_model, d_ff, seed + 7919 * i, dtype), f"layers.{i}."
            )
        )
    return state


def decoder_state(num_layers: int, d_model: int, d_ff: int, seed: int, dtype=torch.float64) -> dict:
    """Contract state dict of a ``Decoder`` (keys ``layers.<i>.…``)."""
    state = {}
    for i in range(num_layers):
        state.update(
            layer_oracle.with_prefix(
                layer_oracle.decoder_layer_state(d_model, d_ff, seed + 7919 * i, dtype), f"layers.{i}."
            )
        )
    return state


def transformer_state(cfg: Config, seed: int, dtype=torch.float64) -> dict:
    """Contract state dict of a ``Transformer`` with random weights (the pad rows of the
    embeddings are random too: the model must not depend on them)."""
    generator = torch.Generator().manual_seed(seed)
    d = cfg.d_model
    state = {
        "src_embed.embedding.weight": torch.randn(cfg.src_vocab, d, generator=generator, dtype=torch.float64)
        / math.sqrt(d),
        "tgt_embed.embedding.weight": torch.randn(cfg.tgt_vocab, d, generator=generator, dtype=torch.float64)
        / math.sqrt(d),
        "positional.pe": torch.from_numpy(emb_oracle.sinusoid_table(cfg.max_len, d)),
        "generator.weight": torch.randn(cfg.tgt_vocab, d, generator=generator, dtype=torch.float64) / math.sqrt(d),
        "generator.bias": torch.randn(cfg.tgt_vocab, generator=generator, dtype=torch.float64) * 0.1,
    }
    state.update(layer_oracle.with_prefix(encoder_state(cfg.num_layers, d, cfg.d_ff, seed + 1), "encoder."))
    state.update(layer_oracle.with_prefix(decoder_state(cfg.num_layers, d, cfg.d_ff, seed + 2), "decoder."))
    return {k: v.to(dtype) for k, v in state.items()}


def _stack_to_builtin(sd: dict, num_layers: int, convert) -> dict:
    out = {}
    for i in range(num_layers):
        layer = layer_oracle.strip_prefix(sd, f"layers.{i}.")
        out.update(layer_oracle.with_prefix(convert(layer), f"layers.{i}."))
    return out


def contract_to_builtin_encoder(sd: dict, num_layers: int) -> dict:
    """``Encoder`` state dict -> ``nn.TransformerEncoder`` state dict."""
    return _stack_to_builtin(sd, num_layers, layer_oracle.contract_to_builtin_encoder_layer)


def contract_to_builtin_decoder(sd: dict, num_layers: int) -> dict:
    """``Decoder`` state dict -> ``nn.TransformerDecoder`` state dict."""
    return _stack_to_builtin(sd, num_layers, layer_oracle.contract_to_builtin_decoder_layer)


def builtin_encoder(sd: dict, num_layers: int, d_model: int, num_heads: int, d_ff: int, dtype=torch.float64):
    layer = nn.TransformerEncoderLayer(
        d_model,
        num_heads,
        d_ff,
        dropout=0.0,
        activation="relu",
        batch_first=True,
        norm_first=False,
        layer_norm_eps=layer_oracle.EPS,
        dtype=dtype,
    )
    stack = nn.TransformerEncoder(layer, num_layers, norm=None, enable_nested_tensor=False)
    stack.load_state_dict(contract_to_builtin_encoder(sd, num_layers), strict=True)
    return stack.train()  # dropout is 0; training mode keeps PyTorch off its fused fast path


def builtin_decoder(sd: dict, num_layers: int, d_model: int, num_heads: int, d_ff: int, dtype=torch.float64):
    layer = nn.TransformerDecoderLayer(
        d_model,
        num_heads,
        d_ff,
        dropout=0.0,
        activation="relu",
        batch_first=True,
        norm_first=False,
        layer_norm_eps=layer_oracle.EPS,
        dtype=dtype,
    )
    stack = nn.TransformerDecoder(layer, num_layers, norm=None)
    stack.load_state_dict(contract_to_builtin_decoder(sd, num_layers), strict=True)
    return stack.train()


def run_builtin_encoder(stack, x, src_mask, *, only_layer=None):
    """The stack on ``x``; ``only_layer=i`` runs layer i alone on ``x`` (what a stack that
    feeds every layer the original input and keeps the last/first result returns)."""
    padding = layer_oracle.key_padding_for_builtin(src_mask)
    if only_layer is not None:
        return stack.layers[only_layer](x, src_key_padding_mask=padding)
    return stack(x, src_key_padding_mask=padding)


def run_builtin_decoder(stack, x, memory, src_mask, tgt_mask, num_heads, *, only_layer=None):
    kwargs = dict(
        tgt_mask=layer_oracle.attn_mask_for_builtin(tgt_mask, x.shape[0], num_heads),
        memory_key_padding_mask=layer_oracle.key_padding_for_builtin(src_mask),
    )
    if only_layer is not None:
        return stack.layers[only_layer](x, memory, **kwargs)
    return stack(x, memory, **kwargs)


STACK_BUGS = {
    "last_only": _(
        "the layers are not stacked: every layer gets the original input and only the last "
        "layer's output is returned (feed each layer the previous layer's output)"
    ),
    "first_only": _("only the first layer is applied: run all num_layers layers, one after the other"),
}

MODEL_BUGS = {
    "no_positional": _(
        "the positional encoding is not applied: add it after the token embeddings "
        "(on both the source and the target side)"
    ),
    "no_positional_src": _("the positional encoding is not applied to the source"),
    "no_positional_tgt": _("the positional encoding is not applied to the target"),
    "memory_is_embedding": _(
        "the decoder attends to the embedded source instead of the encoder output "
        "(memory = encoder(...) must be passed to the decoder)"
    ),
    "src_embed_for_tgt": _("the target tokens are embedded with src_embed: use tgt_embed for the decoder input"),
    "tgt_embed_for_src": _("the source tokens are embedded with tgt_embed: use src_embed for the encoder input"),
    "no_embedding_scale": _("the embeddings are not scaled by sqrt(d_model)"),
    # (written out: the stack's text starts with "the layers are not stacked" too)
    "encoder_last_only": _(
        "the encoder layers are not stacked: every layer gets the original input and only "
        "the last layer's output is returned (feed each layer the previous layer's output)"
    ),
    "decoder_last_only": _(
        "the decoder layers are not stacked: every layer gets the original input and only "
        "the last layer's output is returned (feed each layer the previous layer's output)"
    ),
    "encoder_first_only": _(
        "the encoder layers are not stacked: only the first layer is applied (run all "
        "num_layers layers, each on the previous layer's output)"
    ),
    "decoder_first_only": _(
        "the decoder layers are not stacked: only the first layer is applied (run all "
        "num_layers layers, each on the previous layer's output)"
    ),
    "no_generator": _(
        "the generator is not applied: forward must return generator(decoder output), "
        "logits of shape (B, T_tgt, tgt_vocab_size)"
    ),
    "softmax": _("the generator applies a softmax: forward must return raw logits (the loss applies it)"),
    "log_softmax": _("the generator applies log_softmax: forward must return raw logits"),
}


STACK_VARIANTS = ("encoder_last_only", "decoder_last_only", "encoder_first_only", "decoder_first_only")


class BuiltinTransformer:
    """The whole model from built-ins, with the contract state dict ``sd`` copied in."""

    def __init__(self, sd: dict, cfg: Config, dtype=torch.float64):
        self.cfg, self.dtype = cfg, dtype
        sd = {k: v.to(dtype) for k, v in sd.items()}
        self.src_embed = nn.Embedding(cfg.src_vocab, cfg.d_model, padding_idx=cfg.pad_id, dtype=dtype)
        self.src_embed.load_state_dict({"weight": sd["src_embed.embedding.weight"]})
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, cfg.d_model, padding_idx=cfg.pad_id, dtype=dtype)
        self.tgt_embed.load_state_dict({"weight": sd["tgt_embed.embedding.weight"]})
        self.pe = sd["positional.pe"]
        args = (cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.d_ff)
        self.encoder = builtin_encoder(layer_oracle.strip_prefix(sd, "encoder."), *args, dtype=dtype)
        self.decoder = builtin_decoder(layer_oracle.strip_prefix(sd, "decoder."), *args, dtype=dtype)
        self.generator = nn.Linear(cfg.d_model, cfg.tgt_vocab, dtype=dtype)
        self.generator.load_state_dict({"weight": sd["generator.weight"], "bias": sd["generator.bias"]})

    def _embed(self, table, tokens, positional=True, scale=True):
        x = table(tokens) * (math.sqrt(self.cfg.d_model) if scale else 1.0)
        return x + self.pe[: tokens.shape[1]] if positional else x

    def encode(self, src, src_mask, variant="correct"):
        table = self.tgt_embed if variant == "tgt_embed_for_src" else self.src_embed
        x = self._embed(
            table,
            src,
            positional=variant not in ("no_positional", "no_positional_src"),
            scale=variant != "no_embedding_scale",
        )
        last = {"encoder_last_only": self.cfg.num_layers - 1, "encoder_first_only": 0}.get(variant)
        return run_builtin_encoder(self.encoder, x, src_mask, only_layer=last)

    def decode(self, tgt, memory, src_mask, tgt_mask, variant="correct"):
        table = self.src_embed if variant == "src_embed_for_tgt" else self.tgt_embed
        x = self._embed(
            table,
            tgt,
            positional=variant not in ("no_positional", "no_positional_tgt"),
            scale=variant != "no_embedding_scale",
        )
        last = {"decoder_last_only": self.cfg.num_layers - 1, "decoder_first_only": 0}.get(variant)
        return run_builtin_decoder(self.decoder, x, memory, src_mask, tgt_mask, self.cfg.num_heads, only_layer=last)

    def forward(self, src, tgt, src_mask, tgt_mask, variant="correct"):
        if variant == "memory_is_embedding":
            memory = self._embed(self.src_embed, src)
        else:
            memory = self.encode(src, src_mask, variant)
        hidden = self.decode(tgt, memory, src_mask, tgt_mask, variant)
        if variant == "no_generator":
            return hidden
        logits = self.generator(hidden)
        if variant == "softmax":
            return logits.softmax(-1)
        if variant == "log_softmax":
            return logits.log_softmax(-1)
        return logits

    @torch.no_grad()
    def bug_outputs(self, src, tgt, src_mask, tgt_mask) -> dict:
        """``{student-words bug: logits}`` for ``likely_bugs``. Variants that cannot run for
        these inputs (a target token outside the source vocabulary) are left out, and so are the
        unstacked-layer variants of a one-layer model (they are the correct output there)."""
        out = {}
        for name, text in MODEL_BUGS.items():
            if self.cfg.num_layers == 1 and name in STACK_VARIANTS:
                continue
            if name == "src_embed_for_tgt" and int(tgt.max()) >= self.cfg.src_vocab:
                continue
            if name == "tgt_embed_for_src" and int(src.max()) >= self.cfg.tgt_vocab:
                continue
            out[text] = self.forward(src, tgt, src_mask, tgt_mask, name)
        return out


def numpy_transformer(sd: dict, cfg: Config, src, tgt, src_mask, tgt_mask) -> np.ndarray:
    """The whole model in numpy float64, from ``oracles.layers`` (for the self-tests)."""
    sd = {k: v.detach().double() for k, v in sd.items()}
    pe = sd["positional.pe"].numpy()
    x = emb_oracle.token_embedding(sd["src_embed.embedding.weight"], src) + pe[: src.shape[1]]
    for i in range(cfg.num_layers):
        layer = layer_oracle.strip_prefix(sd, f"encoder.layers.{i}.")
        x = layer_oracle.encoder_layer(layer, x, src_mask, cfg.num_heads)
    memory = x
    y = emb_oracle.token_embedding(sd["tgt_embed.embedding.weight"], tgt) + pe[: tgt.shape[1]]
    for i in range(cfg.num_layers):
        layer = layer_oracle.strip_prefix(sd, f"decoder.layers.{i}.")
        y = layer_oracle.decoder_layer(layer, y, memory, src_mask, tgt_mask, cfg.num_heads)
    return y @ sd["generator.weight"].numpy().T + sd["generator.bias"].numpy()
