"""Qwen3-VL-Reranker: preprocessing, graphs and runner against the float64 reference of the
authors' rule (and, where torch runs, against transformers' own model and image processor)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from reranker.backends.base import ScoreItem
from reranker.backends.vision import VisionRerankerBackend
from reranker.config import CustomConfig
from reranker.errors import (
    ImageTooLargeError,
    InputTooLongError,
    InvalidInputError,
    RequestTooLargeError,
)
from reranker.models.architectures import resolve, supported_models_markdown
from reranker.models.vision.images import ImageLimits, decode_image, image_bytes
from reranker.models.vision.qwen_vl import VisionPreprocess, patchify, smart_resize
from reranker.testing.families import qwen3_vl as kit
from reranker.types import Truncation

SMALL = kit.make_image(20, 24, seed=1)  # upscaled to min_pixels
PAGE = kit.make_image(70, 50, seed=2)
WIDE = kit.make_image(300, 90, seed=3, mode="RGBA", fmt="PNG")
PHOTO = kit.make_image(100, 130, seed=4, fmt="JPEG")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kit.make_checkpoint(tmp_path_factory.mktemp("qwen3-vl") / "model")


@pytest.fixture(scope="module")
def backend(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> VisionRerankerBackend:
    cache = tmp_path_factory.mktemp("cache")
    return VisionRerankerBackend("test", folder, 512, CustomConfig(
        model_id=str(folder), cache_dir=str(cache)))


def test_smart_resize_follows_the_authors_rounding() -> None:
    assert smart_resize(50, 70, 32, 4096, 1843200) == (64, 64)  # round(70 / 32) = 2
    assert smart_resize(20, 20, 32, 4096, 1843200) == (64, 64)  # up to min_pixels
    assert smart_resize(3000, 2000, 32, 4096, 1843200) == (1632, 1088)  # down to max_pixels
    assert smart_resize(80, 112, 32, 4096, 1843200) == (64, 128)  # 2.5 -> 2, 3.5 -> 4
    with pytest.raises(InvalidInputError, match="aspect ratio 201"):
        smart_resize(10, 2010, 32, 4096, 1843200)


def test_patches_equal_the_transformers_image_processor() -> None:
    processors = pytest.importorskip("transformers.models.qwen2_vl")
    cls = getattr(processors, "Qwen2VLImageProcessorPil", None) or processors.Qwen2VLImageProcessor
    processor = cls(patch_size=16, temporal_patch_size=2, merge_size=2,
                    image_mean=[0.5] * 3, image_std=[0.5] * 3)
    for data in (PAGE, WIDE, PHOTO):
        image = decode_image(data)
        mine = patchify(image, VisionPreprocess())
        h, w = smart_resize(image.height, image.width, 32, 4096, 1800 * 1024)
        from PIL import Image

        resized = image.resize((w, h), resample=Image.Resampling.BICUBIC)
        theirs = processor(images=[resized], do_resize=False, return_tensors="np")
        assert tuple(theirs["image_grid_thw"][0]) == mine.grid
        np.testing.assert_allclose(theirs["pixel_values"], mine.pixel_values, atol=1e-6)


CASES = {
    "text only": ("what grows here", ["a cat sat on the mat", "日本語 and growth", ""]),
    "image only": ("what grows here", [{"image": PAGE}, {"image": SMALL}, {"image": WIDE}]),
    "mixed": ("chart of growth", [{"image": PHOTO, "text": "the growth chart"}, "plain text",
                                  {"image": [PAGE, SMALL], "text": "two pages"}]),
    "image query": ({"image": PAGE, "text": "find this"}, ["a page", {"image": PAGE},
                                                           {"image": WIDE}]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_scores_equal_the_reference(backend: VisionRerankerBackend, folder: Path,
                                    case: str) -> None:
    query, docs = CASES[case]
    got = backend.score(query, docs)  # type: ignore[arg-type]
    want = kit.reference_scores(folder, query, docs)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=1e-4)
    assert got.tokens > 0  # type: ignore[attr-defined]


def test_a_batch_of_mixed_lengths_scores_as_each_item_alone(
        backend: VisionRerankerBackend, folder: Path) -> None:
    items = [ScoreItem(q, d, instruction=i) for (q, d), i in zip(
        CASES.values(), (None, "Find figures", None, "Match the page"), strict=True)]
    batched = backend.score_batch(items)
    for item, got in zip(items, batched, strict=True):
        assert isinstance(got, np.ndarray)
        kwargs = {"instruction": item.instruction} if item.instruction else {}
        want = kit.reference_scores(folder, item.query, list(item.documents), **kwargs)
        np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=1e-4)


def test_pixel_bounds_are_options(folder: Path, tmp_path: Path) -> None:
    small = VisionRerankerBackend("small", folder, 512, CustomConfig(
        model_id=str(folder), cache_dir=str(tmp_path)), max_pixels=8 * 32 * 32)
    big = kit.make_image(400, 300, seed=5)
    got = small.score("q", [{"image": big}])
    want = kit.reference_scores(folder, "q", [{"image": big}], max_pixels=8 * 32 * 32)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=1e-4)
    assert got.tokens < 150  # type: ignore[attr-defined]


def test_a_long_document_loses_its_end_and_an_oversized_image_is_refused(
        backend: VisionRerankerBackend) -> None:
    long_text = " ".join(["growth"] * 600)
    rows = backend.tokenizer.encode("i", kit_part("q"), [kit_part(long_text)])
    assert len(rows[0].ids) == 512
    assert rows[0].ids[-len(backend.tokenizer.suffix):] == backend.tokenizer.suffix
    with pytest.raises(InputTooLongError, match=r"documents\[0\]"):
        backend.score("q", [long_text], Truncation(allow=False))
    huge = kit.make_image(900, 700, seed=6)  # ~600 image tokens > 512
    with pytest.raises(InputTooLongError, match="images and the query alone"):
        backend.score("q", [{"image": huge}])


def kit_part(text: str) -> object:
    from reranker.models.prompts.qwen3_vl import Part

    return Part(text)


def test_image_tokens_count_against_the_request_budget(folder: Path, tmp_path: Path) -> None:
    tight = VisionRerankerBackend("tight", folder, 512, CustomConfig(
        model_id=str(folder), cache_dir=str(tmp_path), max_request_tokens=150))
    tight.score("q", ["short text"])
    with pytest.raises(RequestTooLargeError, match="image tokens included"):
        tight.score("q", [{"image": kit.make_image(400, 400)}])  # 144 image tokens


def test_hostile_images_get_clear_errors(backend: VisionRerankerBackend) -> None:
    with pytest.raises(ImageTooLargeError, match=r"documents\[1\]\.image"):
        backend.score("q", ["ok", {"image": kit.png_header(50_000, 50_000)}])  # bomb
    with pytest.raises(ImageTooLargeError, match="64000000 pixels; the limit is 40000000"):
        decode_image(kit.png_header(8000, 8000))
    with pytest.raises(ImageTooLargeError, match="max_image_bytes"):
        image_bytes(PAGE, limits=ImageLimits(max_bytes=100))
    with pytest.raises(InvalidInputError, match="not an image") as err:
        backend.score("q", [{"image": b"plain bytes"}])
    assert err.value.param == "documents[0].image"
    with pytest.raises(InvalidInputError, match="remote image URLs"):
        backend.score("q", [{"image": "https://example.com/a.png"}])
    with pytest.raises(InvalidInputError, match="data:image"):
        backend.score("q", [{"image": "data:text/plain;base64,aGk="}])
    with pytest.raises(InvalidInputError, match="unknown keys"):
        backend.score("q", [{"picture": PAGE}])
    with pytest.raises(InvalidInputError, match="neither text nor an image"):
        backend.score("q", [{}])
    with pytest.raises(InvalidInputError, match="cannot read image file"):
        backend.score("q", [{"image": "/nonexistent/page.png"}])


def test_image_sources_bytes_path_and_data_uri_agree(backend: VisionRerankerBackend,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    path.write_bytes(PAGE)
    uri = "data:image/png;base64," + base64.b64encode(PAGE).decode()
    scores = backend.score("q", [{"image": PAGE}, {"image": str(path)}, {"image": uri}])
    assert scores[0] == scores[1] == scores[2]


def test_the_table_resolves_the_family(folder: Path) -> None:
    import json

    assert resolve(json.loads((folder / "config.json").read_text())).name == "qwen3_vl"
    assert "Qwen/Qwen3-VL-Reranker-2B" in supported_models_markdown()


@pytest.mark.torch
def test_scores_equal_transformers_qwen3_vl(backend: VisionRerankerBackend,
                                           folder: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch not installed (pip install torch)")
    transformers = pytest.importorskip("transformers")
    model = transformers.Qwen3VLForConditionalGeneration.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager").eval()
    query, docs = {"image": PAGE, "text": "find this"}, [
        "a cat", {"image": WIDE, "text": "growth chart"}, {"image": [PHOTO, SMALL]}]
    ours = backend.score(query, docs)  # type: ignore[arg-type]
    rows, images, order = backend.encode(ScoreItem(query, docs))  # type: ignore[arg-type]
    table = model.lm_head.weight.detach()
    row = table[backend.tokenizer.yes_id] - table[backend.tokenizer.no_id]
    theirs = []
    for r, keys in zip(rows, order, strict=True):
        ids = torch.tensor([r.ids])
        kwargs = {"pixel_values": torch.tensor(np.concatenate(
            [images[k].pixel_values for k in keys])),
            "image_grid_thw": torch.tensor([images[k].grid for k in keys])} if keys else {}
        with torch.no_grad():
            hidden = model.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 mm_token_type_ids=(ids == backend.tokenizer.image_pad).int(),
                                 **kwargs).last_hidden_state[0, -1]
        theirs.append(float(hidden @ row))
    np.testing.assert_allclose(np.asarray(ours, np.float64), theirs, atol=1e-4)


def test_max_tokens_per_doc_cuts_the_document_text(backend: VisionRerankerBackend) -> None:
    cut = backend.score("q", ["water water water water", {"image": PAGE, "text": "water water"}],
                        Truncation(max_document_tokens=2))
    whole = backend.score("q", ["water water", {"image": PAGE, "text": "water water"}])
    np.testing.assert_array_equal(cut, whole)
