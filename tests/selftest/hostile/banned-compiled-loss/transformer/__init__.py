"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), one module per part.

Every name in the API contract is importable from its own module, e.g.
``from transformer.attention import MultiHeadAttention``. The parts build on each other in
this order, which is also the order to implement them in:

    masks -> attention -> feed_forward -> normalization -> embedding -> layers -> model
          -> decoding -> training
"""
