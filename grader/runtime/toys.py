"""Hand-built toy models for the decoding tests (trusted code, runs next to the code under test).

Each toy duck-types ``transformer.model.Transformer`` as far as the decoders need it:

* ``encode(src, src_mask)`` -> ``memory`` ``(B, T_src, d_mem)``;
* ``decode(tgt, memory, src_mask, tgt_mask)`` -> ``hidden`` ``(B, T_tgt, d_hidden)``;
* ``generator``: an ``nn.Linear`` mapping ``hidden`` to logits ``(..., V)``;
* ``pad_id``: an int;
* ``forward(src, tgt, src_mask, tgt_mask)`` -> logits, like ``Transformer.forward``.

``MarkovToy``, ``SourceMarkovToy`` and ``PrefixToy`` are causal by construction (the hidden
state at position ``t`` depends on the target tokens ``0..t`` only), whatever ``tgt_mask`` they
are given: the tests that use them do not check the masks a decoder passes. ``AttentionToy``
is the exception: a stack of self-attention layers that applies ``tgt_mask`` (and ``src_mask``)
like the real decoder, so that decoding without the causal mask, or without the source mask,
changes its output. Tokens ``pad_id`` and (for the ``random`` constructors) ``bos_id``
get the logit ``FORBIDDEN_LOGIT`` (a probability of about ``e^-60``), so that a toy never
generates them and the output layout (no ``<s>``, ``pad`` only after ``</s>``) is unambiguous.

Transport: this module imports only torch and the standard library. A toy is rebuilt in
another process from ``(type(toy).__name__, toy.init_kwargs, toy.state_dict())`` with
:func:`build_toy`; ``init_kwargs`` holds plain Python values only (the dtype as a string),
and every tensor is a parameter or a buffer.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

FORBIDDEN_LOGIT = -60.0


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"not a floating-point dtype: {name!r}")
    return dtype


def _dtype_name(dtype) -> str:
    if isinstance(dtype, str):
        _dtype(dtype)
        return dtype
    return str(dtype).replace("torch.", "")


def _key_keep(src_mask, batch: int, length: int) -> torch.Tensor:
    """``(batch, length)`` bool "real source token" from a mask of shape ``(B, 1, T)``,
    ``(B, T_q, T)`` (first query row) or ``(B, T)``; a batch of 1 broadcasts."""
    if src_mask is None:
        return torch.ones(batch, length, dtype=torch.bool)
    keep = src_mask
    while keep.dim() > 2:
        keep = keep[:, 0]
    return keep.bool().expand(batch, length)


def _log_table(probs: torch.Tensor) -> torch.Tensor:
    """Row-normalised log-probabilities; zero probabilities become ``FORBIDDEN_LOGIT``."""
    probs = torch.as_tensor(probs, dtype=torch.float64)
    if (probs < 0).any():
        raise ValueError("probabilities must be >= 0")
    probs = probs / probs.sum(dim=-1, keepdim=True)
    table = torch.full_like(probs, FORBIDDEN_LOGIT)
    positive = probs > 0
    table[positive] = probs[positive].log()
    return table


def _load_generator_rules(
    toy, state: dict, vocab_size: int, pad_id: int, bos_id: int, eos_id: int, eos_bias: float, allowed
):
    """Bias the generator towards ``eos_id``, silence the tokens outside ``allowed``, and load
    ``state`` into ``toy`` in its dtype (the neural toys' last step)."""
    state["generator.bias"][eos_id] += eos_bias
    for token in _forbidden(vocab_size, pad_id, bos_id, allowed):
        state["generator.weight"][token] = 0.0
        state["generator.bias"][token] = FORBIDDEN_LOGIT
    dt = _dtype(toy.init_kwargs["dtype"])
    toy.load_state_dict({k: v.to(dt) for k, v in state.items()}, strict=True)
    return toy


def _forbidden(vocab_size: int, pad_id: int, bos_id: int, allowed) -> list[int]:
    if allowed is None:
        return sorted({pad_id, bos_id})
    if pad_id in allowed or bos_id in allowed:
        raise ValueError("pad_id and bos_id cannot be allowed")
    return [t for t in range(vocab_size) if t not in set(allowed)]


def _random_log_table(generator, shape, vocab_size, forbidden, scale, eos_id, eos_bias) -> torch.Tensor:
    logits = torch.randn(*shape, vocab_size, generator=generator, dtype=torch.float64) * scale
    if eos_id is not None:
        logits[..., eos_id] += eos_bias
    for token in forbidden:
        logits[..., token] = -math.inf
    table = logits.log_softmax(dim=-1)
    return table.clamp(min=FORBIDDEN_LOGIT)


class _Toy(nn.Module):
    init_kwargs: dict
    pad_id: int

    def __init_subclass__(cls, **kwargs):
        """Every toy is built in eval mode, as the decoding contract asks of the models it is
        given (toys have no dropout, so this changes no result: it keeps the letter of it)."""
        super().__init_subclass__(**kwargs)
        init = cls.__init__

        @functools.wraps(init)
        def init_in_eval_mode(self, *args, **kw):
            init(self, *args, **kw)
            self.eval()

        cls.__init__ = init_in_eval_mode

    def forward(self, src, tgt, src_mask, tgt_mask):
        memory = self.encode(src, src_mask)
        return self.generator(self.decode(tgt, memory, src_mask, tgt_mask))

    def describe(self) -> tuple[str, dict, dict]:
        """``(class name, init kwargs, state dict)``: everything :func:`build_toy` needs."""
        state = {name: value.detach().clone() for name, value in self.state_dict().items()}
        return type(self).__name__, dict(self.init_kwargs), state

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.init_kwargs.items())


