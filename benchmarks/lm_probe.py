"""Can a built base LM read its context and recall its facts? Probes that print figures (a benchmark, not a test).

How it works
------------
- ``repeat_top1``: random token sequences (uniform over the non-special vocabulary) of ``length`` tokens,
  each shown twice after bos; the share of second-half tokens the LM predicts top-1. Models with induction
  heads score near 1, models without near 0 — the embedded 4 × 256 LM pretrained without its compiled
  circuits scored 0.003, with them ≈ 0.92 (`qslaw.embedded.base.circuits`).
- ``lookup``: options, a lecture, then "The answer is <content>. The answer is": is the likeliest next letter
  the one of <content>'s option (chance ≈ 0.32)?
- ``practice``: fresh reading-practice items (``qslaw.embedded.world.filler.practice_item``, a seed the corpus never
  used): the passage and question, then the answer up to its content word; greedy decoding must continue
  with the passage's word (who did what first, which colour, how many, which animal). Chance is ≈ 1/2 for a
  model that picks one of the two candidates in the passage.
- ``recall``: every knowledge-base fact as its NO-question solution states it ("The glorp eats", "The capital
  of Sydym is"); greedy decoding must continue with the fact's value, by relation and for the test split's
  entities alone. A fine-tuned model answers a NO question by writing that sentence, so this is what its memory alone
  gives NO (the options in the prompt help beyond it: head 1.2 of `qslaw.embedded.base.circuits`).
  Measured on the default base (facts stated as "The <relation> of X is V", 2026-11-28): 31 % overall; a word
  class 68 %, an animal's food 52 %, its kind 40 %, a capital 25 %, an export 17 %, a meaning 14 %, a currency 11 %,
  a habitat 0 %. Free generation after "X is" mostly continues with a common phrase (" the currency of …",
  " new"), while picking the value among four by likelihood is right for 44 of 48 kinds and 34 of 48 habitats, and
  the fine-tuned model, which has the options in its prompt, answers 86-100 % of those NO questions. So this recall
  is a lower bound; `qslaw.embedded.world.facts` gives the recognition figures. Which relations the LM recalls
  changes from build to build (the earlier world, "The X lives in": 35 % overall, a currency 92 %).

A fine-tuned model can only answer TXT and IMG questions by reading the hint, image or options, so a base
that fails both copy probes makes the ScienceQA-style benchmark undiscriminating however long it is tuned. Run::

    python -m benchmarks.lm_probe artifacts/base [--items 120] [--seed 987]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter

import torch

from qslaw.embedded.base.circuits import content_token_ids, lookup_accuracy, repeat_top1

LEADS = {"order": 1, "colour": 3, "count": 2, "animal": 1}
"""Words of the answer given before the content word the model must copy, per item kind."""


def item_kind(question: str) -> str:
    if "do first" in question:
        return "order"
    if "What colour" in question:
        return "colour"
    if "How many" in question:
        return "count"
    return "animal"


@torch.inference_mode()
def practice_accuracy(lm: torch.nn.Module, tokenizer: object, items: int = 120, seed: int = 987) -> dict:
    """Share of fresh reading-practice items whose copied word the LM produces first, by kind and overall."""
    from qslaw.embedded.world.facts import build_knowledge_base
    from qslaw.embedded.world.filler import practice_item

    kb, rng = build_knowledge_base(0), random.Random(seed)
    hits, counts = Counter(), Counter()
    for _ in range(items):
        question, answer = practice_item(rng, kb).rsplit("? ", 1)
        kind, words = item_kind(question), answer.split()
        lead = LEADS[kind]
        ids = tokenizer(f"{question}? {' '.join(words[:lead])}", return_tensors="pt").input_ids
        out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
        got = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        counts[kind] += 1
        hits[kind] += got.startswith(words[lead].strip("."))
    return {"total": sum(hits.values()) / max(1, sum(counts.values())),
            **{kind: hits[kind] / counts[kind] for kind in sorted(counts)}}


def fact_sentences(kb: object) -> list[tuple[str, str, str, str]]:
    """``(relation, prefix, value, fact key)`` of every forward fact, worded as the NO solutions word it."""
    from qslaw.embedded.world.facts import fact_keywords, first_phrasing

    items = []
    for key in (k for k in kb.fact_split if not k.startswith("rime:")):
        value = fact_keywords(kb, key)[-1]
        items.append((key.split(":")[2], first_phrasing(kb, key).removesuffix(f" {value}."), value, key))
    return items


@torch.inference_mode()
def recall_accuracy(lm: torch.nn.Module, tokenizer: object, seed: int = 0) -> dict:
    """Share of facts whose value greedy decoding writes after the solution's prefix, by relation and overall."""
    from qslaw.embedded.world.facts import build_knowledge_base

    kb = build_knowledge_base(seed)
    hits, counts = Counter(), Counter()
    for relation, prefix, value, key in fact_sentences(kb):
        ids = tokenizer(prefix, return_tensors="pt").input_ids
        target = tokenizer(" " + value, add_special_tokens=False).input_ids
        out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=len(target),
                          do_sample=False)
        ok = out[0, ids.shape[1]:].tolist() == target
        for group in (relation, "total") + (("test",) if kb.fact_split[key] == "test" else ()):
            counts[group] += 1
            hits[group] += ok
    return {group: hits[group] / counts[group] for group in sorted(counts)}


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_dir")
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--seed", type=int, default=987)
    args = parser.parse_args(argv)
    model = LlavaForConditionalGeneration.from_pretrained(args.base_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.base_dir)
    # LlavaForConditionalGeneration runs text-only ids through its language model
    report = {"repeat_top1": repeat_top1(model, content_token_ids(tokenizer), tokenizer.bos_token_id, seed=args.seed),
              "lookup": lookup_accuracy(model, tokenizer),
              "practice": practice_accuracy(model, tokenizer, args.items, args.seed),
              "recall": recall_accuracy(model, tokenizer)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
