from types import SimpleNamespace

import torch

from benchmarks.vision_probe import KINDS, attribute_accuracy, attribute_ids
from qslaw.embedded.base.caption import CaptionData

VOCAB = 40


class WordTokenizer:
    """One id per known word (after a space); unknown words split into two ids."""

    def __init__(self, words: list[str]) -> None:
        self.ids = {w: i + 10 for i, w in enumerate(words)}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        word = text.strip()
        return {"input_ids": [self.ids[word]] if word in self.ids else [1, 2]}


class PictureReader(torch.nn.Module):
    """Predicts the next caption token right only when the picture is the caption's own (pixel value = pair index)."""

    def __init__(self, data: CaptionData) -> None:
        super().__init__()
        self.data = data

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, **_: object) -> SimpleNamespace:
        nxt = torch.roll(input_ids, shifts=-1, dims=1)
        start = len(self.data.prompt_ids)
        for row, pixels in enumerate(pixel_values):
            own = self.data.caption_ids[int(pixels.flatten()[0])]
            if input_ids[row, start : start + len(own)].tolist() != own:
                nxt[row] = 0  # another pair's picture: guesses token 0 everywhere
        return SimpleNamespace(logits=torch.nn.functional.one_hot(nxt, VOCAB).float())


def test_attribute_ids_keep_one_token_words_with_their_kind() -> None:
    tok = WordTokenizer(["red", "circle", "small", "top", "left", "3"])
    ids = attribute_ids(tok)
    assert {tok.ids[w]: k for w, k in [("red", "colour"), ("circle", "shape"), ("small", "size"), ("top", "row"),
                                      ("left", "column"), ("3", "count")]} == ids
    assert set(ids.values()) <= set(KINDS)


def test_a_model_that_reads_the_picture_scores_only_with_the_right_one() -> None:
    red, circle, blue, square, filler = 10, 11, 12, 13, 20
    kinds = {red: "colour", blue: "colour", circle: "shape", square: "shape"}
    captions = [[filler, red, circle, 2], [filler, blue, square, 2], [filler, blue, circle, 2]]
    pixels = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 3, 2, 2).clone()
    data = CaptionData(prompt_ids=[1, 5], caption_ids=captions, pixel_values=pixels)
    model = PictureReader(data)
    right = attribute_accuracy(model, data, [0, 1, 2], pad_id=0, kinds=kinds, batch_size=2)
    other = attribute_accuracy(model, data, [0, 1, 2], pad_id=0, kinds=kinds, batch_size=2, mismatched=True)
    assert right == {"colour": (3, 3), "shape": (3, 3)}
    assert other == {"colour": (0, 3), "shape": (0, 3)}
