"""The Hugging Face offline convention: with ``HF_HUB_OFFLINE=1`` a hub tokenizer or dataset already in the
local cache loads from it; only a missing one is an error, naming the repository and how to get it (in
Python, and through ``zoo fit``: exit 2 before anything is trained).

The cache entries are laid out as huggingface_hub and datasets write them (checked with their own lookup
functions), in ``tmp_path``: nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import datasets
import pytest
from cli_support import run_zoo, write_tiny_data
from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.file_download import repo_folder_name

from zoo.data.sources import load_splits
from zoo.data.tokenizers import load_pretrained_tokenizer, train_tokenizer
from zoo.errors import ZooConfigError

TEXTS = ["the cat sat on the mat", "a dog sat", "the end"]


def cache_hub_file(cache: Path, repo_id: str, filename: str, content: bytes) -> Path:
    """Write ``filename`` of model repo ``repo_id`` into a hub cache as ``hf_hub_download`` does:
    ``blobs/<sha256>``, ``snapshots/<commit>/<filename>`` linking to it, ``refs/main`` naming the commit."""
    repo = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex commit id
    blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(content)
    link = repo / "snapshots" / commit / filename
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return link


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache in tmp_path, with HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_cached_hub_tokenizer_loads_offline(offline_hub: Path) -> None:
    saved = train_tokenizer(TEXTS, "word")
    link = cache_hub_file(offline_hub, "someorg/word-tok", "tokenizer.json", saved.to_str().encode())
    assert try_to_load_from_cache("someorg/word-tok", "tokenizer.json") == str(link)  # the hub's own lookup
    start = time.perf_counter()
    tok = load_pretrained_tokenizer("someorg/word-tok")
    assert time.perf_counter() - start < 5  # no network retries (about 23 s each when the hub is unreachable)
    assert tok.get_vocab() == saved.get_vocab()
    assert tok.padding is None and tok.truncation is None


def test_a_missing_hub_tokenizer_offline_says_how_to_get_it(offline_hub: Path) -> None:
    with pytest.raises(ZooConfigError) as caught:
        load_pretrained_tokenizer("someorg/not-cached")
    message = str(caught.value)
    assert message.startswith(
        "tokenizer 'someorg/not-cached' (revision main) is not in the Hugging Face cache"
    )
    assert str(offline_hub) in message and "HF_HUB_OFFLINE is set" in message
    assert "hf download someorg/not-cached tokenizer.json" in message
    assert "without HF_HUB_OFFLINE=1" in message and "local tokenizer.json" in message


def test_a_hub_repo_cached_without_a_tokenizer_json_is_named(offline_hub: Path) -> None:
    cache_hub_file(offline_hub, "someorg/slow-only", "config.json", b"{}")
    with pytest.raises(ZooConfigError, match="is not in the Hugging Face cache"):
        load_pretrained_tokenizer("someorg/slow-only")


def cache_hub_dataset(cache: Path, repo_id: str, csv: Path) -> None:
    """Prepare ``repo_id`` in a datasets cache as ``load_dataset(repo_id)`` leaves it after a first online
    run (``<org>___<name>/default/<version>/<hash>/<name>-train.arrow``), by running the csv builder with the
    repository's identity."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.csv.csv import Csv

    files = DataFilesDict.from_patterns({"train": [str(csv)]})
    name = repo_id.split("/")[1]
    builder = Csv(
        cache_dir=str(cache), dataset_name=name, data_files=files, hash="0" * 16, config_id="default"
    )
    builder.repo_id = repo_id  # set after __init__: its check wants hub URLs for the files of a repo
    builder._cache_dir = builder._build_cache_dir()
    builder.download_and_prepare()


def test_a_cached_hub_dataset_loads_offline(offline_hub: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    csv = tmp_path / "train.csv"
    csv.write_text("text,label\n" + "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    cache = tmp_path / "datasets"
    cache_hub_dataset(cache, "someorg/reviews", csv)
    splits = load_splits("someorg/reviews", cache_dir=str(cache))
    assert sorted(splits) == ["train", "validation"]
    assert len(splits["train"]) + len(splits["validation"]) == 20
    assert splits["train"].column_names == ["text", "label"]


def test_a_missing_hub_dataset_offline_says_how_to_get_it(
    offline_hub: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "datasets"
    with pytest.raises(ZooConfigError) as caught:
        load_splits("someorg/not-cached", name="en", cache_dir=str(cache))
    message = str(caught.value)
    assert message.startswith(
        f"dataset 'someorg/not-cached' (configuration 'en') is not in the datasets cache {cache} and "
        "HF_HUB_OFFLINE is set"
    )
    assert "with network access" in message and "--data.data_files" in message


def test_a_file_builder_without_data_files_asks_for_them() -> None:
    with pytest.raises(ZooConfigError, match=r"path='csv' reads local files but no data_files were given"):
        load_splits("csv")


@pytest.mark.slow
def test_fit_with_a_cached_hub_tokenizer_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    tok = train_tokenizer(
        ["good bad film number fine great poor awful"] + [str(i) for i in range(60)], "word"
    )
    cache_hub_file(cache, "someorg/reviews-tok", "tokenizer.json", tok.to_str().encode())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_tiny_data("csv", tmp_path / "data")
    result = run_zoo(
        "fit", "-c", "classify/csv", "--data.data_files", str(data),
        "--data.pretrained_tokenizer", "someorg/reviews-tok",
        "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]


def test_fit_with_a_missing_hub_tokenizer_offline_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = write_tiny_data("csv", tmp_path / "data")
    result = run_zoo(
        "fit", "-c", "classify/csv", "--data.data_files", str(data),
        "--data.pretrained_tokenizer", "someorg/not-cached", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.output[-3000:]
    first = next(line for line in result.stderr.splitlines() if line.startswith("zoo: error:"))
    assert first.startswith("zoo: error: tokenizer 'someorg/not-cached' (revision main) is not in"), first
    assert "hf download someorg/not-cached tokenizer.json" in first
    assert "Traceback" not in result.stderr
