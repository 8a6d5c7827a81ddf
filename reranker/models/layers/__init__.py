"""Shared graph blocks: functions over a :class:`~reranker.models.writer.GraphWriter`.

Each block takes the writer, the checkpoint where it reads weights, the input value's name and
the state-dict prefix of its weights, and returns the name of its output value. Family modules
(``reranker.models.encoders``, ``reranker.models.decoders``) compose them.

- :mod:`~reranker.models.layers.linear`: torch ``Linear`` (bias required, optional or absent).
- :mod:`~reranker.models.layers.norms`: LayerNorm, RMSNorm, Gemma's ``(1 + w)`` RMSNorm.
- :mod:`~reranker.models.layers.activations`: GELU (erf), GELU-tanh, ReLU, SiLU by config name.
- :mod:`~reranker.models.layers.mlp`: dense feed-forward, gated (SwiGLU, GeGLU), fused GLU.
- :mod:`~reranker.models.layers.rope`: rotary tables and ``rotate_half``.
- :mod:`~reranker.models.layers.attention`: additive masks (padding, causal, sliding window,
  bidirectional), scaled dot-product with an optional position-bias hook (ALiBi, relative
  bias), and grouped-query attention with last-position-only queries.
- :mod:`~reranker.models.layers.heads`: CLS pooler + classifier, RoBERTa/ELECTRA heads, mean
  pooling, last position, score row, token rows (yes/no).
"""
