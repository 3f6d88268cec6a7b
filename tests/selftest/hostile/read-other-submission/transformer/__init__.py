"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), one module per part.

Every name in the API contract is importable from its own module, e.g.
``from transformer.attention import MultiHeadAttention``. The parts build on each other in
this order, which is also the order to implement them in:

    masks -> attention -> feed_forward -> normalization -> embedding -> layers -> model
          -> decoding -> training

Conventions that hold in every part (the tests rely on them):

* Floating-point tensors and modules are float32 or float64: the tests run every part in both
  (modules converted with ``.double()`` or ``.to(dtype)``; a module receives floating-point
  inputs of its own dtype, except ``PositionalEncoding``, which follows ``x``). Every
  floating-point result has that dtype and is computed in it: float64 results are compared with
  float64 references to about 1e-9, so never round through float32 (``math.sqrt(d_k)``, not
  ``torch.sqrt(torch.tensor(d_k))``).
* A state dict holds exactly the keys its docstring lists: the tests load weights with
  ``load_state_dict(..., strict=True)``, so register no other parameters or buffers (plain
  Python attributes are fine).
* No function or ``forward`` modifies its tensor arguments in place: return new tensors.
"""
