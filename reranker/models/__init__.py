"""Checkpoint -> ONNX graph, for every supported family; builds no backends.

Layout:

- :mod:`~reranker.models.architectures`: THE table (``families()``, ``resolve``,
  ``supported_models_markdown()``). Registry, runners, presets and docs read it.
- :mod:`~reranker.models.checkpoint` (the one safetensors reader),
  :mod:`~reranker.models.writer` (the one ONNX graph writer), :mod:`~reranker.models.build`
  (the one cache of built graphs), :mod:`~reranker.models.source` (the one fetch path, every
  file of a build at the commit the first resolved), :mod:`~reranker.models.sizes` (config
  sizes checked against the weights).
- :mod:`~reranker.models.layers`: shared blocks (attention and masks, RoPE, norms, MLPs, heads).
- ``encoders/`` and ``decoders/``: one module per family; ``prompts/``: each decoder family's
  prompt and truncation rule.

How to add a family (nothing else changes; the registry, runners, ``reranker models`` and the
Supported models page pick it up):

1. **Table entry**: one :class:`~reranker.models.architectures.Family` in ``_FAMILIES`` of
   :mod:`reranker.models.architectures`: ``name`` (the rule name ``custom``'s ``rule`` takes),
   ``kind``, ``architectures`` (``config.json`` ``architectures[0]`` values), ``model_types``,
   ``rule`` / ``max_length`` / ``memory`` (one line each, for users), ``repos`` (exact Hub
   ids that use this rule: how an architecture shared by several rules is told apart),
   ``takes_instruction``, ``module`` (dotted path of the family module), ``heads`` per
   architecture (``"cls"``, ``"yes_no"``, ``"score"`` or the family's own name, passed to the
   module as ``GraphOptions.head_kind``), ``padding_side`` (decoders: ``"left"``),
   ``position_offset`` and ``prompt`` (decoders: dotted path of the prompt module).
2. **Family module** ``reranker/models/encoders/<name>.py`` or ``decoders/<name>.py``,
   written as a difference from its relative, implementing
   (:mod:`reranker.models.family`)::

       def graph(checkpoint: Checkpoint, options: GraphOptions) -> BuiltGraph
       # decoders also:
       def shape(config: Mapping[str, Any], source: str = "checkpoint") -> DecoderShape

   ``graph`` returns ``(GraphWriter, inputs, outputs)`` with inputs ``input_ids``,
   ``attention_mask`` (``token_type_ids`` where the model has types) and output
   ``logits [batch, n]``; it reads sizes through :mod:`reranker.models.sizes`
   (``config_int``, ``layer_count``: a config that disagrees with the weights is a
   ``ModelLoadError``) and composes :mod:`reranker.models.layers`. Decoders reuse
   :func:`reranker.models.decoders.stack.decoder_graph` with a ``DecoderVariant`` (q/k norm,
   biases, ``(1 + w)`` norm, embedding scale, MLP activation, causal or bidirectional) and a
   head function; see :mod:`reranker.models.decoders.qwen3` (~50 lines), and
   :mod:`reranker.models.encoders.electra` for an encoder relative of BERT.
3. **Prompt module** (decoders) ``reranker/models/prompts/<name>.py``: ``DEFAULT_INSTRUCTION``
   (``None`` when the family takes none) and ``PromptTokenizer(tokenizer_file, max_length)``
   with ``encode(instruction, query, documents, truncation) -> list[list[int]]``, ``pad_id``
   and ``head_token_ids`` (the token ids the head reads, in output order: ``GraphOptions.
   token_ids``). The decoder runner pads on the left and feeds the head's raw score.
4. **Test-kit module** ``reranker/testing/families/<name>.py`` with ``NAME`` (the table name),
   ``make_checkpoint(folder, **shape) -> Path`` (config.json as the real repo has it,
   tokenizer files, safetensors with the real tensor names) and
   ``reference_scores(folder, query, documents, **options) -> np.ndarray`` (float64 numpy
   reference of the authors' rule, raw scores); list it in
   ``reranker/testing/families/__init__.py``'s ``_MODULES``. The fidelity and hostile-
   checkpoint tests parametrize over :func:`reranker.testing.families.all_families`.

Importing this package imports nothing: ``reranker.presets`` reads the table at import time.
"""