class MarkovToy(_Toy):
    """A bigram model: the next-token log-probabilities depend only on the last token.

    ``table[i, j] = log P(next = j | last = i)``, a ``(V, V)`` matrix (row ``bos_id`` is the
    distribution of the first generated token). The source is ignored.

    * ``encode`` returns zeros ``(B, T_src, 1)``;
    * ``decode`` returns ``one_hot(tgt, V)`` — position ``t`` depends on token ``t`` only;
    * ``generator`` is ``nn.Linear(V, V, bias=False)`` whose weight is ``table.T``, so the
      logits of position ``t`` are exactly ``table[tgt[t]]`` (already log-probabilities).

    Build one from explicit probabilities with :meth:`from_probs` (a ``{token: {next: p}}``
    dict or a ``(V, V)`` matrix) or at random with :meth:`random`.
    """

    def __init__(self, vocab_size: int, pad_id: int = 0, dtype: str = "float64"):
        super().__init__()
        self.init_kwargs = {"vocab_size": int(vocab_size), "pad_id": int(pad_id), "dtype": _dtype_name(dtype)}
        self.vocab_size = int(vocab_size)
        self.pad_id = int(pad_id)
        self.generator = nn.Linear(vocab_size, vocab_size, bias=False, dtype=_dtype(self.init_kwargs["dtype"]))
        with torch.no_grad():
            self.generator.weight.zero_()

    @property
    def table(self) -> torch.Tensor:
        """``(V, V)`` float64: ``table[i, j] = log P(j | i)``."""
        return self.generator.weight.detach().T.double().clone()

    def set_table(self, table: torch.Tensor) -> MarkovToy:
        with torch.no_grad():
            self.generator.weight.copy_(torch.as_tensor(table, dtype=torch.float64).T)
        return self

    @classmethod
    def from_probs(cls, probs, vocab_size: int | None = None, pad_id: int = 0, dtype: str = "float64") -> MarkovToy:
        """``probs``: a ``(V, V)`` matrix (rows: last token) or ``{last: {next: p}}``; rows are
        normalised; a next token with probability 0 (or missing from the dict) gets
        ``FORBIDDEN_LOGIT``; a last token missing from the dict gets a uniform row over the
        tokens other than ``pad_id``."""
        if isinstance(probs, dict):
            if vocab_size is None:
                raise ValueError("vocab_size is needed with a dict of probabilities")
            matrix = torch.ones(vocab_size, vocab_size, dtype=torch.float64)
            matrix[:, pad_id] = 0.0
            for last, row in probs.items():
                matrix[last] = 0.0
                for nxt, p in row.items():
                    matrix[last, nxt] = float(p)
            probs = matrix
        probs = torch.as_tensor(probs, dtype=torch.float64)
        toy = cls(probs.shape[0], pad_id=pad_id, dtype=dtype)
        return toy.set_table(_log_table(probs))

    @classmethod
    def random(
        cls,
        seed: int,
        vocab_size: int,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        scale: float = 1.5,
        eos_bias: float = 0.0,
        allowed=None,
        dtype: str = "float64",
    ) -> MarkovToy:
        """Random rows ``log_softmax(scale * N(0, 1))`` (``eos_bias`` added to ``eos_id``);
        only the tokens in ``allowed`` (default: all but ``pad_id`` and ``bos_id``) are ever
        generated, the others get ``FORBIDDEN_LOGIT``."""
        generator = torch.Generator().manual_seed(seed)
        forbidden = _forbidden(vocab_size, pad_id, bos_id, allowed)
        table = _random_log_table(generator, (vocab_size,), vocab_size, forbidden, scale, eos_id, eos_bias)
        return cls(vocab_size, pad_id=pad_id, dtype=dtype).set_table(table)

    def encode(self, src, src_mask):
        return torch.zeros(src.shape[0], src.shape[1], 1, dtype=self.generator.weight.dtype, device=src.device)

    def decode(self, tgt, memory, src_mask, tgt_mask):
        return nn.functional.one_hot(tgt.long(), self.vocab_size).to(self.generator.weight.dtype)


