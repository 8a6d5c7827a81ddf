"""Images for vision-language rerankers: inputs and decoding (:mod:`.inputs`, :mod:`.images`,
:mod:`.remote` for HTTP), the Qwen-VL preprocessing (:mod:`.qwen_vl`) and the Qwen3-VL vision
tower graph (:mod:`.qwen3_vl_tower`). The decoder side of each family lives with the other
decoders (:mod:`reranker.models.decoders.qwen3_vl`)."""
