"""Text data modules: sequence classification and language modelling.

Both train (or load) their tokenizer in ``__init__``, so ``vocab_size``, ``num_classes`` and ``label_names``
are known when the CLI links them into the model; the tokenised splits are built by ``Dataset.map`` in
``prepare_data`` (one process) and reloaded from the fingerprint cache in ``setup`` (every process).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import datasets
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from zoo.data.batching import (
    BucketBatchSampler,
    FixedWindows,
    PackedSequences,
    PadCollate,
    ResumableDataLoader,
    StreamBatches,
    WindowCollate,
    _world,
    loader_options,
)
from zoo.data.encoding import (
    DEFAULT_MAX_LENGTH,
    EncodeText,
    datasets_cache,
    find_pad_id,
    flat_ids,
    tokenizer_for,
)
from zoo.data.predict_inputs import predict_files_of
from zoo.data.sources import DataFiles, carve_split, check_columns, check_not_empty, load_splits
from zoo.data.splits import SplitDataModule
from zoo.data.tokenizers import EOS, TokenizerKind, id_space_size, require_tokens
from zoo.data.validation import (
    EmptyPolicy,
    RowLocator,
    check_class_labels,
    check_empty_policy,
    check_encoded,
    check_max_length,
    check_stream,
    check_texts,
    count_truncated,
    log_dropped,
    log_truncation,
)
from zoo.errors import DataValidationError, ZooConfigError

_SPLIT_OF_STAGE = {
    "fit": ("train", "validation"),
    "validate": ("validation",),
    "test": ("test",),
    "predict": (),  # predict_files are read by the predict loader, not encoded ahead
}


def resolve_labels(
    splits: datasets.DatasetDict,
    column: str,
    declared: Sequence[str] | None,
    locator: RowLocator | None = None,
) -> tuple[list[str], dict[str, int] | None]:
    """Label names and the name -> id map (``None`` when labels are already ids) for a label column.

    Labels may be names (strings) or ids (integers). With ``declared`` names, every label must be one of
    them (or an id below their count); without, names come from a ``ClassLabel`` feature, the sorted
    names seen in train, or ``"0".."K-1"`` for ids.

    Raises:
        DataValidationError: a label outside the declared (or training) set, naming the split, the first
            rows that hold one (located by ``locator``), the column and the values.
    """
    feature = splits["train"].features[column]
    if declared is None and isinstance(feature, datasets.ClassLabel):
        declared = list(feature.names)
    values = {split: ds.unique(column) for split, ds in splits.items()}
    string_labels = any(isinstance(v, str) for vals in values.values() for v in vals)
    if declared is not None:
        names = [str(n) for n in declared]
        if len(set(names)) != len(names):
            raise ZooConfigError(f"duplicate names in the declared labels {names}")
    elif string_labels:
        names = sorted(str(v) for v in values["train"])
    else:
        names = [str(i) for i in range(int(max(values["train"])) + 1)]
    for split, vals in values.items():
        if string_labels:
            bad = sorted(str(v) for v in vals if str(v) not in names)
        else:
            bad = sorted(v for v in vals if not 0 <= int(v) < len(names))
        if bad:
            rows = [i for i, v in enumerate(splits[split][column]) if (str(v) if string_labels else v) in bad]
            where = (locator or RowLocator()).where(split, rows)
            raise DataValidationError(
                f"labels {bad[:10]} in split {split!r} are outside the label set {names} ({where}, column "
                f"{column!r}); declare all labels with `label_set`, or fix the data (unlabelled test rows "
                "often carry -1)"
            )
    return names, ({n: i for i, n in enumerate(names)} if string_labels else None)


class TextClassificationData(SplitDataModule):
    """Text + label columns -> ``{"input_ids": Long[B,T], "lengths": Long[B], "labels": Long[B]}``.

    Args:
        path: hub name or builder (``csv``, ``json``, ``parquet``, ``text``), as ``datasets.load_dataset``.
        data_files: files for a builder; a dict maps split names (``dev`` is read as ``validation``).
        name: the dataset's configuration name.
        text_column: column of raw text.
        label_column: column of labels (names or ids).
        label_set: the declared label names, in id order (default: read from the data).
        split_map: our split name -> the dataset's (e.g. ``{"validation": "dev"}``).
        validation_fraction: share of train carved (seeded) as validation when there is none.
        tokenizer_type: ``word``, ``bpe`` or ``char``, trained on train on first use.
        tokenizer_file: a saved ``tokenizer.json`` to use instead of training.
        pretrained_tokenizer: a hub model name whose fast tokenizer to use (``Tokenizer.from_pretrained``).
        lowercase: lowercase text before tokenising (trained tokenizers only).
        min_frequency: rarer words map to ``<unk>``.
        max_vocab_size: cap on the trained vocabulary (special tokens included).
        max_length: keep at most this many tokens of a text (``None``: no bound); one line per split logs
            how many texts were cut.
        empty_texts: ``error`` (default) stops on a text that is empty or only whitespace, or has no tokens,
            naming its rows; ``drop`` drops such rows and logs how many.
        batch_size: examples per batch (per process).
        bucket: batch similar lengths together (less padding).
        num_workers: ``DataLoader`` workers (0: load in the training process).
        pin_memory: pin batches (default: when CUDA is available).
        seed: seed of the validation carve and the shuffles.
        cache_dir: root of the caches (datasets, tokenizers); default ``~/.cache/rnn-zoo`` for tokenizers
            and the datasets default for data.
        load_kwargs: extra ``datasets.load_dataset`` arguments (e.g. ``{"delimiter": "\\t"}``).
        predict_files: raw inputs for ``zoo predict -c``: ``.txt`` files (one input per line) or
            ``.csv``/``.jsonl`` files, the text in ``text_column``; read lazily.

    Attributes:
        tokenizer, tokenizer_path, vocab_size, pad_id, num_classes, label_names.
    """

    def __init__(
        self,
        path: str,
        data_files: DataFiles | None = None,
        name: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        label_set: list[str] | None = None,
        split_map: dict[str, str] | None = None,
        validation_fraction: float = 0.1,
        tokenizer_type: TokenizerKind = "word",
        tokenizer_file: str | None = None,
        pretrained_tokenizer: str | None = None,
        lowercase: bool = False,
        min_frequency: int = 1,
        max_vocab_size: int | None = None,
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
        # rows are checked before validation is carved, while they still match the lines of the files
        locator = RowLocator.for_source(path, data_files, split_map, load_kwargs)
        check_columns(splits, [text_column, label_column], what="text classification")
        splits = check_class_labels(splits, label_column, locator)
        splits = check_texts(splits, text_column, locator, empty_texts)
        label_names, _ = resolve_labels(splits, label_column, label_set, locator)
        splits = carve_split(splits, validation_fraction, seed=seed)
        self._init_from_splits(
            splits,
            text_column=text_column,
            label_column=label_column,
            label_set=label_names,
            empty_texts=empty_texts,
            tokenizer_type=tokenizer_type,
            tokenizer_file=tokenizer_file,
            pretrained_tokenizer=pretrained_tokenizer,
            lowercase=lowercase,
            min_frequency=min_frequency,
            max_vocab_size=max_vocab_size,
            max_length=max_length,
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
        text_column: str,
        label_column: str,
        label_set: Sequence[str] | None,
        tokenizer_type: TokenizerKind,
        tokenizer_file: str | None,
        pretrained_tokenizer: str | None,
        lowercase: bool,
        min_frequency: int,
        max_vocab_size: int | None,
        max_length: int | None,
        batch_size: int,
        bucket: bool,
        num_workers: int,
        pin_memory: bool | None,
        seed: int,
        cache_dir: str | None,
        data_key: str | None = None,
        empty_texts: EmptyPolicy = "error",
    ) -> None:
        check_columns(splits, [text_column, label_column], what="text classification")
        check_not_empty(splits)
        self.raw_splits = splits
        self.label_names, self._label_to_id = resolve_labels(splits, label_column, label_set)
        self.num_classes = len(self.label_names)
        self.tokenizer, self.tokenizer_path = tokenizer_for(
            splits["train"],
            text_column,
            task="classification",
            cache_dir=cache_dir,
            kind=tokenizer_type,
            tokenizer_file=tokenizer_file,
            pretrained_tokenizer=pretrained_tokenizer,
            lowercase=lowercase,
            min_frequency=min_frequency,
            max_vocab_size=max_vocab_size,
            data_key=data_key,
        )
        self.vocab_size = id_space_size(self.tokenizer)
        self.pad_id = find_pad_id(self.tokenizer)
        self.text_column, self.label_column, self.max_length = text_column, label_column, max_length
        self.batch_size, self.bucket, self.seed = batch_size, bucket, seed
        self.empty_texts = empty_texts
        self._loader_options = loader_options(num_workers, pin_memory)
        self.encoded: dict[str, datasets.Dataset] = {}
        self.packed: dict[str, PackedSequences] = {}
        self.truncated: dict[str, int] = {}

    def encode_function(self) -> EncodeText:
        """The (picklable) batched map function that tokenises text and converts labels."""
        return EncodeText(
            self.tokenizer,
            self.text_column,
            max_length=self.max_length,
            label_column=self.label_column,
            label_to_id=self._label_to_id,
        )

    def _encode(self, split: str) -> datasets.Dataset:
        ds = self.raw_splits[split]
        encoded = ds.map(
            self.encode_function(),
            batched=True,
            batch_size=2000,
            remove_columns=ds.column_names,
            desc=f"tokenising {split}",
        )
        return checked_encoding(self, split, encoded, self.text_column, "texts")

    def prepare_data(self) -> None:
        for split in self.raw_splits:
            self._encode(split)

    def setup(self, stage: str | None = None) -> None:
        wanted = _SPLIT_OF_STAGE.get(stage or "", tuple(self.raw_splits))
        for split in wanted:
            if split in self.raw_splits and split not in self.encoded:
                self.encoded[split] = self._encode(split)
                self.packed[split] = PackedSequences.from_arrow(
                    self.encoded[split], ["input_ids"], ["labels"]
                )

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.raw_splits:
            raise ValueError(f"no {split!r} split; the splits are {list(self.raw_splits)}")
        if split not in self.packed:
            self.setup(None)
        ds = self.packed[split]
        collate = PadCollate({"input_ids": self.pad_id}, scalar_keys=("labels",))
        return padded_loader(
            ds, collate, self.batch_size, train, self.bucket, self.seed, self._loader_options
        )


def checked_encoding(
    module: Any, split: str, encoded: datasets.Dataset, column: str, unit: str
) -> datasets.Dataset:
    """An encoded split after the checks every padded module runs: no empty sequence, truncation logged.

    ``module`` has ``raw_splits``, ``empty_texts``, ``max_length`` and a ``truncated`` dict that records
    each split's count; the counts are logged once per split, when first made.
    """
    encoded, dropped = check_encoded(encoded, module.raw_splits[split], split, column, module.empty_texts)
    if split not in module.truncated:
        module.truncated[split] = count_truncated(encoded)
        if dropped:
            log_dropped(split, dropped, dropped + len(encoded), "with no tokens")
        log_truncation(split, module.truncated[split], len(encoded), module.max_length, unit)
    return encoded


def padded_loader(
    ds: PackedSequences,
    collate: PadCollate,
    batch_size: int,
    train: bool,
    bucket: bool,
    seed: int,
    options: Mapping[str, Any],
) -> DataLoader:
    """A loader over packed sequences: bucketed batches, or plain ones."""
    sampler = RandomSampler(ds) if train else SequentialSampler(ds)
    if bucket:
        lengths = ds.lengths()
        batch_sampler = BucketBatchSampler(sampler, batch_size, drop_last=False, lengths=lengths, seed=seed)
        return ResumableDataLoader(ds, batch_sampler=batch_sampler, collate_fn=collate, **options)
    return ResumableDataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=collate, **options)


class LanguageModelingData(SplitDataModule):
    """Text -> token stream -> ``{"input_ids": Long[B,T], "targets": Long[B,T], "reset": Bool[]}``.

    ``mode="stream"``: truncated BPTT, each batch row continues the previous batch's row (reset marks the
    first window of each pass); ``mode="shuffled"``: shuffled, independent windows (reset on every batch).
    With ``add_eos`` every row of the text column (a line, for the ``text`` builder) ends with ``<eos>``, as
    in the PTB setup of Zaremba et al. (2014).

    Args:
        path: hub name or builder (default ``text``: one row per line).
        data_files: files for a builder; a dict maps split names.
        name: the dataset's configuration name.
        text_column: column of raw text.
        split_map: our split name -> the dataset's.
        validation_fraction: share of train (its last rows, in order) used as validation when there is none.
        tokenizer_type: ``word``, ``bpe`` or ``char``.
        tokenizer_file: a saved ``tokenizer.json`` to use instead of training.
        pretrained_tokenizer: a hub model name whose fast tokenizer to use.
        lowercase: lowercase before tokenising (trained tokenizers only).
        min_frequency: rarer words map to ``<unk>``.
        max_vocab_size: cap on the trained vocabulary (special tokens included).
        add_eos: end every row with ``<eos>``.
        seq_len: BPTT window length.
        batch_size: rows per batch (per process).
        mode: ``stream`` or ``shuffled``.
        num_workers: workers for the shuffled mode (stream batches are views and need none).
        pin_memory: pin batches (default: when CUDA is available).
        seed: seed of the shuffles and the validation carve.
        cache_dir: root of the caches (see :class:`TextClassificationData`).
        load_kwargs: extra ``datasets.load_dataset`` arguments.
        predict_files: raw inputs for ``zoo predict -c``: ``.txt`` files (one input per line) or
            ``.csv``/``.jsonl`` files, the text in ``text_column``; read lazily.

    Attributes:
        tokenizer, tokenizer_path, vocab_size, pad_id, eos_id (``None`` without ``add_eos``),
        bos_id (always ``None``: streams need no start token).
    """

    predict_keep_end = True  # each line of predict_files is a prompt: its last tokens lead on

    def __init__(
        self,
        path: str = "text",
        data_files: DataFiles | None = None,
        name: str | None = None,
        text_column: str = "text",
        split_map: dict[str, str] | None = None,
        validation_fraction: float = 0.1,
        tokenizer_type: TokenizerKind = "word",
        tokenizer_file: str | None = None,
        pretrained_tokenizer: str | None = None,
        lowercase: bool = False,
        min_frequency: int = 1,
        max_vocab_size: int | None = None,
        add_eos: bool = True,
        seq_len: int = 35,
        batch_size: int = 20,
        mode: Literal["stream", "shuffled"] = "stream",
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
        if mode not in ("stream", "shuffled"):
            raise ValueError(f"mode must be 'stream' or 'shuffled', got {mode!r}")
        splits = load_splits(
            path,
            data_files,
            name,
            split_map=split_map,
            validation_fraction=validation_fraction,
            seed=seed,
            shuffle_carve=False,
            cache_dir=datasets_cache(cache_dir),
            **(load_kwargs or {}),
        )
        check_columns(splits, [text_column], what="language modelling")
        check_not_empty(splits, source=path)
        self.raw_splits = splits
        eos = add_eos and pretrained_tokenizer is None and tokenizer_file is None
        self.tokenizer, self.tokenizer_path = tokenizer_for(
            splits["train"],
            text_column,
            task="language-model",
            cache_dir=cache_dir,
            kind=tokenizer_type,
            tokenizer_file=tokenizer_file,
            pretrained_tokenizer=pretrained_tokenizer,
            lowercase=lowercase,
            min_frequency=min_frequency,
            max_vocab_size=max_vocab_size,
            eos=eos,
        )
        self.vocab_size = id_space_size(self.tokenizer)
        self.pad_id = find_pad_id(self.tokenizer)
        self.bos_id: int | None = None
        self.eos_id: int | None = require_tokens(self.tokenizer, [EOS])[0] if add_eos else None
        self.text_column, self.seq_len, self.batch_size, self.mode = text_column, seq_len, batch_size, mode
        self.seed = seed
        self._loader_options = loader_options(num_workers, pin_memory)
        self.streams: dict[str, Any] = {}

    def _encode(self, split: str) -> datasets.Dataset:
        ds = self.raw_splits[split]
        append = [self.eos_id] if self.eos_id is not None else []
        return ds.map(
            EncodeText(self.tokenizer, self.text_column, append_ids=append),
            batched=True,
            batch_size=2000,
            remove_columns=ds.column_names,
            desc=f"tokenising {split}",
        )

    def _stream(self, split: str) -> Any:
        stream = flat_ids(self._encode(split))
        world, _ = _world(None, None)
        check_stream(split, stream.numel(), self.batch_size * world)
        return stream

    def prepare_data(self) -> None:
        for split in self.raw_splits:
            self._stream(split)  # checked here too: before the logger opens a run

    def setup(self, stage: str | None = None) -> None:
        wanted = _SPLIT_OF_STAGE.get(stage or "", tuple(self.raw_splits))
        for split in wanted:
            if split in self.raw_splits and split not in self.streams:
                self.streams[split] = self._stream(split)

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.raw_splits:
            raise ValueError(f"no {split!r} split; the splits are {list(self.raw_splits)}")
        if split not in self.streams:
            self.setup(None)
        stream = self.streams[split]
        if self.mode == "stream" or not train:
            # evaluation always reads the stream in order, so perplexity matches the usual protocol
            data: Dataset = StreamBatches(stream, self.batch_size, self.seq_len)
            return ResumableDataLoader(data, batch_size=None, pin_memory=self._loader_options["pin_memory"])
        windows = FixedWindows(stream, self.seq_len)
        return ResumableDataLoader(
            windows,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=WindowCollate(),
            **self._loader_options,
        )
