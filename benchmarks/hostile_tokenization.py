"""Cost of tokenizing the longest request the default limits let through.

A 10,000-character query (``max_query_chars``) with documents of 100,000 characters
(``max_document_chars``), tokenized for a 512-token window with the BERT stand-in tokenizer;
prints the seconds, the windows and tokens kept, and the process's peak RSS. Run it under
``/usr/bin/time -v`` for an outside view of the same peak:

    /usr/bin/time -v python benchmarks/hostile_tokenization.py --documents 4
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _text(chars: int, offset: int) -> str:
    from reranker.sample_requests import documentation_paragraphs

    paragraphs = documentation_paragraphs()
    parts: list[str] = []
    size, i = 0, offset
    while size < chars:
        parts.append(paragraphs[i % len(paragraphs)])
        size += len(parts[-1]) + 1
        i += 1
    return " ".join(parts)[:chars]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=4)
    parser.add_argument("--query-chars", type=int, default=10_000)
    parser.add_argument("--document-chars", type=int, default=100_000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--chunk", action="store_true", help="split documents into windows")
    args = parser.parse_args()

    from reranker.testing.tokenizers import write_bert_tokenizer
    from reranker.tokenization import PairTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_bert_tokenizer(tmp, vocab_size=30522)
        tok = PairTokenizer(Path(tmp) / "tokenizer.json", args.max_length)
        query = _text(args.query_chars, 0)
        docs = [_text(args.document_chars, 50 * (i + 1)) for i in range(args.documents)]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        enc = tok.encode(query, docs, chunk=args.chunk, overlap=64, max_chunks=16)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from benchmarks._common import cpu_line

    print(cpu_line())
    print(f"seconds={seconds:.3f} windows={len(enc.ids)} "
          f"tokens={sum(len(r) for r in enc.ids)} "
          f"peak_rss_mib={peak / 1024:.0f} rss_before_encode_mib={before / 1024:.0f}")


if __name__ == "__main__":
    main()
