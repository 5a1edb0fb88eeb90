"""Lightning data modules on Hugging Face datasets and tokenizers, and synthetic memory tasks."""

from zoo.data.batching import (
    BucketBatchSampler,
    FixedWindows,
    PackedSequences,
    PadCollate,
    ResumableDataLoader,
    StreamBatches,
    WindowCollate,
)
from zoo.data.series import TimeSeriesData
from zoo.data.sources import ConlluFormatError, load_splits, read_conllu
from zoo.data.streaming import ShardedStream
from zoo.data.synthetic import AddingProblemData, CopyTaskData, CuisineMemoryData
from zoo.data.tagging import TokenTaggingData
from zoo.data.text import LanguageModelingData, TextClassificationData
from zoo.data.tokenizers import load_pretrained_tokenizer, load_tokenizer, train_tokenizer

__all__ = [
    "AddingProblemData",
    "BucketBatchSampler",
    "ConlluFormatError",
    "CopyTaskData",
    "CuisineMemoryData",
    "FixedWindows",
    "LanguageModelingData",
    "PackedSequences",
    "PadCollate",
    "ResumableDataLoader",
    "ShardedStream",
    "StreamBatches",
    "TextClassificationData",
    "TimeSeriesData",
    "TokenTaggingData",
    "WindowCollate",
    "load_pretrained_tokenizer",
    "load_splits",
    "load_tokenizer",
    "read_conllu",
    "train_tokenizer",
]
