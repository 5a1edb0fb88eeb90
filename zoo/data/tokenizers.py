"""Train, save and load tokenizers (word-level, BPE, character-level) with the ``tokenizers`` library.

A tokenizer is trained once on the training split, saved as ``tokenizer.json`` in a cache directory keyed by
the data and the settings, and reloaded on every later run, by every process: word-piece style trainers can
give a different vocabulary per process (tokenizers issue #1794), so ranks never train their own. A file lock
makes the first process train while the others wait and load its file.

Special tokens: ``<pad>`` is always id 0 and ``<unk>`` id 1; ``<bos>``/``<eos>`` follow when a task asks for
them. Padding and truncation are switched off: collate functions pad each batch to its own longest sequence.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from filelock import FileLock
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from zoo.errors import DataValidationError, ZooConfigError

TokenizerKind = Literal["word", "bpe", "char"]
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$RNN_ZOO_CACHE`` if set, else ``~/.cache/rnn-zoo``."""
    return Path(os.environ.get("RNN_ZOO_CACHE", Path.home() / ".cache" / "rnn-zoo"))


def special_tokens(bos: bool = False, eos: bool = False) -> list[str]:
    """The special tokens in id order: ``<pad>`` (0), ``<unk>`` (1), then ``<bos>``/``<eos>`` if asked."""
    return [PAD, UNK] + ([BOS] if bos else []) + ([EOS] if eos else [])


def build_untrained(kind: TokenizerKind, lowercase: bool = False) -> Tokenizer:
    """An empty tokenizer of ``kind`` with its normaliser, pre-tokenizer and decoder set."""
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    elif kind == "char":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        # every character (spaces included) is its own token, so decoding is exact
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose 'word', 'bpe' or 'char'")
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    return tok


def train_tokenizer(
    texts: Iterable[str],
    kind: TokenizerKind = "word",
    *,
    lowercase: bool = False,
    min_frequency: int = 1,
    max_vocab_size: int | None = None,
    bos: bool = False,
    eos: bool = False,
) -> Tokenizer:
    """Train a tokenizer on ``texts``.

    Args:
        texts: the training text, one string per example.
        kind: ``"word"`` (whitespace-separated words, rare ones -> ``<unk>``), ``"bpe"`` or ``"char"``.
        lowercase: lowercase before splitting.
        min_frequency: drop words (or merges) seen fewer times.
        max_vocab_size: cap on the vocabulary including special tokens (``None``: no cap; BPE: 8000).
        bos: add ``<bos>`` as a special token.
        eos: add ``<eos>`` as a special token.
    """
    tok = build_untrained(kind, lowercase=lowercase)
    specials = special_tokens(bos=bos, eos=eos)
    trainer: trainers.Trainer
    if kind == "bpe":
        trainer = trainers.BpeTrainer(
            vocab_size=max_vocab_size or 8000,
            min_frequency=min_frequency,
            special_tokens=specials,
            show_progress=False,
        )
    else:
        trainer = trainers.WordLevelTrainer(
            vocab_size=max_vocab_size or 2**31 - 1,
            min_frequency=min_frequency,
            special_tokens=specials,
            show_progress=False,
        )
    tok.train_from_iterator(unicode_texts(texts), trainer=trainer)
    if tok.token_to_id(PAD) != 0:
        raise RuntimeError("tokenizer training did not put <pad> at id 0")
    return plain(tok)


def unicode_texts(texts: Iterable[str]) -> Iterator[str]:
    """Yield ``texts``, refusing one that holds a lone surrogate (it is not text and cannot be encoded).

    Files cannot hold one once decoded, but Python strings can (``errors="surrogateescape"`` decoding,
    ``"\\ud800"`` literals); the tokenizer library would fail on it without saying which text it was.

    Raises:
        DataValidationError: naming the text (1-based) and the character position.
    """
    for number, text in enumerate(texts, start=1):
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise DataValidationError(
                    f"text {number} holds a lone surrogate {text[err.start]!r} at character {err.start + 1}, "
                    "which is not Unicode text; decode the source with errors='replace' or remove it"
                ) from None
        yield text


def id_space_size(tok: Tokenizer) -> int:
    """Rows an embedding needs for ``tok``: the largest id plus one.

    Not ``get_vocab_size()``: when a corpus contains a special token's text as a word (PTB writes
    ``<unk>`` literally), the word-level trainer gives the word a new id and leaves the special's id
    unused, so ids are not contiguous and the largest id equals the vocabulary size.
    """
    return max(tok.get_vocab(with_added_tokens=True).values()) + 1


def plain(tok: Tokenizer) -> Tokenizer:
    """Switch off padding and truncation (they are stored in ``tokenizer.json``); collate pads instead."""
    tok.no_padding()
    tok.no_truncation()
    return tok


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Load a ``tokenizer.json`` with padding and truncation off.

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        ValueError: the file is not a tokenizer the library can read.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"tokenizer file not found: {p}. Pass the path of a saved tokenizer.json, or leave "
            "tokenizer_file unset to train one on the training split"
        )
    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as err:  # the tokenizers library raises a bare Exception for a malformed file
        raise ValueError(
            f"tokenizer file {p} is not a tokenizer.json the tokenizers library can read ({err}). Pass a "
            "file saved by Tokenizer.save, or leave tokenizer_file unset to train one on the training split"
        ) from err
    return plain(tok)


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, not when ``huggingface_hub`` was imported)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    if value is None:
        return bool(constants.HF_HUB_OFFLINE)
    return value.strip().lower() in {"1", "true", "yes", "on"}


