"""Realistic student bugs, each a one-place edit of the reference solution.

A mutant is applied to a copy of ``solutions/transformer``: ``find`` must occur exactly once
in ``module`` (so we know the edit landed) and is replaced by ``replace``. We know each
mutant changes behaviour because the suite kills it: a mutant that keeps full marks fails
``tests/selftest/test_mutants.py``; the rare edit that is behaviour-preserving by accident
would show up there and be removed from this list.

``hint`` is a word or phrase that the *diagnosis* in the first feedback line should contain
when the suite recognises the bug (case-insensitive): the text after "likely bug", or else the
headline after the last ": " ("wrong shape."), never the description of the input, which
often names the function ("scaled_dot_product_attention" contains "scal"). It measures the
hint rate.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    id: str
    module: str  # file name in transformer/, without .py; also the part that owns the bug
    description: str
    find: str
    replace: str
    hint: str
    part: str = ""

    @property
    def owner(self) -> str:
        return self.part or self.module


M = Mutant
MUTANTS: tuple[Mutant, ...] = (
    # --- masks -----------------------------------------------------------------------------
    M("mask-padding-inverted", "masks", "padding mask True on the padding",
      "return (tokens != pad_id).unsqueeze(1)", "return (tokens == pad_id).unsqueeze(1)", "inverted"),
    M("mask-padding-no-query-axis", "masks", "padding mask of shape (B, T, 1) instead of (B, 1, T)",
      "return (tokens != pad_id).unsqueeze(1)", "return (tokens != pad_id).unsqueeze(2)", "shape"),
    M("mask-causal-transposed", "masks", "causal mask with triu: sees the future",
      "torch.tril(torch.ones(size, size, dtype=torch.bool, device=device))",
      "torch.triu(torch.ones(size, size, dtype=torch.bool, device=device))", "transposed"),
    M("mask-causal-off-by-one", "masks", "causal mask lets position i see i+1",
      "torch.tril(torch.ones(size, size, dtype=torch.bool, device=device))",
      "torch.tril(torch.ones(size, size, dtype=torch.bool, device=device), diagonal=1)", "off by one"),
    M("mask-causal-no-diagonal", "masks", "causal mask hides the position itself",
      "torch.tril(torch.ones(size, size, dtype=torch.bool, device=device))",
      "torch.tril(torch.ones(size, size, dtype=torch.bool, device=device), diagonal=-1)", "diagonal"),
    M("mask-target-or", "masks", "target mask combines padding and causal with |",
      "return padding_mask(tokens, pad_id) & causal_mask", "return padding_mask(tokens, pad_id) | causal_mask",
      "instead of &"),
    # --- attention ---------------------------------------------------------------------------
    M("sdpa-no-scaling", "attention", "scores not divided by sqrt(d_k)",
      "scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)", "scores = query @ key.transpose(-2, -1)",
      "scal"),
    M("sdpa-scale-by-dk", "attention", "scores divided by d_k instead of sqrt(d_k)",
      "scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)", "scores = query @ key.transpose(-2, -1) / d_k",
      "d_k instead of sqrt(d_k)"),
    M("sdpa-softmax-wrong-axis", "attention", "softmax over the query axis",
      "weights = scores.softmax(dim=-1)", "weights = scores.softmax(dim=-2)", "axis"),
    M("sdpa-mask-after-softmax", "attention", "masked weights zeroed after the softmax",
      "        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)\n    weights = scores.softmax(dim=-1)",
      "        pass\n    weights = scores.softmax(dim=-1)\n    if mask is not None:\n        weights = weights.masked_fill(~mask, 0.0)",
      "after the softmax"),
    M("sdpa-mask-inverted", "attention", "mask used with the opposite convention",
      "scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)",
      "scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)", "invert"),
    M("sdpa-mask-ignored", "attention", "mask argument ignored",
      "    if mask is not None:\n        # The most", "    if False:\n        # The most", "mask"),
    M("sdpa-dropout-on-output", "attention", "dropout on the output instead of the weights",
      "    if dropout is not None:\n        weights = dropout(weights)\n    return weights @ value, weights",
      "    output = weights @ value\n    if dropout is not None:\n        output = dropout(output)\n    return output, weights",
      "dropout"),
    M("sdpa-transpose-wrong-axes", "attention", "key transposed with hard-coded axes (1, 2)",
      "scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)",
      "scores = query @ key.transpose(1, 2) / math.sqrt(d_k)", "axis"),
    M("mha-split-without-transpose", "attention", "heads split with a view straight to (B, h, T, d_k)",
      "return projection(x).view(batch, -1, self.num_heads, self.d_k).transpose(1, 2)",
      "return projection(x).view(batch, self.num_heads, -1, self.d_k)", "head"),
    M("mha-merge-without-transpose", "attention", "heads merged without transposing back",
      "out = out.transpose(1, 2).contiguous().view(batch, -1, self.num_heads * self.d_k)",
      "out = out.contiguous().view(batch, -1, self.num_heads * self.d_k)", "head"),
    M("mha-no-output-projection", "attention", "w_o never applied",
      "return self.w_o(out)", "return out", "w_o"),
    M("mha-scale-by-d-model", "attention", "multi-head attention scaled by sqrt(d_model)",
      "        out, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout)",
      "        out, weights = scaled_dot_product_attention(q * math.sqrt(self.d_k) / math.sqrt(self.num_heads * self.d_k), k, v, mask, self.dropout)",
      "sqrt(d_model) instead of sqrt(d_k)"),
    M("mha-key-projection-for-values", "attention", "values projected with w_k",
      "v = split_heads(value, self.w_v)", "v = split_heads(value, self.w_k)", "w_v"),
    M("mha-mask-wrong-axis", "attention", "mask head axis inserted at the end",
      "mask = mask.unsqueeze(1)  # the same mask for every head", "mask = mask.unsqueeze(-1)", "mask"),
    # --- feed-forward ------------------------------------------------------------------------
    M("ffn-no-relu", "feed_forward", "ReLU missing",
      "return self.w_2(self.dropout(self.w_1(x).relu()))", "return self.w_2(self.dropout(self.w_1(x)))", "relu"),
    M("ffn-relu-after-w2", "feed_forward", "ReLU applied after w_2",
      "return self.w_2(self.dropout(self.w_1(x).relu()))", "return self.w_2(self.dropout(self.w_1(x))).relu()", "relu"),
    M("ffn-dropout-on-output", "feed_forward", "dropout after w_2 instead of before",
      "return self.w_2(self.dropout(self.w_1(x).relu()))", "return self.dropout(self.w_2(self.w_1(x).relu()))",
      "dropout"),
    # --- normalization -----------------------------------------------------------------------
    M("ln-unbiased-variance", "normalization", "unbiased variance",
      "var = x.var(dim=-1, unbiased=False, keepdim=True)", "var = x.var(dim=-1, keepdim=True)", "unbiased"),
    M("ln-eps-outside-sqrt", "normalization", "eps added outside the square root",
      "torch.sqrt(var + self.eps)", "(torch.sqrt(var) + self.eps)", "eps"),
    M("ln-wrong-axis", "normalization", "statistics over the first axis",
      "mean = x.mean(dim=-1, keepdim=True)\n        var = x.var(dim=-1, unbiased=False, keepdim=True)",
      "mean = x.mean(dim=0, keepdim=True)\n        var = x.var(dim=0, unbiased=False, keepdim=True)", "axis"),
    M("ln-no-affine", "normalization", "weight and bias never applied",
      "return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias",
      "return (x - mean) / torch.sqrt(var + self.eps)", "weight"),
    M("ln-std-not-var", "normalization", "divides by the variance instead of the standard deviation",
      "torch.sqrt(var + self.eps)", "(var + self.eps)", "sqrt"),
    M("addnorm-pre-norm", "normalization", "pre-norm instead of post-norm",
      "return self.norm(x + self.dropout(sublayer(x)))", "return x + self.dropout(sublayer(self.norm(x)))",
      "pre-norm"),
    M("addnorm-no-residual", "normalization", "residual connection missing",
      "return self.norm(x + self.dropout(sublayer(x)))", "return self.norm(self.dropout(sublayer(x)))", "residual"),
    M("addnorm-norm-before-sum", "normalization", "norm applied to x before the sum",
      "return self.norm(x + self.dropout(sublayer(x)))", "return self.norm(x) + self.dropout(sublayer(x))", "norm"),
    # --- embedding ---------------------------------------------------------------------------
    M("embed-not-scaled", "embedding", "embedding not multiplied by sqrt(d_model)",
      "return self.embedding(tokens) * math.sqrt(self.d_model)", "return self.embedding(tokens)", "scale"),
    M("embed-scaled-by-d-model", "embedding", "embedding multiplied by d_model",
      "return self.embedding(tokens) * math.sqrt(self.d_model)", "return self.embedding(tokens) * self.d_model",
      "scale"),
    M("pe-sin-cos-swapped", "embedding", "sin and cos swapped",
      "pe[:, 0::2] = torch.sin(angle)\n        pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])",
      "pe[:, 0::2] = torch.cos(angle)\n        pe[:, 1::2] = torch.sin(angle[:, : d_model // 2])", "swapped"),
    M("pe-exponent-pair-index", "embedding", "exponent uses the pair index i instead of 2i",
      "angle = position / 10000.0 ** (two_i / d_model)", "angle = position / 10000.0 ** (two_i / 2 / d_model)",
      "exponent"),
    M("pe-positions-from-one", "embedding", "positions counted from 1",
      "position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)",
      "position = torch.arange(1, max_len + 1, dtype=torch.float64).unsqueeze(1)", "position"),
    M("pe-not-added", "embedding", "positional encoding computed but not added",
      "return self.dropout(x + self.pe[:length].to(x.dtype))", "return self.dropout(x)", "not added"),
    M("pe-no-length-check", "embedding", "no ValueError for sequences longer than max_len",
      "        if length > self.pe.size(0):\n            raise ValueError", "        if False:\n            raise ValueError",
      "max_len"),
    # --- layers ------------------------------------------------------------------------------
    M("enc-layer-no-mask", "layers", "encoder self-attention ignores the source mask",
      "x = self.add_norm1(x, lambda x: self.self_attn(x, x, x, src_mask))",
      "x = self.add_norm1(x, lambda x: self.self_attn(x, x, x))", "mask"),
    M("enc-layer-ffn-first", "layers", "feed-forward before self-attention",
      "        x = self.add_norm1(x, lambda x: self.self_attn(x, x, x, src_mask))\n        return self.add_norm2(x, self.feed_forward)",
      "        x = self.add_norm1(x, self.feed_forward)\n        return self.add_norm2(x, lambda x: self.self_attn(x, x, x, src_mask))",
      "order"),
    M("dec-layer-self-attn-no-mask", "layers", "decoder self-attention without the causal mask",
      "x = self.add_norm1(x, lambda x: self.self_attn(x, x, x, tgt_mask))",
      "x = self.add_norm1(x, lambda x: self.self_attn(x, x, x))", "mask"),
    M("dec-layer-cross-gets-target-mask", "layers", "cross-attention given the target mask",
      "x = self.add_norm2(x, lambda x: self.cross_attn(x, memory, memory, src_mask))",
      "x = self.add_norm2(x, lambda x: self.cross_attn(x, memory, memory, tgt_mask))", "mask"),
    M("dec-layer-cross-no-source-mask", "layers", "cross-attention ignores the source padding",
      "x = self.add_norm2(x, lambda x: self.cross_attn(x, memory, memory, src_mask))",
      "x = self.add_norm2(x, lambda x: self.cross_attn(x, memory, memory, None))", "mask"),
    M("dec-layer-cross-attends-to-itself", "layers", "cross-attention keys/values from the decoder",
      "x = self.add_norm2(x, lambda x: self.cross_attn(x, memory, memory, src_mask))",
      "x = self.add_norm2(x, lambda x: self.cross_attn(x, x, x, tgt_mask))", "memory"),
    M("dec-layer-queries-from-memory", "layers", "cross-attention queries and keys swapped",
      "x = self.add_norm2(x, lambda x: self.cross_attn(x, memory, memory, src_mask))",
      "x = self.add_norm2(x, lambda x: self.cross_attn(x, memory, x, src_mask))", "memory"),
    # --- model -------------------------------------------------------------------------------
    M("encoder-layers-not-stacked", "model", "every encoder layer applied to the original input",
      "        for layer in self.layers:\n            x = layer(x, src_mask)\n        return x",
      "        out = x\n        for layer in self.layers:\n            out = layer(x, src_mask)\n        return out",
      "stack"),
    M("decoder-layers-not-stacked", "model", "only the first decoder layer used",
      "        for layer in self.layers:\n            x = layer(x, memory, src_mask, tgt_mask)\n        return x",
      "        return self.layers[0](x, memory, src_mask, tgt_mask)", "stack"),
    M("model-no-positional", "model", "positional encoding skipped in the encoder",
      "return self.encoder(self.positional(self.src_embed(src)), src_mask)",
      "return self.encoder(self.src_embed(src), src_mask)", "position"),
    M("model-decode-uses-src-embed", "model", "target tokens embedded with the source table",
      "self.decoder(self.positional(self.tgt_embed(tgt))", "self.decoder(self.positional(self.src_embed(tgt))",
      "tgt_embed"),
    M("model-no-generator", "model", "forward returns hidden states instead of logits",
      "return self.generator(self.decode(tgt, memory, src_mask, tgt_mask))",
      "return self.decode(tgt, memory, src_mask, tgt_mask)", "generator"),
    # --- decoding ----------------------------------------------------------------------------
    M("greedy-no-stop-at-eos", "decoding", "finished rows keep generating instead of padding",
      "        next_token = next_token.masked_fill(finished, model.pad_id)\n", "", "pad"),
    M("greedy-keeps-bos", "decoding", "<s> left in the output",
      "    return tokens[:, 1:]\n    # END SOLUTION\n\n\n@torch.no_grad()",
      "    return tokens\n    # END SOLUTION\n\n\n@torch.no_grad()", "<s>"),
    M("greedy-first-position-logits", "decoding", "logits of the first position used",
      "next_token = model.generator(hidden[:, -1]).argmax(dim=-1)",
      "next_token = model.generator(hidden[:, 0]).argmax(dim=-1)", "last"),
    M("greedy-never-stops", "decoding", "loop runs to max_len even when all rows are done",
      "        if finished.all():\n            break\n    return tokens[:, 1:]", "    return tokens[:, 1:]", "does not stop once every row"),
    M("beam-no-length-penalty", "decoding", "beam search without length normalisation",
      "normalised = scores / ((5.0 + lengths) / 6.0) ** length_penalty", "normalised = scores", "length"),
    M("beam-duplicate-start", "decoding", "all beams start live: the beam fills with copies",
      "scores[:, 0] = 0.0", "scores[:, :] = 0.0", "beam"),
    M("beam-per-beam-topk", "decoding", "top-k taken per beam instead of over the whole row",
      "scores, best = candidates.topk(k, dim=-1)  # (B, K)",
      "scores, best = candidates.view(batch, k, vocab)[:, 0].topk(k, dim=-1)", "beam"),
    # --- training ----------------------------------------------------------------------------
    M("ls-spread-over-v-minus-1", "training", "smoothing mass spread over V-1 classes",
      "uniform = -log_probs.mean(dim=-1)",
      "uniform = (-log_probs.sum(dim=-1) + log_probs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)) / (log_probs.size(-1) - 1)",
      "V-1"),
    M("ls-mean-over-all-rows", "training", "mean over all rows, ignored ones included",
      "return loss[keep].sum() / keep.sum()", "return loss.masked_fill(~keep, 0).sum() / len(keep)", "over all n rows"),
    M("ls-ignored-rows-kept", "training", "ignored rows not dropped",
      "return loss[keep].sum() / keep.sum()", "return loss.mean()", "ignore"),
    M("ls-no-log-softmax", "training", "raw logits used as log-probabilities",
      "log_probs = logits.log_softmax(dim=-1)", "log_probs = logits", "log_softmax"),
    M("noam-warmup-off-by-one", "training", "warm-up peaks one step late",
      "return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)",
      "return factor * d_model**-0.5 * min(step**-0.5, (step - 1) * warmup**-1.5 + 1e-12)", "warm"),
    M("noam-d-model-positive-power", "training", "d_model**0.5 instead of **-0.5",
      "return factor * d_model**-0.5 * min(", "return factor * d_model**0.5 * min(", "d_model"),
    M("noam-no-step-check", "training", "no ValueError for step 0",
      "    if step < 1:\n        raise ValueError", "    if step < 0:\n        raise ValueError", "step"),
)
