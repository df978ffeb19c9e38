"""Training samples from prepared tables: task conversations, caption conversations, text chunks, mixes.

How it works
------------
Every builder returns a list of encoded samples (see :mod:`qslaw.train.encode`). Selection follows the
released recipe: multimodal subsets are a deterministic prefix in table order (not a random subset), text
is joined with ``"\\n\\n"``, tokenized once and cut into exact chunks. :func:`mix` combines ``n`` multimodal
samples with ``round(ratio · n)`` text chunks (capped by what the corpus holds); the training loop
shuffles the union every epoch, so batches are text:multimodal ≈ ratio in expectation and the realised
ratio is reported.
"""

from __future__ import annotations

from qslaw.data.render import chunk_ids
from qslaw.train.encode import encode_chunk, encode_conversation, image_token_count, load_image


def conversations(rows: list[dict], processor: object, config: object, max_length: int,
                  limit: int | None = None, images_only: bool = False) -> list[dict]:
    """Encoded (prompt, response[, image]) rows, the first ``limit`` that qualify."""
    n_image = image_token_count(config)
    out = []
    for row in rows:
        if limit is not None and len(out) >= limit:
            break
        image = load_image(row.get("image"))
        if images_only and image is None:
            continue
        out.append(encode_conversation(processor, row["prompt"], row["response"], image, n_image, max_length))
    return out


def text_chunks(lines: list[str], tokenizer: object, length: int, limit: int | None = None) -> list[dict]:
    """Exact ``length``-token chunks of the joined corpus, loss on every token."""
    ids = tokenizer("\n\n".join(lines), add_special_tokens=True).input_ids
    chunks = chunk_ids(ids, length)
    return [encode_chunk(c) for c in chunks[:limit]]


def mix(multimodal: list[dict], text: list[dict], ratio: float) -> tuple[list[dict], dict]:
    """``multimodal`` plus ``round(ratio · len(multimodal))`` text chunks; returns samples and the realised ratio."""
    n_text = min(len(text), round(ratio * len(multimodal)))
    stats = {"mix_multimodal": len(multimodal), "mix_text": n_text,
             "mix_text_ratio": n_text / len(multimodal) if multimodal else 0.0}
    return multimodal + text[:n_text], stats
