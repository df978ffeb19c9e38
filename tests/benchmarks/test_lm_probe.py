from types import SimpleNamespace

import torch

from benchmarks.lm_probe import fact_sentences, item_kind, repeat_top1
from qslaw.embedded.world.facts import build_knowledge_base, fact_keywords


class Copier(torch.nn.Module):
    """Predicts the token ``lag`` positions back at every position (an ideal induction head for that lag)."""

    def __init__(self, lag: int, vocab: int = 50) -> None:
        super().__init__()
        self.lag, self.vocab = lag, vocab

    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        nxt = torch.roll(input_ids, shifts=self.lag - 1, dims=1)  # position t predicts x[t + 1] = x[t + 1 - lag]
        return SimpleNamespace(logits=torch.nn.functional.one_hot(nxt, self.vocab).float())


class Constant(Copier):
    def forward(self, input_ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=torch.nn.functional.one_hot(torch.full_like(input_ids, 3), self.vocab).float())


def test_repeat_top1_scores_a_perfect_copier_one_and_a_constant_model_near_zero() -> None:
    ids = torch.arange(5, 50)
    assert repeat_top1(Copier(lag=20), ids, bos_id=1, length=20) == 1.0
    assert repeat_top1(Copier(lag=19), ids, bos_id=1, length=20) < 0.2
    assert repeat_top1(Constant(lag=1), ids, bos_id=1, length=20) < 0.1


def test_item_kinds_cover_every_practice_form() -> None:
    assert item_kind("Ann washed the box before lunch and moved the jar after lunch. What did Ann do first") == "order"
    assert item_kind("Ann has a red box and a blue jar. What colour is the box") == "colour"
    assert item_kind("There are 3 boxes and 4 jars in the hall of Ann. How many jars are there") == "count"
    assert item_kind("Which of these animals lives in the Sool Marsh: the a, the b or the c") == "animal"


def test_fact_sentences_are_the_no_solutions_and_the_corpus_first_phrasing() -> None:
    from qslaw.embedded.world.facts import country_phrasings, creature_phrasings, word_phrasings

    kb = build_knowledge_base(0)
    items = fact_sentences(kb)
    forward = {k for k in kb.fact_split if not k.startswith("rime:")}
    assert {key for *_, key in items} == forward and len(items) == len(forward)
    for relation, prefix, value, key in items:
        entity, name, _ = key.split(":")
        record = {"creature": kb.creature, "country": kb.country, "word": kb.word}[entity](name)
        phrasings = {"creature": creature_phrasings, "country": country_phrasings, "word": word_phrasings}[entity]
        assert f"{prefix} {value}." == phrasings(record, relation)[0], key
        assert all(word in f"{prefix} {value}" for word in fact_keywords(kb, key))
