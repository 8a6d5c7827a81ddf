"""The bundled presets: four ONNX cross-encoders and one decoder LLM reranker on the Hub.

Each preset pins a repository, a revision, the ONNX file(s) to fetch, the tokenizer and the
``optimization`` a CPU config of it gets unless it names one. The
file layouts were checked against the repositories' file listings (see README, "Presets").
Revisions are pinned to the commit that last changed the ONNX files where that commit is known,
so a preset means the same weights on every machine; ``quality`` follows ``main`` until its
commit is pinned. External weight files named inside an ONNX graph are fetched with it
(``reranker.hub``), so ``additional_files`` lists only what is known up front.

``fast`` defaults to ``optimization="int8"``: the repository's float32 export
(``onnx/model.onnx``, fetched in place of ``model_file``), attention-fused and quantized with
per-channel int8 weights at first use, then cached; ``optimization="none"`` still runs the
repository's own int8 file (``model_file``). Why, with figures: README, Performance, and
``benchmarks/results/measurements.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from reranker.errors import ModelNotFoundError
from reranker.models.architectures import repo_family
from reranker.optimize import Optimization

__all__ = ["Preset", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """A bundled model: where its files live and what it is good for."""

    name: str
    repo_id: str
    revision: str
    model_file: str
    additional_files: tuple[str, ...]
    tokenizer_file: str
    max_length: int
    languages: str
    download_size_mb: int
    parameters_m: int
    description: str
    source_note: str = ""
    optimization: Optimization = "none"
    #: Measured peak memory of one replica (float32, CPU), where known.
    memory_mb: int | None = None

    @property
    def is_decoder(self) -> bool:
        """Whether the architecture table lists the repo as a decoder reranker's."""
        family = repo_family(self.repo_id)
        return family is not None and family.kind == "decoder"

    def source_file(self, optimization: Optimization) -> str:
        """The ONNX file fetched for ``optimization``: ``model_file`` as is for ``"none"``;
        otherwise the float32 export the recipe starts from (the same repository holds it)."""
        if optimization != "none" and self.model_file.endswith("_quantized.onnx"):
            return self.model_file.removesuffix("_quantized.onnx") + ".onnx"
        return self.model_file

    def runs(self, optimization: Optimization) -> str:
        """What a CPU config with ``optimization`` runs, in words."""
        source = self.source_file(optimization)
        if optimization == "none":
            return f"{source} as is"
        done = "attention-fused" if optimization == "fused" else "fused and int8-quantized"
        return f"{source}, {done} at first use (then cached)"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="fast",
            repo_id="Xenova/ms-marco-MiniLM-L-6-v2",
            revision="fec3517fe1016cfeee39338ef98ba76fc449dbcc",
            model_file="onnx/model_quantized.onnx",
            additional_files=(),
            tokenizer_file="tokenizer.json",
            max_length=512,
            languages="English",
            download_size_mb=91,
            parameters_m=22,
            description=(
                "MiniLM-L6 trained on MS MARCO; float32 ONNX, fused and int8-quantized at first "
                "use (optimization='none': the repo's 23 MB int8 file). The CPU default."
            ),
            optimization="int8",
        ),
        Preset(
            name="balanced",
            repo_id="Xenova/bge-reranker-base",
            revision="1e3f8799cf1ff904a149002645fdea027667f56e",
            model_file="onnx/model.onnx",
            additional_files=(),
            tokenizer_file="tokenizer.json",
            max_length=512,
            languages="English, Chinese",
            download_size_mb=1110,
            parameters_m=278,
            description="BAAI bge-reranker-base (XLM-RoBERTa base), fp32 ONNX.",
        ),
        Preset(
            name="quality",
            repo_id="Xenova/bge-reranker-large",
            revision="main",
            model_file="onnx/model.onnx",
            additional_files=("onnx/model.onnx_data",),
            tokenizer_file="tokenizer.json",
            max_length=512,
            languages="English, Chinese",
            download_size_mb=2240,
            parameters_m=560,
            description="BAAI bge-reranker-large (XLM-RoBERTa large), fp32 ONNX.",
        ),
        Preset(
            name="multilingual",
            repo_id="onnx-community/bge-reranker-v2-m3-ONNX",
            revision="a3046abee880d6e78833e4e885939754355156bd",
            model_file="onnx/model.onnx",
            additional_files=(),
            tokenizer_file="tokenizer.json",
            max_length=8192,
            languages="100+ languages",
            download_size_mb=2270,
            parameters_m=568,
            description="BAAI bge-reranker-v2-m3 (XLM-RoBERTa large, 8192 tokens), fp32 ONNX.",
            source_note=(
                "onnx-community's ONNX export of BAAI/bge-reranker-v2-m3 (BAAI's repo ships no "
                "ONNX). onnx/model.onnx holds the graph and names its external weight file, "
                "which is fetched with it."
            ),
        ),
        Preset(
            name="instruct",
            repo_id="Qwen/Qwen3-Reranker-0.6B",
            revision="main",
            model_file="model.safetensors",
            additional_files=("config.json", "tokenizer_config.json"),
            tokenizer_file="tokenizer.json",
            max_length=8192,
            languages="100+ languages",
            download_size_mb=1200,
            parameters_m=596,
            description=(
                "Qwen3-Reranker-0.6B, a yes/no decoder LLM that follows a task instruction "
                "(per model and per request); ONNX graph built from safetensors at first use. "
                "About 1.9 GB of memory per replica in float32, 0.7 GB with int8."
            ),
            source_note=(
                "Qwen's repo ships safetensors only (bfloat16); the reranker graph (two output "
                "rows, yes and no) is built at first use and cached. Default max_length 2048."
            ),
            memory_mb=1933,  # benchmarks/decoder_speed.py, float32, ~500-token pairs
        ),
    )
}


def get_preset(name: str) -> Preset:
    """Look a preset up by name.

    Raises:
        ModelNotFoundError: the name is not a preset; the message lists the valid ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        valid = ", ".join(PRESETS)
        raise ModelNotFoundError(f"unknown preset {name!r}; valid presets: {valid}") from None
