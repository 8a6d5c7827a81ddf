"""Image inputs over HTTP (base64, data URIs, allow-listed remote URLs from a loopback server)
and in the library (image documents reach vision backends; text-only ones refuse them)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployments.serve.args import ImagesArgs, RemoteImagesArgs
from deployments.serve.service import texts_for
from reranker import Reranker
from reranker.errors import ImageTooLargeError, InvalidInputError
from reranker.models.vision.images import ImageLimits
from reranker.models.vision.remote import RemoteImages, http_image
from reranker.testing.families import qwen3_vl as kit

PAGE = kit.make_image(70, 50, seed=2)
B64 = base64.b64encode(PAGE).decode()


class _Images(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, str, bytes]] = {
        "/page.png": (200, "image/png", PAGE),
        "/page.html": (200, "text/html", b"<html></html>"),
        "/bomb.png": (200, "image/png", kit.png_header(50_000, 50_000)),
        "/big.png": (200, "image/png", PAGE + b"\0" * 5000),
        "/moved": (302, "image/png", b""),
        "/missing.png": (404, "text/plain", b"no"),
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, kind, body = self.routes.get(self.path, (404, "text/plain", b""))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if status == 302:
            self.send_header("Location", "http://169.254.169.254/latest")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_base64_and_data_uris_decode_to_the_same_bytes() -> None:
    off = RemoteImages()
    assert http_image(B64, "documents[0].image", off) == PAGE
    assert http_image("data:image/png;base64," + B64, "documents[0].image", off) == PAGE
    with pytest.raises(InvalidInputError, match="neither a URL, a data: URI nor base64"):
        http_image("/etc/passwd", "documents[0].image", off)  # never a server path
    with pytest.raises(ImageTooLargeError, match="pixels; the limit"):
        http_image(base64.b64encode(kit.png_header(8000, 8000)).decode(), "d", off)


def test_remote_urls_are_off_by_default(server: str) -> None:
    with pytest.raises(InvalidInputError, match="remote image URLs are off") as err:
        http_image(f"http://{server}/page.png", "documents[3].image", RemoteImages())
    assert err.value.param == "documents[3].image"


def test_remote_urls_follow_the_allow_list_and_limits(server: str) -> None:
    remote = RemoteImages(enabled=True, allowed_hosts=(server,), timeout_s=5.0,
                          limits=ImageLimits(max_bytes=len(PAGE) + 100))
    assert http_image(f"http://{server}/page.png", "d", remote) == PAGE
    other = RemoteImages(enabled=True, allowed_hosts=("images.example.com",))
    with pytest.raises(InvalidInputError, match="not on the image allow-list"):
        http_image(f"http://{server}/page.png", "d", other)
    with pytest.raises(InvalidInputError, match="not image/\\*"):
        http_image(f"http://{server}/page.html", "d", remote)
    with pytest.raises(ImageTooLargeError, match="max_image_bytes"):
        http_image(f"http://{server}/big.png", "d", remote)
    with pytest.raises(ImageTooLargeError):
        http_image(f"http://{server}/bomb.png", "d", remote)
    with pytest.raises(InvalidInputError, match="HTTP 302"):  # redirects are not followed
        http_image(f"http://{server}/moved", "d", remote)
    with pytest.raises(InvalidInputError, match="HTTP 404"):
        http_image(f"http://{server}/missing.png", "d", remote)


def test_the_ingress_turns_image_objects_into_bytes(server: str) -> None:
    docs = ["plain", {"text": "caption", "image": B64}, {"image": f"http://{server}/page.png"},
            {"title": "T", "text": "x"}]
    images = ImagesArgs(remote=RemoteImagesArgs(enabled=True, allowed_hosts=[server]))
    out = texts_for(docs, images=images)
    assert out == ["plain", {"text": "caption", "image": PAGE}, {"text": None, "image": PAGE},
                   "x"]
    assert texts_for(docs, ["title", "text"], images=images)[3] == "title: T\ntext: x"
    with pytest.raises(InvalidInputError, match=r"documents\[2\]\.image: remote image URLs"):
        texts_for(docs)
    with pytest.raises(InvalidInputError, match=r"documents\[1\]"):
        texts_for(["a", {"title": "no text"}, {"image": B64}])


def test_text_only_backends_refuse_image_documents(tmp_path: Path) -> None:
    from reranker.testing.families import bert

    folder = bert.make_checkpoint(tmp_path / "bert")
    with Reranker({"type": "custom", "model_id": str(folder), "model_format": "safetensors",
                   "cache_dir": str(tmp_path / "cache")}) as rr:
        assert len(rr.rerank("q", ["a", {"text": "b"}])) == 2
        with pytest.raises(InvalidInputError, match="reads text only") as err:
            rr.rerank("q", ["a", {"text": "b", "image": PAGE}])
        assert err.value.param == "documents[1].image"


def test_the_library_ranks_a_page_image_and_a_passage(tmp_path: Path) -> None:
    folder = kit.make_checkpoint(tmp_path / "vl")
    page = tmp_path / "page.png"
    page.write_bytes(PAGE)
    with Reranker({"type": "custom", "model_id": str(folder), "max_length": 512,
                   "cache_dir": str(tmp_path / "cache")}) as rr:
        results = rr.rerank("what grows", [{"image": str(page)}, "a passage", {"image": PAGE}],
                            raw_scores=True)
    want = kit.reference_scores(folder, "what grows", [{"image": PAGE}, "a passage"])
    by_index = {r.index: r.score for r in results}
    assert by_index[0] == pytest.approx(want[0], abs=1e-4)
    assert by_index[1] == pytest.approx(want[1], abs=1e-4)
    assert by_index[2] == by_index[0]
    assert results[0].document is not None


def test_candidate_rows_carry_images_to_the_batch_actor(tmp_path: Path) -> None:
    import pyarrow as pa

    from deployments.batch.plan import CANDIDATE_ROW_SCHEMA
    from deployments.batch.worker import RerankActor
    from reranker.candidates import parse_candidate_record
    from reranker.testing.families import bert

    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "p1.png").write_bytes(PAGE)
    file = str(tmp_path / "candidates.jsonl")
    record = {"query_id": "q1", "query": "what grows", "documents": [
        {"id": "img", "image": "pages/p1.png"}, {"id": "txt", "text": "a passage"},
        {"id": "both", "text": "caption", "image": "data:image/png;base64," + B64},
        {"id": "bad", "image": 7}]}
    row, bad = parse_candidate_record(record, file, 1)
    assert row is not None and row.doc_ids == ("img", "txt", "both")
    assert row.images == (str(tmp_path / "pages" / "p1.png"), None,
                          "data:image/png;base64," + B64)
    assert [b.reason for b in bad] == ["documents[3].image must be a path or a data: URI"]
    table = pa.Table.from_pylist([{
        "shard": 0, "seq": 0, "shard_rows": 1, "query_id": "q1", "query": row.query,
        "file": file, "line": 1, "doc_ids": list(row.doc_ids), "rejects": [],
        "texts": list(row.texts), "images": list(row.images)}], schema=CANDIDATE_ROW_SCHEMA)
    folder = kit.make_checkpoint(tmp_path / "vl")
    actor = RerankActor({"type": "custom", "model_id": str(folder), "max_length": 512,
                         "cache_dir": str(tmp_path / "cache")}, raw_scores=True)
    out = actor(table).to_pylist()[0]
    want = kit.reference_scores(folder, "what grows", [
        {"image": PAGE}, "a passage", {"text": "caption", "image": PAGE}])
    got = dict(zip(out["doc_ids"], out["scores"], strict=True))
    assert got == pytest.approx(dict(zip(["img", "txt", "both"], want, strict=True)), abs=1e-4)
    text_only = RerankActor({"type": "custom", "model_id": str(bert.make_checkpoint(
        tmp_path / "bert")), "model_format": "safetensors", "cache_dir": str(tmp_path / "c2")})
    refused = text_only(table).to_pylist()[0]
    assert "documents[0].image" in refused["error"] and refused["doc_ids"] == []


def test_an_ir_corpus_with_images_reaches_the_actor(tmp_path: Path) -> None:
    import json

    import pyarrow as pa

    from deployments.batch.plan import plan_ir
    from deployments.batch.worker import RerankActor

    (tmp_path / "p1.png").write_bytes(PAGE)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in [
        {"_id": "d1", "image": "p1.png"}, {"_id": "d2", "text": "a passage"},
        {"_id": "d3", "title": "", "text": "", "image": 5}]) + "\n")
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": "q1", "text": "what grows"}) + "\n")
    run = tmp_path / "run.trec"
    run.write_text("".join(f"q1 Q0 {d} {i + 1} {3 - i} r\n" for i, d in
                           enumerate(["d1", "d2", "d3"])))
    plan = plan_ir(run, queries, corpus, depth=None, shard_size=4)
    assert plan.corpus.column("image").to_pylist() == [str(tmp_path / "p1.png"), None]
    rows = [r for _, table in plan.shards for r in table.to_pylist()]
    assert rows[0]["doc_ids"] == ["d1", "d2"]
    assert any("'image' must be a path" in b.reason for b in plan.rejects)
    folder = kit.make_checkpoint(tmp_path / "vl")
    actor = RerankActor({"type": "custom", "model_id": str(folder), "max_length": 512,
                         "cache_dir": str(tmp_path / "cache")}, raw_scores=True)
    # What __init__ reads from the object store when given the corpus reference.
    actor.texts, actor.images = plan.corpus.column("text"), plan.corpus.column("image")
    out = actor(pa.Table.from_pylist(rows)).to_pylist()[0]
    want = kit.reference_scores(folder, "what grows", [{"image": PAGE}, "a passage"])
    got = dict(zip(out["doc_ids"], out["scores"], strict=True))
    assert got == pytest.approx({"d1": want[0], "d2": want[1]}, abs=1e-4)
