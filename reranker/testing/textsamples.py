"""Small hand-written texts for tests and README examples: a query, candidates, a long one."""

from __future__ import annotations

__all__ = ["QUERY", "DOCUMENTS", "LONG_DOCUMENT"]

QUERY = "how do cross encoders rank search results"

DOCUMENTS = [
    "A cross encoder reads the query and the document together and outputs a relevance score.",
    "The weather in Paris is mild in spring, with showers and sunny afternoons.",
    "Search engines first retrieve candidates with BM25, then rerank the top results.",
    "Bananas are rich in potassium and are a popular snack for athletes.",
    "Rank the results by the score of the model; the best documents come first.",
    "Encoders turn text into vectors; a bi-encoder encodes query and document separately.",
    "",
    "The history of the Roman empire spans many centuries of war and politics.",
]

LONG_DOCUMENT = " ".join(
    [
        "Reranking is the second stage of a search system.",
        "The first stage retrieves a few hundred candidates quickly with an index.",
        "A cross encoder then scores each candidate against the query, reading both texts at",
        "once, which is slower but much more accurate than comparing two separate vectors.",
        "Long documents do not fit in the model's window, so they are cut into overlapping",
        "windows; each window is scored and the document keeps the score of its best window.",
        "This matters when the answer sits at the end of a long page, far from the title.",
    ]
    * 6
    + ["In the end, the search results are ranked by how well they answer the question."]
)
