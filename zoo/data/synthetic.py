"""Memory tasks made on the fly from a seed (no files): the cuisine story, the copy task, the adding problem.

- :class:`CuisineMemoryData`: a sentence names a dish early ("we ordered samosa ..."), ``distance``
  filler words follow, and the label is the dish's cuisine ("Indian"). Accuracy against ``distance``
  shows how long a cell remembers.
- :class:`CopyTaskData`: read a row of symbols, wait ``delay`` steps, write them back (Hochreiter &
  Schmidhuber 1997; in the form of Arjovsky, Shah & Bengio 2016, arXiv:1511.06464).
- :class:`AddingProblemData`: a sequence of (value, marker) pairs; the target is the sum of the two marked
  values (Hochreiter & Schmidhuber 1997).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import datasets
import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.batching import IGNORE_INDEX, PadCollate, ResumableDataLoader, loader_options
from zoo.data.predict_inputs import predict_files_of
from zoo.data.splits import SplitDataModule
from zoo.data.text import TextClassificationData
from zoo.data.tokenizers import cache_key

CUISINES: dict[str, tuple[str, ...]] = {
    "Indian": ("samosa", "biryani", "dosa", "paneer", "naan", "dal"),
    "Italian": ("pizza", "risotto", "lasagna", "gnocchi", "tiramisu", "carbonara"),
    "Japanese": ("sushi", "ramen", "tempura", "udon", "sashimi", "okonomiyaki"),
    "Mexican": ("tacos", "burritos", "enchiladas", "guacamole", "quesadillas", "tamales"),
    "Chinese": ("dumplings", "wontons", "chow-mein", "kung-pao", "mapo-tofu", "char-siu"),
    "French": ("croissants", "ratatouille", "crepes", "quiche", "cassoulet", "bouillabaisse"),
    "Thai": ("pad-thai", "tom-yum", "som-tam", "massaman", "green-curry", "satay"),
    "Greek": ("moussaka", "souvlaki", "gyros", "spanakopita", "tzatziki", "baklava"),
}
_OPENINGS = (
    "we ordered",
    "my friend cooked",
    "they served us",
    "she recommended the",
    "i tried some",
    "our neighbours brought",
    "he made",
    "the chef prepared",
)
# Neutral prose: filler words are drawn from it in order, from a random start, so they read like English
# and carry nothing about the cuisine.
_FILLER_TEXT = (
    "and then we talked for a long while about the weather and the traffic on the way home and about the "
    "new film that everyone seems to like although nobody could remember who was in it or where it was made "
    "while the rain kept falling outside and the lights of the street came on one after another as the "
    "evening went slowly by and somebody told a story about a trip to the coast last summer with a car that "
    "broke down twice before they reached the little town by the sea"
)
_FILLER = _FILLER_TEXT.split()
_CLOSINGS = ("so the cuisine was", "which means the food was", "and so that meal was")


def cuisine_sentence(rng: random.Random, cuisine: str, distance: int) -> str:
    """One example: an opening naming a dish of ``cuisine``, ``distance`` filler words, a closing phrase."""
    dish = rng.choice(CUISINES[cuisine])
    start = rng.randrange(len(_FILLER))
    filler = [_FILLER[(start + k) % len(_FILLER)] for k in range(distance)]
    return " ".join([rng.choice(_OPENINGS), dish, *filler, rng.choice(_CLOSINGS)])


def make_cuisine_split(
    size: int, distance: int, max_distance: int | None, seed: int, cuisines: Sequence[str]
) -> dict[str, list]:
    """``size`` examples with balanced labels (ids into ``cuisines``) and filler distances in
    ``[distance, max_distance]``."""
    rng = random.Random(seed)
    labels = [i % len(cuisines) for i in range(size)]
    rng.shuffle(labels)
    hi = distance if max_distance is None else max_distance
    texts = [cuisine_sentence(rng, cuisines[y], rng.randint(distance, hi)) for y in labels]
    return {"text": texts, "label": labels}


class CuisineMemoryData(TextClassificationData):
    """The cuisine memory task as a text classification data module (same batches and attributes).

    Args:
        distance: filler words between the dish and the end of the sentence.
        max_distance: if set, each example draws its distance uniformly from ``[distance, max_distance]``.
        eval_distance: if set, every validation and test example has exactly this many filler words (e.g.
            train on a range of distances, report accuracy at the longest one).
        num_cuisines: how many cuisines (classes), from the first of :data:`CUISINES` (2 to 8).
        train_size: training examples.
        val_size: validation examples.
        test_size: test examples.
        batch_size: examples per batch.
        num_workers: ``DataLoader`` workers.
        pin_memory: pin batches (default: when CUDA is available).
        seed: seed of the generator (splits use ``seed``, ``seed + 1``, ``seed + 2``) and the shuffles.
        cache_dir: where the trained ``tokenizer.json`` is kept (default ``~/.cache/rnn-zoo``).
        predict_files: raw inputs for ``zoo predict -c``: ``.txt`` files (one input per line) or
            ``.csv``/``.jsonl`` files with a ``text`` column, read lazily.

    Attributes:
        tokenizer, tokenizer_path, vocab_size, pad_id, num_classes, label_names (cuisine names).
    """

    def __init__(
        self,
        distance: int = 10,
        max_distance: int | None = None,
        eval_distance: int | None = None,
        num_cuisines: int = 8,
        train_size: int = 2000,
        val_size: int = 500,
        test_size: int = 500,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
        predict_files: str | list[str] | None = None,
    ) -> None:
        L.LightningDataModule.__init__(self)
        # not a hyperparameter: `zoo predict` logs into the fit's run, which has the fit's value
        self.save_hyperparameters(ignore=["predict_files"])
        self.predict_files = predict_files_of(predict_files)
        if distance < 0 or (max_distance is not None and max_distance < distance):
            raise ValueError(f"need 0 <= distance <= max_distance, got {distance=}, {max_distance=}")
        if eval_distance is not None and eval_distance < 0:
            raise ValueError(f"eval_distance must be >= 0, got {eval_distance}")
        if not 2 <= num_cuisines <= len(CUISINES):
            raise ValueError(f"num_cuisines must be in [2, {len(CUISINES)}], got {num_cuisines}")
        for size_name, size in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
            if size < 1:
                raise ValueError(f"{size_name} must be >= 1, got {size}")
        cuisines = list(CUISINES)[:num_cuisines]
        self.distance, self.max_distance, self.eval_distance = distance, max_distance, eval_distance
        sizes = {"train": train_size, "validation": val_size, "test": test_size}
        ranges = {split: (distance, max_distance) for split in sizes}
        if eval_distance is not None:
            ranges["validation"] = ranges["test"] = (eval_distance, None)
        features = datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=cuisines)}
        )
        splits = datasets.DatasetDict(
            {
                split: datasets.Dataset.from_dict(
                    make_cuisine_split(size, *ranges[split], seed + k, cuisines), features=features
                )
                for k, (split, size) in enumerate(sizes.items())
            }
        )
        self._init_from_splits(
            splits,
            text_column="text",
            label_column="label",
            label_set=cuisines,
            tokenizer_type="word",
            tokenizer_file=None,
            pretrained_tokenizer=None,
            lowercase=True,
            min_frequency=1,
            max_vocab_size=None,
            max_length=None,
            batch_size=batch_size,
            bucket=max_distance is not None,
            num_workers=num_workers,
            pin_memory=pin_memory,
            seed=seed,
            cache_dir=cache_dir,
            data_key=cache_key("cuisine", distance, max_distance, cuisines, train_size, seed),
        )


class _TensorDictDataset(Dataset):
    """Items ``{key: tensor[i]}`` over equally long tensors."""

    def __init__(self, **tensors: Tensor) -> None:
        self.tensors = tensors
        self.size = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


class _SyntheticSplits(SplitDataModule):
    """Shared loaders for modules that keep one ``Dataset`` per split in ``self.splits``."""

    splits: dict[str, Dataset]
    batch_size: int
    _loader_options: dict
    _collate: object = None

    def _loader(self, split: str, train: bool) -> DataLoader:
        return ResumableDataLoader(
            self.splits[split],
            batch_size=self.batch_size,
            shuffle=train,
            collate_fn=self._collate,  # type: ignore[arg-type]
            **self._loader_options,
        )


class CopyTaskData(_SyntheticSplits):
    """The copy task in the tagging batch format.

    Input: ``copy_length`` random symbols, ``delay - 1`` blanks, a delimiter, ``copy_length`` blanks.
    Tags: blank (tag 0) for the first ``delay + copy_length`` steps, then the symbols in order. Token ids:
    ``<pad>`` 0, blank 1, delimiter 2, symbols from 3; tag ids: blank 0, symbols from 1. With
    ``score_blanks=False`` the blank steps carry no target (``-100``): the loss and the accuracy then count
    the recalled symbols only, the copy task's measure (with blanks, always answering blank already scores
    ``(delay + copy_length) / (delay + 2 * copy_length)``).

    Args:
        copy_length: symbols to remember.
        delay: steps between the last symbol and the end of the delimiter.
        num_symbols: alphabet size.
        train_size: training sequences.
        val_size: validation sequences.
        test_size: test sequences.
        batch_size: sequences per batch.
        num_workers: ``DataLoader`` workers.
        pin_memory: pin batches (default: when CUDA is available).
        seed: generator seed.
        score_blanks: give the blank steps their target (tag 0); ``False``: only the recalled symbols.

    Attributes:
        vocab_size, pad_id, num_tags, tag_names; ``tokenizer`` and ``tokenizer_path`` are ``None`` (ids
        are the data).
    """

    def __init__(
        self,
        copy_length: int = 10,
        delay: int = 20,
        num_symbols: int = 8,
        train_size: int = 2000,
        val_size: int = 200,
        test_size: int = 200,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        score_blanks: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if copy_length < 1 or delay < 1 or num_symbols < 1:
            raise ValueError(
                f"copy_length, delay, num_symbols must be >= 1: {copy_length}, {delay}, {num_symbols}"
            )
        self.copy_length, self.delay, self.num_symbols = copy_length, delay, num_symbols
        self.score_blanks = score_blanks
        self.pad_id, self.blank_id, self.delimiter_id = 0, 1, 2
        self.vocab_size = 3 + num_symbols
        self.tag_names = ["_"] + [f"s{i}" for i in range(num_symbols)]
        self.num_tags = len(self.tag_names)
        self.tokenizer = None
        self.tokenizer_path = None
        self.batch_size = batch_size
        self._loader_options = loader_options(num_workers, pin_memory)
        self._collate = PadCollate({"input_ids": self.pad_id, "tags": IGNORE_INDEX})
        sizes = {"train": train_size, "validation": val_size, "test": test_size}
        self.splits = {s: self._make(n, seed + k) for k, (s, n) in enumerate(sizes.items())}

    def _make(self, size: int, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        k, t = self.copy_length, self.delay
        symbols = torch.randint(0, self.num_symbols, (size, k), generator=g)
        inputs = torch.full((size, t + 2 * k), self.blank_id, dtype=torch.long)
        inputs[:, :k] = symbols + 3
        inputs[:, k + t - 1] = self.delimiter_id
        tags = torch.full((size, t + 2 * k), 0 if self.score_blanks else IGNORE_INDEX, dtype=torch.long)
        tags[:, t + k :] = symbols + 1
        return _TensorDictDataset(input_ids=inputs, tags=tags)


class _StackCollate:
    """Stack ``inputs`` and ``targets`` of the items into a batch."""

    def __call__(self, items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        return {k: torch.stack([it[k] for it in items]) for k in ("inputs", "targets")}


class AddingProblemData(_SyntheticSplits):
    """The adding problem in the time-series batch format.

    Each step carries a value drawn from U(0, 1) and a marker; exactly two steps are marked, one in each
    half of the sequence, and the target is the sum of their values. Predicting the mean (1.0) gives a mean
    squared error of 1/6; a model that remembers does far better.

    Args:
        sequence_length: steps per sequence (``input_length``).
        train_size: training sequences.
        val_size: validation sequences.
        test_size: test sequences.
        batch_size: sequences per batch.
        num_workers: ``DataLoader`` workers.
        pin_memory: pin batches (default: when CUDA is available).
        seed: generator seed.

    Attributes:
        num_features (2), num_targets (1), horizon (1), input_length, target_mean ([0.0]), target_std ([1.0]):
        targets are left in their original units.
    """

    def __init__(
        self,
        sequence_length: int = 50,
        train_size: int = 2000,
        val_size: int = 200,
        test_size: int = 200,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if sequence_length < 2:
            raise ValueError(f"sequence_length must be >= 2 (one marker per half), got {sequence_length}")
        self.input_length = sequence_length
        self.num_features, self.num_targets, self.horizon = 2, 1, 1
        self.target_mean, self.target_std = [0.0], [1.0]
        self.batch_size = batch_size
        self._loader_options = loader_options(num_workers, pin_memory)
        self._collate = _StackCollate()
        sizes = {"train": train_size, "validation": val_size, "test": test_size}
        self.splits = {s: self._make(n, seed + k) for k, (s, n) in enumerate(sizes.items())}

    def _make(self, size: int, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        t = self.input_length
        half = t // 2
        values = torch.rand((size, t), generator=g)
        first = torch.randint(0, half, (size,), generator=g)
        second = torch.randint(half, t, (size,), generator=g)
        markers = torch.zeros((size, t))
        rows = torch.arange(size)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        inputs = torch.stack([values, markers], dim=-1)  # [N, T, 2]
        targets = (values[rows, first] + values[rows, second]).view(size, 1, 1)
        return _TensorDictDataset(inputs=inputs, targets=targets)