def load_pretrained_tokenizer(name: str, revision: str = "main") -> Tokenizer:
    """A hub model's fast tokenizer (its ``tokenizer.json``), or a local ``tokenizer.json`` or folder.

    Hub files follow the Hugging Face convention: they are fetched into, and read from, the Hugging Face
    cache (``HF_HUB_CACHE``, by default ``~/.cache/huggingface/hub``). With ``HF_HUB_OFFLINE=1`` a tokenizer
    already there is loaded without touching the network; only a missing one is an error.

    Raises:
        ZooConfigError: offline and not cached, the repository has no ``tokenizer.json``, or the hub cannot
            be reached or does not know the name; the message says how to get the file.
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    p = Path(name).expanduser()
    if p.is_file() or p.suffix == ".json":
        return load_tokenizer(p)
    if (p / "tokenizer.json").is_file():
        return load_tokenizer(p / "tokenizer.json")
    get_it = (
        f"run once with network access (without HF_HUB_OFFLINE=1) to cache it, or fetch it with "
        f"`hf download {name} tokenizer.json` (`huggingface-cli download` in older huggingface_hub), or pass "
        "the path of a local tokenizer.json instead"
    )
    if hub_offline():
        cached = try_to_load_from_cache(name, "tokenizer.json", revision=revision)
        if isinstance(cached, str):
            return load_tokenizer(cached)
        if cached is not None:  # the cache records that this revision has no such file
            raise ZooConfigError(
                f"{name!r} has no tokenizer.json (no fast tokenizer); pass a local tokenizer.json"
            )
        raise ZooConfigError(
            f"tokenizer {name!r} (revision {revision}) is not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} and HF_HUB_OFFLINE is set: {get_it}"
        )
    try:
        # a network failure falls back to the cached file inside hf_hub_download
        return load_tokenizer(hf_hub_download(name, "tokenizer.json", revision=revision))
    except Exception as err:
        raise ZooConfigError(
            f"could not load the pretrained tokenizer {name!r} from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Check the name and the network; or {get_it}"
        ) from err


def cache_key(*parts: object) -> str:
    """A short stable hash of JSON-serialisable ``parts`` (data fingerprints and settings)."""
    blob = json.dumps([_CACHE_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def train_or_load(
    directory: str | os.PathLike[str],
    texts: Iterable[str] | None = None,
    kind: TokenizerKind = "word",
    *,
    lowercase: bool = False,
    min_frequency: int = 1,
    max_vocab_size: int | None = None,
    bos: bool = False,
    eos: bool = False,
    texts_factory: object = None,
) -> tuple[Tokenizer, Path]:
    """Load ``directory/tokenizer.json`` if it exists, else train it on ``texts`` and save it there.

    The first process to arrive trains under a file lock; the others wait and load the saved file, so all
    processes share one vocabulary. ``texts_factory`` (a zero-argument callable returning the texts) avoids
    reading the data when the file already exists.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    with FileLock(str(directory / "tokenizer.json.lock")):
        if path.is_file():
            return load_tokenizer(path), path
        if texts is None:
            if not callable(texts_factory):
                raise ValueError("train_or_load needs texts or texts_factory when no tokenizer.json exists")
            texts = texts_factory()
        tok = train_tokenizer(
            texts,  # type: ignore[arg-type]
            kind,
            lowercase=lowercase,
            min_frequency=min_frequency,
            max_vocab_size=max_vocab_size,
            bos=bos,
            eos=eos,
        )
        tmp = directory / f"tokenizer.json.tmp{os.getpid()}"
        tok.save(str(tmp))
        os.replace(tmp, path)  # atomic: readers never see a half-written file
    return tok, path


def resolve_tokenizer(
    *,
    directory: str | os.PathLike[str],
    texts_factory: object,
    kind: TokenizerKind,
    tokenizer_file: str | None = None,
    pretrained_tokenizer: str | None = None,
    lowercase: bool = False,
    min_frequency: int = 1,
    max_vocab_size: int | None = None,
    bos: bool = False,
    eos: bool = False,
) -> tuple[Tokenizer, Path]:
    """The tokenizer a data module uses: a given file, a pretrained one (saved to ``directory``), or trained.

    Returns the tokenizer and the path of its ``tokenizer.json``.
    """
    if tokenizer_file is not None and pretrained_tokenizer is not None:
        raise ValueError("give tokenizer_file or pretrained_tokenizer, not both")
    if tokenizer_file is not None:
        return load_tokenizer(tokenizer_file), Path(tokenizer_file).expanduser().resolve()
    if pretrained_tokenizer is not None:
        tok = load_pretrained_tokenizer(pretrained_tokenizer)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "tokenizer.json"
        tok.save(str(path))
        return tok, path
    return train_or_load(
        directory,
        kind=kind,
        lowercase=lowercase,
        min_frequency=min_frequency,
        max_vocab_size=max_vocab_size,
        bos=bos,
        eos=eos,
        texts_factory=texts_factory,
    )


def require_tokens(tok: Tokenizer, tokens: Sequence[str]) -> list[int]:
    """Ids of ``tokens`` in ``tok``; raise ``ValueError`` naming those it lacks."""
    ids = [tok.token_to_id(t) for t in tokens]
    missing = [t for t, i in zip(tokens, ids, strict=True) if i is None]
    if missing:
        raise ValueError(f"tokenizer lacks the special token(s) {missing}; this task needs {list(tokens)}")
    return [int(i) for i in ids if i is not None]
