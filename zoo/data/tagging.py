"""Token tagging data: word lists with one tag per word (e.g. UPOS from CoNLL-U treebanks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import pyarrow.compute as pc
from torch.utils.data import DataLoader

from zoo.data.batching import IGNORE_INDEX, PackedSequences, PadCollate, loader_options
from zoo.data.chars import (
    CHAR_PAD_ID,
    DEFAULT_MAX_WORD_CHARS,
    EncodeChars,
    build_char_vocab,
    check_max_word_chars,
)
from zoo.data.encoding import DEFAULT_MAX_LENGTH, EncodeWords, datasets_cache, find_pad_id, tokenizer_for
from zoo.data.predict_inputs import predict_files_of
from zoo.data.sources import DataFiles, carve_split, check_columns, check_not_empty, load_splits
from zoo.data.splits import SplitDataModule
from zoo.data.text import _SPLIT_OF_STAGE, checked_encoding, padded_loader
from zoo.data.tokenizers import UNK, TokenizerKind, id_space_size
from zoo.data.validation import (
    EmptyPolicy,
    RowLocator,
    check_empty_policy,
    check_max_length,
    check_word_rows,
)
from zoo.errors import DataValidationError


def resolve_tags(
    splits: datasets.DatasetDict,
    column: str,
    declared: Sequence[str] | None,
    locator: RowLocator | None = None,
) -> list[str]:
    """Tag names in id order: ``declared``, else the sorted tags seen in train.

    Raises:
        DataValidationError: a tag (in any split) outside that set, naming the split, the first rows that
            hold one (located by ``locator``) and the column.
    """
    seen: dict[str, set[str]] = {}
    for split, ds in splits.items():
        table = ds.with_format("arrow")[:]
        seen[split] = {str(t) for t in pc.unique(pc.list_flatten(table.column(column))).to_pylist()}
    names = [str(t) for t in declared] if declared is not None else sorted(seen["train"])
    for split, tags in seen.items():
        bad = sorted(tags - set(names))
        if bad:
            rows = [i for i, row in enumerate(splits[split][column]) if set(map(str, row)) - set(names)]
            where = (locator or RowLocator()).where(split, rows)
            raise DataValidationError(
                f"tags {bad[:10]} in split {split!r} are outside the tag set {names} ({where}, column "
                f"{column!r}); declare them in `tag_set`"
            )
    return names


class TokenTaggingData(SplitDataModule):
    """Word + tag lists -> ``{"input_ids": Long[B,T], "lengths": Long[B], "tags": Long[B,T]}``.

    Every word gets exactly one id (its first sub-token; a word-level tokenizer maps words one to one) and
    one tag; padding positions carry ``-100`` in ``tags`` so losses and metrics ignore them. With
    ``chars=True`` a batch also holds ``char_ids`` ``Long[B, T * max_word_chars]``: each word's character
    ids (``max_word_chars`` per word, see :func:`zoo.data.chars.word_char_ids`), for
    ``TokenTagger(char_encoder=...)``.

    Args:
        path: ``conllu`` for CoNLL-U files (columns ``tokens``, ``upos``), or a hub name / builder whose rows
            hold word lists and tag lists (e.g. ``json``).
        data_files: files; a dict maps split names (``dev`` is read as ``validation``).
        name: the dataset's configuration name.
        tokens_column: column of word lists.
        tags_column: column of tag lists (default: ``upos`` for CoNLL-U, else ``tags``).
        tag_set: the declared tag names in id order (default: sorted tags of train). Integer tags (a
            ``ClassLabel`` sequence) use the feature's names.
        split_map: our split name -> the dataset's.
        validation_fraction: share of train carved (seeded) as validation when there is none.
        tokenizer_type: ``word`` (default), ``bpe`` or ``char``; trained on the training words.
        tokenizer_file: a saved ``tokenizer.json`` to use instead of training.
        pretrained_tokenizer: a hub model name whose fast tokenizer to use.
        lowercase: lowercase words before looking them up.
        min_frequency: rarer words map to ``<unk>``.
        max_vocab_size: cap on the trained vocabulary (special tokens included).
        chars: also give each word's character ids (``char_ids``), from a character vocabulary of the
            training words (``char_vocab``, linked to the model and saved with it).
        max_word_chars: characters kept per word; a longer word keeps its first and last ones.
        max_length: keep at most this many words of a sentence (``None``: no bound); one line per split
            logs how many sentences were cut.
        empty_texts: ``error`` (default) stops on a row with no words, naming it; ``drop`` drops such rows
            and logs how many.
        batch_size: sentences per batch (per process).
        bucket: batch similar lengths together.
        num_workers: ``DataLoader`` workers.
        pin_memory: pin batches (default: when CUDA is available).
        seed: seed of the carve and the shuffles.
        cache_dir: root of the caches.
        load_kwargs: extra ``datasets.load_dataset`` arguments.
        predict_files: raw inputs for ``zoo predict -c``: ``.txt`` files (one input per line) or
            ``.csv``/``.jsonl`` files with a ``text`` column, read lazily.

    Attributes:
        tokenizer, tokenizer_path, vocab_size, pad_id, num_tags, tag_names; char_vocab (``None`` unless
        ``chars``) and max_word_chars.
    """

    def __init__(
        self,
        path: str = "conllu",
        data_files: DataFiles | None = None,
        name: str | None = None,
        tokens_column: str = "tokens",
        tags_column: str | None = None,
        tag_set: list[str] | None = None,
        split_map: dict[str, str] | None = None,
        validation_fraction: float = 0.1,
        tokenizer_type: TokenizerKind = "word",
        tokenizer_file: str | None = None,
        pretrained_tokenizer: str | None = None,
        lowercase: bool = False,
        min_frequency: int = 1,
        max_vocab_size: int | None = None,
        chars: bool = False,
        max_word_chars: int = DEFAULT_MAX_WORD_CHARS,
        max_length: int | None = DEFAULT_MAX_LENGTH,
        empty_texts: EmptyPolicy = "error",
        batch_size: int = 32,
        bucket: bool = True,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
        load_kwargs: dict[str, Any] | None = None,
        predict_files: str | list[str] | None = None,
    ) -> None:
        super().__init__()
        # not a hyperparameter: `zoo predict` logs into the fit's run, which has the fit's value
        self.save_hyperparameters(ignore=["predict_files"])
        self.predict_files = predict_files_of(predict_files)
        check_max_length(max_length)
        check_max_word_chars(max_word_chars)
        check_empty_policy(empty_texts)
        splits = load_splits(
            path,
            data_files,
            name,
            split_map=split_map,
            carve_validation=False,
            cache_dir=datasets_cache(cache_dir),
            **(load_kwargs or {}),
        )
        tags_column = tags_column or ("upos" if path == "conllu" else "tags")
        # rows are checked before validation is carved, while they still match the lines of the files
        check_columns(splits, [tokens_column, tags_column], what="token tagging")
        locator = RowLocator.for_source(path, data_files, split_map, load_kwargs)
        splits = check_word_rows(splits, tokens_column, tags_column, locator, empty_texts)
        if not isinstance(
            getattr(splits["train"].features[tags_column], "feature", None), datasets.ClassLabel
        ):
            tag_set = resolve_tags(splits, tags_column, tag_set, locator)
        splits = carve_split(splits, validation_fraction, seed=seed)
        self._init_from_splits(
            splits,
            tokens_column=tokens_column,
            tags_column=tags_column,
            tag_set=tag_set,
            tokenizer_type=tokenizer_type,
            tokenizer_file=tokenizer_file,
            pretrained_tokenizer=pretrained_tokenizer,
            lowercase=lowercase,
            min_frequency=min_frequency,
            max_vocab_size=max_vocab_size,
            chars=chars,
            max_word_chars=max_word_chars,
            max_length=max_length,
            empty_texts=empty_texts,
            batch_size=batch_size,
            bucket=bucket,
            num_workers=num_workers,
            pin_memory=pin_memory,
            seed=seed,
            cache_dir=cache_dir,
        )

    def _init_from_splits(
        self,
        splits: datasets.DatasetDict,
        *,
        tokens_column: str,
        tags_column: str,
        tag_set: Sequence[str] | None,
        tokenizer_type: TokenizerKind,
        tokenizer_file: str | None,
        pretrained_tokenizer: str | None,
        lowercase: bool,
        min_frequency: int,
        max_vocab_size: int | None,
        max_length: int | None,
        batch_size: int,
        chars: bool = False,
        max_word_chars: int = DEFAULT_MAX_WORD_CHARS,
        empty_texts: EmptyPolicy = "error",
        bucket: bool,
        num_workers: int,
        pin_memory: bool | None,
        seed: int,
        cache_dir: str | None,
    ) -> None:
        check_columns(splits, [tokens_column, tags_column], what="token tagging")
        check_not_empty(splits)
        feature = splits["train"].features[tags_column]
        inner = getattr(feature, "feature", None)
        if isinstance(inner, datasets.ClassLabel):
            # integer tags: turn them into their names, so one code path checks and maps them
            tag_set = tag_set or list(inner.names)
            splits = datasets.DatasetDict(
                {
                    k: v.cast_column(tags_column, datasets.Sequence(datasets.Value("string")))
                    for k, v in splits.items()
                }
            )
            splits = datasets.DatasetDict(
                {
                    k: v.map(_IdsToNames(tags_column, list(inner.names)), batched=True)
                    for k, v in splits.items()
                }
            )
        self.raw_splits = splits
        self.tag_names = resolve_tags(splits, tags_column, tag_set)
        self.num_tags = len(self.tag_names)
        self.tokenizer, self.tokenizer_path = tokenizer_for(
            splits["train"],
            tokens_column,
            task="tagging",
            cache_dir=cache_dir,
            kind=tokenizer_type,
            tokenizer_file=tokenizer_file,
            pretrained_tokenizer=pretrained_tokenizer,
            lowercase=lowercase,
            min_frequency=min_frequency,
            max_vocab_size=max_vocab_size,
            words=True,
        )
        self.vocab_size = id_space_size(self.tokenizer)
        self.pad_id = find_pad_id(self.tokenizer)
        unk = self.tokenizer.token_to_id(UNK)
        self.unk_id = int(unk) if unk is not None else self.pad_id
        self.tokens_column, self.tags_column, self.max_length = tokens_column, tags_column, max_length
        self.batch_size, self.bucket, self.seed = batch_size, bucket, seed
        self._loader_options = loader_options(num_workers, pin_memory)
        self.encoded: dict[str, datasets.Dataset] = {}
        self.packed: dict[str, PackedSequences] = {}
        self.truncated: dict[str, int] = {}
        self.empty_texts = empty_texts
        self.max_word_chars = max_word_chars
        self.char_vocab: list[str] | None = None
        if chars:
            train_words = pc.list_flatten(splits["train"].with_format("arrow")[:].column(tokens_column))
            self.char_vocab = build_char_vocab(map(str, pc.unique(train_words).to_pylist()))

    def encode_function(self) -> EncodeWords | _EncodeWordsAndChars:
        """The (picklable) batched map function: words -> ids (and character ids), tags -> tag ids."""
        words = EncodeWords(
            self.tokenizer,
            self.tokens_column,
            self.tags_column,
            {t: i for i, t in enumerate(self.tag_names)},
            unk_id=self.unk_id,
            max_length=self.max_length,
        )
        if self.char_vocab is None:
            return words
        chars = EncodeChars(self.tokens_column, self.char_vocab, self.max_word_chars, self.max_length)
        return _EncodeWordsAndChars(words, chars)

    def _sequence_pads(self) -> dict[str, int]:
        pads = {"input_ids": self.pad_id, "tags": IGNORE_INDEX}
        if self.char_vocab is not None:
            pads["char_ids"] = CHAR_PAD_ID
        return pads

    def _encode(self, split: str) -> datasets.Dataset:
        ds = self.raw_splits[split]
        encoded = ds.map(
            self.encode_function(),
            batched=True,
            batch_size=1000,
            remove_columns=ds.column_names,
            desc=f"encoding {split}",
        )
        return checked_encoding(self, split, encoded, self.tokens_column, "sentences")

    def prepare_data(self) -> None:
        for split in self.raw_splits:
            self._encode(split)

    def setup(self, stage: str | None = None) -> None:
        wanted = _SPLIT_OF_STAGE.get(stage or "", tuple(self.raw_splits))
        for split in wanted:
            if split in self.raw_splits and split not in self.encoded:
                self.encoded[split] = self._encode(split)
                self.packed[split] = PackedSequences.from_arrow(
                    self.encoded[split], list(self._sequence_pads())
                )

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.raw_splits:
            raise ValueError(f"no {split!r} split; the splits are {list(self.raw_splits)}")
        if split not in self.packed:
            self.setup(None)
        collate = PadCollate(self._sequence_pads())
        return padded_loader(
            self.packed[split], collate, self.batch_size, train, self.bucket, self.seed, self._loader_options
        )


class _IdsToNames:
    """Batched map: integer tag lists -> tag name lists."""

    def __init__(self, column: str, names: list[str]) -> None:
        self.column, self.names = column, names

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {self.column: [[self.names[int(t)] for t in row] for row in batch[self.column]]}


class _EncodeWordsAndChars:
    """Batched map: the word encoding plus each word's character ids."""

    def __init__(self, words: EncodeWords, chars: EncodeChars) -> None:
        self.words, self.chars = words, chars

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {**self.words(batch), **self.chars(batch)}