class SourceMarkovToy(_Toy):
    """A bigram model whose table depends on the source: the context ``c = src[:, 0] % C``
    (the first source token, always a real one) selects one of ``C`` tables.

    ``tables[c, i, j] = log P(next = j | last = i, context = c)``, shape ``(C, V, V)``.

    * ``encode`` returns ``one_hot(c, C)`` at every source position, zeros at padded ones:
      ``(B, T_src, C)``;
    * ``decode`` reads ``c`` back from ``memory[:, 0]`` and returns ``one_hot(c * V + tgt, C * V)``
      — position ``t`` depends on token ``t`` and on the memory only;
    * ``generator``: ``nn.Linear(C * V, V, bias=False)`` with ``weight[:, c * V + i] = tables[c, i]``.

    A decoder that ignores ``memory`` (or mixes the rows of a batch up, e.g. ``repeat``
    instead of ``repeat_interleave`` in a beam search) reads the wrong table.
    """

    def __init__(self, num_contexts: int, vocab_size: int, pad_id: int = 0, dtype: str = "float64"):
        super().__init__()
        self.init_kwargs = {
            "num_contexts": int(num_contexts),
            "vocab_size": int(vocab_size),
            "pad_id": int(pad_id),
            "dtype": _dtype_name(dtype),
        }
        self.num_contexts = int(num_contexts)
        self.vocab_size = int(vocab_size)
        self.pad_id = int(pad_id)
        self.generator = nn.Linear(
            num_contexts * vocab_size, vocab_size, bias=False, dtype=_dtype(self.init_kwargs["dtype"])
        )
        with torch.no_grad():
            self.generator.weight.zero_()

    @property
    def tables(self) -> torch.Tensor:
        """``(C, V, V)`` float64."""
        c, v = self.num_contexts, self.vocab_size
        return self.generator.weight.detach().double().T.reshape(c, v, v).clone()

    def set_tables(self, tables) -> SourceMarkovToy:
        tables = torch.as_tensor(tables, dtype=torch.float64)
        c, v = self.num_contexts, self.vocab_size
        with torch.no_grad():
            self.generator.weight.copy_(tables.reshape(c * v, v).T)
        return self

    @classmethod
    def from_probs(cls, probs, pad_id: int = 0, dtype: str = "float64") -> SourceMarkovToy:
        """``probs``: ``(C, V, V)`` probabilities (rows normalised, zeros forbidden)."""
        probs = torch.as_tensor(probs, dtype=torch.float64)
        toy = cls(probs.shape[0], probs.shape[1], pad_id=pad_id, dtype=dtype)
        return toy.set_tables(_log_table(probs))

    @classmethod
    def random(
        cls,
        seed: int,
        num_contexts: int,
        vocab_size: int,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        scale: float = 1.5,
        eos_bias: float = 0.0,
        allowed=None,
        dtype: str = "float64",
    ) -> SourceMarkovToy:
        """Random tables as in ``MarkovToy.random``, one per context."""
        generator = torch.Generator().manual_seed(seed)
        forbidden = _forbidden(vocab_size, pad_id, bos_id, allowed)
        tables = _random_log_table(
            generator, (num_contexts, vocab_size), vocab_size, forbidden, scale, eos_id, eos_bias
        )
        return cls(num_contexts, vocab_size, pad_id=pad_id, dtype=dtype).set_tables(tables)

    def context(self, src) -> torch.Tensor:
        """The context id ``src[:, 0] % C`` of each row."""
        return src[:, 0].long() % self.num_contexts

    def encode(self, src, src_mask):
        dtype = self.generator.weight.dtype
        batch, length = src.shape
        memory = nn.functional.one_hot(self.context(src), self.num_contexts).to(dtype)
        memory = memory[:, None, :].expand(batch, length, self.num_contexts).clone()
        keep = _key_keep(src_mask, batch, length)
        return memory * keep[..., None].to(dtype)

    def decode(self, tgt, memory, src_mask, tgt_mask):
        context = memory[:, 0].argmax(dim=-1)  # (B,)
        index = context[:, None] * self.vocab_size + tgt.long()
        return nn.functional.one_hot(index, self.num_contexts * self.vocab_size).to(self.generator.weight.dtype)


