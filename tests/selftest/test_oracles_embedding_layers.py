"""Self-tests of the oracles for the embedding, layers and model parts (no student code).

They show that the numpy float64 oracles and the PyTorch built-ins (with the state-dict
mappings of ``oracles.layers``/``oracles.model``) agree on random inputs, that the mappings
are inverse to each other, and that every known-bug variant really differs from the correct
output (otherwise a failure message could name the wrong bug).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.oracles import embedding as emb_oracle
from tests.support.oracles import layers as layer_oracle
from tests.support.oracles import model as model_oracle
from tests.support.strategies import int_tensor, key_padding_mask, model_dims, seeds, tensor


def causal(t):
    return torch.tril(torch.ones(t, t, dtype=torch.bool)).unsqueeze(0)


# ------------------------------------------------------------------ embedding


@given(max_len=st.integers(1, 40), d_model=st.integers(1, 17))
def test_sinusoid_table_matches_entrywise_formula(max_len, d_model):
    table = emb_oracle.sinusoid_table(max_len, d_model)
    np.testing.assert_allclose(table, emb_oracle.sinusoid_table_by_loop(max_len, d_model), rtol=1e-12, atol=1e-12)


def test_sinusoid_table_known_values():
    table = emb_oracle.sinusoid_table(3, 5)
    np.testing.assert_array_equal(table[0], [0, 1, 0, 1, 0])
    np.testing.assert_allclose(table[1, :2], [math.sin(1), math.cos(1)], rtol=1e-15)
    np.testing.assert_allclose(table[2, 4], math.sin(2 / 10000 ** (4 / 5)), rtol=1e-14)
    np.testing.assert_allclose(table[2, 3], math.cos(2 / 10000 ** (2 / 5)), rtol=1e-14)


@given(d_model=st.integers(2, 16), k=st.integers(1, 9))
def test_sinusoid_table_rotation_property(d_model, k):
    table = emb_oracle.sinusoid_table(30, d_model)
    w = emb_oracle.pair_frequencies(d_model)
    rotated = emb_oracle.rotate_pairs(table[: 30 - k], np.sin(k * w), np.cos(k * w))
    np.testing.assert_allclose(rotated, table[k:, : 2 * (d_model // 2)], atol=1e-12)


@given(d_model=st.integers(4, 16))
def test_sinusoid_bug_variants_differ_from_formula(d_model):
    correct = emb_oracle.sinusoid_table(20, d_model)
    for variant in emb_oracle.PE_BUGS:
        wrong = emb_oracle.sinusoid_table(20, d_model, variant)
        assert wrong.shape == correct.shape
        assert np.abs(wrong - correct).max() > 1e-3, variant


@given(seed=seeds, d_model=st.integers(1, 9))
def test_token_embedding_oracle_matches_functional_embedding(seed, d_model):
    weight = tensor((7, d_model), seed)
    tokens = int_tensor((2, 5), seed, 0, 7)
    expected = F.embedding(tokens, weight) * math.sqrt(d_model)
    np.testing.assert_allclose(emb_oracle.token_embedding(weight, tokens), expected.numpy(), rtol=1e-14)
    upstream = tensor((2, 5, d_model), seed + 1)
    w = weight.clone().requires_grad_(True)
    (F.embedding(tokens, w, padding_idx=3) * math.sqrt(d_model) * upstream).sum().backward()
    np.testing.assert_allclose(
        emb_oracle.token_embedding_grad(7, tokens, upstream, math.sqrt(d_model), padding_idx=3),
        w.grad.numpy(),
        rtol=1e-12,
        atol=1e-14,
    )


# ------------------------------------------------------------------ layers


def test_state_dict_mappings_are_inverse():
    enc = layer_oracle.encoder_layer_state(6, 10, seed=1)
    back = layer_oracle.builtin_to_contract_encoder_layer(layer_oracle.contract_to_builtin_encoder_layer(enc))
    assert back.keys() == enc.keys() and all(torch.equal(back[k], enc[k]) for k in enc)
    dec = layer_oracle.decoder_layer_state(6, 10, seed=2)
    back = layer_oracle.builtin_to_contract_decoder_layer(layer_oracle.contract_to_builtin_decoder_layer(dec))
    assert back.keys() == dec.keys() and all(torch.equal(back[k], dec[k]) for k in dec)
    # and they cover every parameter of the built-ins
    builtin = torch.nn.TransformerDecoderLayer(6, 2, 10, batch_first=True)
    assert set(builtin.state_dict()) == set(layer_oracle.contract_to_builtin_decoder_layer(dec))
    builtin = torch.nn.TransformerEncoderLayer(6, 2, 10, batch_first=True)
    assert set(builtin.state_dict()) == set(layer_oracle.contract_to_builtin_encoder_layer(enc))


@settings(max_examples=15)
@given(dims=model_dims(), batch=st.integers(1, 3), t=st.integers(1, 6), seed=seeds, norm_first=st.booleans())
def test_numpy_encoder_layer_matches_builtin(dims, batch, t, seed, norm_first):
    d_model, heads = dims
    sd = layer_oracle.encoder_layer_state(d_model, 2 * d_model + 1, seed)
    x = tensor((batch, t, d_model), seed + 1)
    mask = key_padding_mask(batch, t, seed + 2)
    builtin = layer_oracle.builtin_encoder_layer(sd, d_model, heads, 2 * d_model + 1, norm_first=norm_first)
    with torch.no_grad():
        expected = layer_oracle.run_builtin_encoder_layer(builtin, x, mask).numpy()
    variant = "pre_norm" if norm_first else "correct"
    np.testing.assert_allclose(
        layer_oracle.encoder_layer(sd, x, mask, heads, variant), expected, rtol=1e-10, atol=1e-11
    )


@settings(max_examples=15)
@given(
    dims=model_dims(),
    batch=st.integers(1, 3),
    t_src=st.integers(1, 6),
    t_tgt=st.integers(1, 6),
    seed=seeds,
    norm_first=st.booleans(),
    per_batch=st.booleans(),
)
def test_numpy_decoder_layer_matches_builtin(dims, batch, t_src, t_tgt, seed, norm_first, per_batch):
    d_model, heads = dims
    sd = layer_oracle.decoder_layer_state(d_model, 7, seed)
    x = tensor((batch, t_tgt, d_model), seed + 1)
    memory = tensor((batch, t_src, d_model), seed + 2)
    src_mask = key_padding_mask(batch, t_src, seed + 3)
    tgt_mask = causal(t_tgt)
    if per_batch:
        tgt_mask = tgt_mask & key_padding_mask(batch, t_tgt, seed + 4)
    builtin = layer_oracle.builtin_decoder_layer(sd, d_model, heads, 7, norm_first=norm_first)
    with torch.no_grad():
        expected = layer_oracle.run_builtin_decoder_layer(builtin, x, memory, src_mask, tgt_mask, heads).numpy()
    variant = "pre_norm" if norm_first else "correct"
    actual = layer_oracle.decoder_layer(sd, x, memory, src_mask, tgt_mask, heads, variant)
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-11)


def test_layer_bug_variants_differ_from_correct_output():
    d_model, heads, t = 8, 2, 5
    x = tensor((2, t, d_model), 3)
    memory = tensor((2, t, d_model), 4)
    src_mask = torch.tensor([[[True] * t], [[True] * 3 + [False] * 2]])
    tgt_mask = causal(t)
    enc = layer_oracle.encoder_layer_state(d_model, 12, 5)
    correct = layer_oracle.encoder_layer(enc, x, src_mask, heads)
    for name in layer_oracle.ENCODER_BUGS:
        assert np.abs(layer_oracle.encoder_layer(enc, x, src_mask, heads, name) - correct).max() > 1e-3, name
    dec = layer_oracle.decoder_layer_state(d_model, 12, 6)
    correct = layer_oracle.decoder_layer(dec, x, memory, src_mask, tgt_mask, heads)
    for name in layer_oracle.DECODER_BUGS:
        wrong = layer_oracle.decoder_layer(dec, x, memory, src_mask, tgt_mask, heads, name)
        assert np.abs(wrong - correct).max() > 1e-3, name


# ------------------------------------------------------------------ model


def _model_inputs(cfg, seed, batch=2, t_src=5, t_tgt=4):
    src = int_tensor((batch, t_src), seed, 1, cfg.src_vocab)
    tgt = int_tensor((batch, t_tgt), seed + 1, 1, cfg.tgt_vocab)
    src_mask = key_padding_mask(batch, t_src, seed + 2)
    src[~src_mask[:, 0, :]] = cfg.pad_id
    tgt_real = key_padding_mask(batch, t_tgt, seed + 3)
    tgt[~tgt_real[:, 0, :]] = cfg.pad_id
    return src, tgt, src_mask, tgt_real & causal(t_tgt)


@settings(max_examples=10)
@given(seed=seeds, layers=st.integers(1, 3))
def test_builtin_transformer_matches_numpy_composition(seed, layers):
    cfg = model_oracle.Config(num_layers=layers)
    sd = model_oracle.transformer_state(cfg, seed)
    src, tgt, src_mask, tgt_mask = _model_inputs(cfg, seed)
    with torch.no_grad():
        expected = model_oracle.BuiltinTransformer(sd, cfg).forward(src, tgt, src_mask, tgt_mask).numpy()
    actual = model_oracle.numpy_transformer(sd, cfg, src, tgt, src_mask, tgt_mask)
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10)


def test_builtin_stack_bug_variants_differ():
    cfg = model_oracle.Config(num_layers=3)
    sd = model_oracle.transformer_state(cfg, 11)
    src, tgt, src_mask, tgt_mask = _model_inputs(cfg, 11)
    oracle = model_oracle.BuiltinTransformer(sd, cfg)
    with torch.no_grad():
        correct = oracle.forward(src, tgt, src_mask, tgt_mask)
    src = src.clamp(max=cfg.tgt_vocab - 1)  # so that every variant can run
    bugs = oracle.bug_outputs(src, tgt, src_mask, tgt_mask)
    assert len(bugs) == len(model_oracle.MODEL_BUGS)
    with torch.no_grad():
        correct = oracle.forward(src, tgt, src_mask, tgt_mask)
    for text, wrong in bugs.items():
        assert wrong.shape != correct.shape or (wrong - correct).abs().max() > 1e-3, text
    enc_sd = model_oracle.encoder_state(3, 8, 16, 5)
    stack = model_oracle.builtin_encoder(enc_sd, 3, 8, 2, 16)
    x = tensor((2, 5, 8), 1)
    with torch.no_grad():
        full = model_oracle.run_builtin_encoder(stack, x, src_mask)
        for i in (0, 2):
            assert (model_oracle.run_builtin_encoder(stack, x, src_mask, only_layer=i) - full).abs().max() > 1e-3
