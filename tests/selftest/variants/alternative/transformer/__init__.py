"""A second, independently written correct implementation of the API contract.

It deliberately differs from solutions/ wherever valid implementations commonly differ
(einsum instead of matmul, -inf instead of a large negative, reshape/permute instead of
view/transpose, torch.pow for the positional encoding, the variance by hand, the loss from
log_softmax in one expression, a per-row beam search, ...). The whole test suite must give
it full marks: a test that rejects it rejects a correct student.
"""