class PrefixToy(_Toy):
    """A small random "neural" model whose next token depends on the *whole* prefix and on
    the source (through ``memory`` and ``src_mask``):

        memory[b, j] = src_embed[src[b, j]] * keep[b, j]            (zero at padding)
        pooled[b]    = sum_j keep[b, j] * memory[b, j] / sum_j keep[b, j]   (keep from src_mask)
        x_t          = tgt_embed[tgt[t]],   prefix_t = mean(x_0, ..., x_t)
        hidden_t     = tanh(x_t @ w_tok + prefix_t @ w_prefix + pooled @ w_mem)
        logits       = generator(hidden_t)           (nn.Linear(d_model, V))

    ``hidden_t`` depends on ``tgt[0..t]`` only (causal by construction). A decoder that feeds
    only the last token, ignores the memory, or decodes rows with the wrong source mask
    gets different tokens. :meth:`random` draws the weights from a seeded generator; the
    generator bias favours ``eos_id`` by ``eos_bias`` and forbids ``pad_id`` and ``bos_id``.
    """

    def __init__(self, vocab_size: int, src_vocab_size: int, d_model: int = 8, pad_id: int = 0, dtype: str = "float64"):
        super().__init__()
        self.init_kwargs = {
            "vocab_size": int(vocab_size),
            "src_vocab_size": int(src_vocab_size),
            "d_model": int(d_model),
            "pad_id": int(pad_id),
            "dtype": _dtype_name(dtype),
        }
        dt = _dtype(self.init_kwargs["dtype"])
        self.pad_id = int(pad_id)
        self.src_embed = nn.Parameter(torch.zeros(src_vocab_size, d_model, dtype=dt))
        self.tgt_embed = nn.Parameter(torch.zeros(vocab_size, d_model, dtype=dt))
        self.w_tok = nn.Parameter(torch.zeros(d_model, d_model, dtype=dt))
        self.w_prefix = nn.Parameter(torch.zeros(d_model, d_model, dtype=dt))
        self.w_mem = nn.Parameter(torch.zeros(d_model, d_model, dtype=dt))
        self.generator = nn.Linear(d_model, vocab_size, dtype=dt)
        with torch.no_grad():
            self.generator.weight.zero_()
            self.generator.bias.zero_()

    @classmethod
    def random(
        cls,
        seed: int,
        vocab_size: int,
        src_vocab_size: int,
        d_model: int = 8,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        eos_bias: float = 0.0,
        scale: float = 1.0,
        allowed=None,
        dtype: str = "float64",
    ) -> PrefixToy:
        """Weights from ``torch.Generator().manual_seed(seed)``; tokens outside ``allowed``
        (default: all but ``pad_id`` and ``bos_id``) get the bias ``FORBIDDEN_LOGIT``."""
        toy = cls(vocab_size, src_vocab_size, d_model, pad_id=pad_id, dtype=dtype)
        generator = torch.Generator().manual_seed(seed)

        def randn(*shape, std=1.0):
            return torch.randn(*shape, generator=generator, dtype=torch.float64) * std

        state = {
            "src_embed": randn(src_vocab_size, d_model),
            "tgt_embed": randn(vocab_size, d_model),
            "w_tok": randn(d_model, d_model, std=d_model**-0.5),
            "w_prefix": randn(d_model, d_model, std=1.5 * d_model**-0.5),
            "w_mem": randn(d_model, d_model, std=1.5 * d_model**-0.5),
            "generator.weight": randn(vocab_size, d_model, std=2.0 * scale * d_model**-0.5),
            "generator.bias": randn(vocab_size, std=0.5 * scale),
        }
        return _load_generator_rules(toy, state, vocab_size, pad_id, bos_id, eos_id, eos_bias, allowed)

    def encode(self, src, src_mask):
        batch, length = src.shape
        keep = _key_keep(src_mask, batch, length)
        return self.src_embed[src.long()] * keep[..., None].to(self.src_embed.dtype)

    def decode(self, tgt, memory, src_mask, tgt_mask):
        batch, length = memory.shape[0], memory.shape[1]
        keep = _key_keep(src_mask, batch, length).to(memory.dtype)
        pooled = (memory * keep[..., None]).sum(dim=1) / keep.sum(dim=1, keepdim=True).clamp(min=1.0)
        x = self.tgt_embed[tgt.long()]  # (B, t, d)
        steps = torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device)
        prefix = x.cumsum(dim=1) / steps[None, :, None]
        return torch.tanh(x @ self.w_tok + prefix @ self.w_prefix + (pooled @ self.w_mem)[:, None, :])


def _attention_mask(mask, batch: int, t_q: int, t_k: int):
    """``(batch, t_q, t_k)`` bool "may attend" from a mask of shape ``(T_q, T_k)``,
    ``(1 or B, T_q, T_k)``, ``(1 or B, 1, T_k)`` or ``(1 or B, 1 or h, T_q, T_k)`` (the first head);
    ``None`` when ``mask`` is ``None`` (everything visible)."""
    if mask is None:
        return None
    keep = torch.as_tensor(mask).bool()
    while keep.dim() > 3:
        keep = keep[:, 0]
    while keep.dim() < 3:
        keep = keep.unsqueeze(0)
    return keep.expand(batch, t_q, t_k)


def _attend(query, key, value, keep, recency=None):
    """Dot-product attention; ``keep`` False hides a key (a row with no key left is uniform);
    ``recency`` adds ``recency * (s - t)`` to the score of key ``s`` for query ``t``."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if recency is not None:
        steps = torch.arange(scores.shape[-1], dtype=scores.dtype, device=scores.device)
        scores = scores + recency * (steps[None, :] - steps[:, None])
    if keep is not None:
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1) @ value


class AttentionToy(_Toy):
    """A small random Transformer-like model whose decoder is a stack of ``num_layers``
    self-attention layers that apply ``tgt_mask`` (and cross-attention that applies
    ``src_mask``), unlike the other toys, which are causal whatever mask they get:

        keep[b, j]   = src_mask[b, 0, j]                 (True = real source token)
        e[b, j]      = src_embed[src[b, j]]
        memory[b, j] = tanh(e[b, j] + mean_{k: keep[b, k]} e[b, k] @ w_enc)   (padded j too)
        h0_t         = tgt_embed[tgt[t]] + sin(t * freq + phase)
        h{l+1}_t     = tanh(h_t @ w_self[l] + self_t @ w_attn[l] + cross_t @ w_cross[l])
        self_t       = attention(h_t @ w_q[l], keys h_s @ w_k[l], values h_s) over the s that tgt_mask
                       shows, with recency[l] * (s - t) added to the scores
        cross_t      = attention(h_t @ w_c[l], keys and values memory_j) over the j that src_mask shows
        logits       = generator(h{L}_t)                  (nn.Linear(d_model, V))

    With the causal mask, ``h{l}_t`` depends on ``tgt[0..t]`` only; without it (``tgt_mask``
    ``None`` or all True) the earlier positions of the first layer see the later tokens and,
    from the second layer on, the last position reads them: greedy decoding and beam search
    then choose other tokens. (:meth:`random` makes ``recency`` positive in the first layer,
    which then looks mostly at the latest visible token, and negative in the second, which
    looks mostly at the earliest positions: a missing mask shows in most decodings.) An encoder or decoder
    that does not get ``src_mask`` reads the
    source padding. ``tgt_mask`` may have shape ``(T, T)``, ``(1 or B, T, T)`` or
    ``(B, 1, T, T)``; ``src_mask`` ``(B, 1, T_src)``; ``None`` means "everything visible".
    :meth:`random` draws the weights from a seeded generator; the generator bias favours
    ``eos_id`` by ``eos_bias`` and forbids ``pad_id``, ``bos_id`` and the tokens outside
    ``allowed``.
    """

    def __init__(
        self,
        vocab_size: int,
        src_vocab_size: int,
        d_model: int = 8,
        num_layers: int = 2,
        pad_id: int = 0,
        dtype: str = "float64",
    ):
        super().__init__()
        self.init_kwargs = {
            "vocab_size": int(vocab_size),
            "src_vocab_size": int(src_vocab_size),
            "d_model": int(d_model),
            "num_layers": int(num_layers),
            "pad_id": int(pad_id),
            "dtype": _dtype_name(dtype),
        }
        dt = _dtype(self.init_kwargs["dtype"])
        self.pad_id = int(pad_id)
        self.num_layers = int(num_layers)
        self.src_embed = nn.Parameter(torch.zeros(src_vocab_size, d_model, dtype=dt))
        self.w_enc = nn.Parameter(torch.zeros(d_model, d_model, dtype=dt))
        self.tgt_embed = nn.Parameter(torch.zeros(vocab_size, d_model, dtype=dt))
        self.freq = nn.Parameter(torch.zeros(d_model, dtype=dt))
        self.phase = nn.Parameter(torch.zeros(d_model, dtype=dt))
        for name in ("w_q", "w_k", "w_self", "w_attn", "w_c", "w_cross"):
            self.register_parameter(name, nn.Parameter(torch.zeros(num_layers, d_model, d_model, dtype=dt)))
        self.recency = nn.Parameter(torch.zeros(num_layers, dtype=dt))
        self.generator = nn.Linear(d_model, vocab_size, dtype=dt)
        with torch.no_grad():
            self.generator.weight.zero_()
            self.generator.bias.zero_()

    @classmethod
    def random(
        cls,
        seed: int,
        vocab_size: int,
        src_vocab_size: int,
        d_model: int = 8,
        num_layers: int = 2,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        eos_bias: float = 0.0,
        scale: float = 1.0,
        allowed=None,
        dtype: str = "float64",
    ) -> AttentionToy:
        """Weights from ``torch.Generator().manual_seed(seed)``; tokens outside ``allowed``
        (default: all but ``pad_id`` and ``bos_id``) get the bias ``FORBIDDEN_LOGIT``."""
        toy = cls(vocab_size, src_vocab_size, d_model, num_layers, pad_id=pad_id, dtype=dtype)
        generator = torch.Generator().manual_seed(seed)

        def randn(*shape, std=1.0):
            return torch.randn(*shape, generator=generator, dtype=torch.float64) * std

        square = d_model**-0.5
        state = {
            "src_embed": randn(src_vocab_size, d_model),
            "w_enc": randn(d_model, d_model, std=square),
            "tgt_embed": randn(vocab_size, d_model),
            "freq": torch.rand(d_model, generator=generator, dtype=torch.float64) * 1.5 + 0.1,
            "phase": torch.rand(d_model, generator=generator, dtype=torch.float64) * 2 * math.pi,
            "w_q": randn(num_layers, d_model, d_model, std=2.0 * square),
            "w_k": randn(num_layers, d_model, d_model, std=2.0 * square),
            "w_self": randn(num_layers, d_model, d_model, std=square),
            "w_attn": randn(num_layers, d_model, d_model, std=2.0 * square),
            "w_c": randn(num_layers, d_model, d_model, std=2.0 * square),
            "w_cross": randn(num_layers, d_model, d_model, std=1.5 * square),
            # the first layer (and every other one) favours the latest visible positions, the others the earliest
            "recency": (torch.rand(num_layers, generator=generator, dtype=torch.float64) + 1.0)
            * torch.tensor([(-1.0) ** layer for layer in range(num_layers)], dtype=torch.float64),
            "generator.weight": randn(vocab_size, d_model, std=2.0 * scale * square),
            "generator.bias": randn(vocab_size, std=0.5 * scale),
        }
        return _load_generator_rules(toy, state, vocab_size, pad_id, bos_id, eos_id, eos_bias, allowed)

    def encode(self, src, src_mask):
        batch, length = src.shape
        keep = _key_keep(src_mask, batch, length).to(self.src_embed.device)
        weight = keep.to(self.src_embed.dtype)[..., None]
        embedded = self.src_embed[src.long()]
        pooled = (embedded * weight).sum(dim=1, keepdim=True) / weight.sum(dim=1, keepdim=True).clamp(min=1.0)
        return torch.tanh(embedded + pooled @ self.w_enc)  # padded positions too, as in a real encoder

    def decode(self, tgt, memory, src_mask, tgt_mask):
        batch, length = tgt.shape
        steps = torch.arange(length, dtype=self.freq.dtype, device=self.freq.device)
        h = self.tgt_embed[tgt.long()] + torch.sin(steps[:, None] * self.freq + self.phase)
        self_keep = _attention_mask(tgt_mask, batch, length, length)
        source_keep = _key_keep(src_mask, memory.shape[0], memory.shape[1])[:, None, :]
        source_keep = source_keep.expand(batch, length, memory.shape[1])
        memory = memory.to(h.dtype)
        for layer in range(self.num_layers):
            attended = _attend(h @ self.w_q[layer], h @ self.w_k[layer], h, self_keep, self.recency[layer])
            crossed = _attend(h @ self.w_c[layer], memory, memory, source_keep)
            h = torch.tanh(h @ self.w_self[layer] + attended @ self.w_attn[layer] + crossed @ self.w_cross[layer])
        return h


TOY_CLASSES = {cls.__name__: cls for cls in (MarkovToy, SourceMarkovToy, PrefixToy, AttentionToy)}


def build_toy(class_name: str, init_kwargs: dict, state_dict: dict) -> _Toy:
    """Rebuild a toy from ``toy.describe()`` (e.g. in a sandboxed worker), in eval mode."""
    if class_name not in TOY_CLASSES:
        raise ValueError(f"unknown toy {class_name!r} (known: {', '.join(TOY_CLASSES)})")
    toy = TOY_CLASSES[class_name](**init_kwargs)
    toy.load_state_dict(state_dict, strict=True)
    return toy.eval()
