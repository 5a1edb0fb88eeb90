"""The real ``zoo fit`` as two CPU processes (DDP over gloo), checked from what each rank recorded.

Every run is a subprocess of the real entry point (``python -m zoo fit``, which Lightning's launcher
re-runs once per extra rank; or ``torchrun``), with the test-only callback :mod:`ddp_probe` added through
``--trainer.callbacks``. The runs start together when the module's first test asks for one and are
bounded by a timeout that kills the whole process group, so a hang fails a test instead of stalling CI.

Data are made so the checks can be exact: the classification CSV has 101 unique rows (odd: it does not
divide by 2 ranks) and the language-model corpus has a token count that does not divide by the rows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: Wall-clock bound of one run; a DDP run that waits forever at an all-reduce fails here.
TIMEOUT = float(os.environ.get("ZOO_DDP_TEST_TIMEOUT", "240"))
TRAIN_ROWS = 101  # odd on purpose: 2 ranks cannot split it evenly
STREAM_ROWS = 103  # a streamed CSV is one shard: split row-wise, 52 and 51 rows


# -- data ---------------------------------------------------------------------------------------------
def classification_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` unique texts (``a{i} b{j} c{k}`` + filler) labelled by the parity of ``a``: learnable."""
    rng = random.Random(seed)
    filler = [f"w{i}" for i in range(12)]
    rows = []
    for i in range(n):
        words = [f"a{i // 25}", f"b{(i // 5) % 5}", f"c{i % 5}"]
        words += rng.choices(filler, k=rng.randint(1, 8))
        rng.shuffle(words)  # the key words move, so the model must look at the whole sequence
        rows.append((" ".join(words), "even" if (i // 25) % 2 == 0 else "odd"))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))


def markov_corpus(path: Path, lines: int, seed: int) -> None:
    """Lines of a word Markov chain (30 words, 3 successors each): a language model can learn it."""
    rng = random.Random(seed)
    vocab = [f"t{i}" for i in range(30)]
    successors = {w: rng.sample(vocab, 3) for w in vocab}
    word, out = "t0", []
    for _ in range(lines):
        line = []
        for _ in range(rng.randint(5, 15)):
            word = rng.choice(successors[word])
            line.append(word)
        out.append(" ".join(line))
    path.write_text("\n".join(out) + "\n")


# -- running the CLI ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Run:
    """One ``zoo fit`` subprocess (and the ranks it starts), waited for at most ``TIMEOUT`` seconds."""

    def __init__(self, name: str, command: list[str], workdir: Path) -> None:
        self.name, self.workdir = name, workdir
        self.probe = workdir / "probe"
        workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(workdir / "hf"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
            # one thread per process: 2 ranks on 2 cores, no oversubscription
            "OMP_NUM_THREADS": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("WORLD_SIZE", None)
        env.pop("LOCAL_RANK", None)
        self.log = workdir / "output.log"
        self.started = time.monotonic()
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.seconds: float | None = None
        self.returncode: int | None = None

    def wait(self) -> Run:
        if self.returncode is None:
            left = max(1.0, TIMEOUT - (time.monotonic() - self.started))
            try:
                self.returncode = self.proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the launcher and every rank it started
                self.proc.wait()
                pytest.fail(f"{self.name}: no exit within {TIMEOUT:.0f} s (hung?)\n{self.tail()}")
            self.seconds = time.monotonic() - self.started
        assert self.returncode == 0, f"{self.name} exited with {self.returncode}\n{self.tail()}"
        return self

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def rank(self, r: int) -> dict[str, Any]:
        self.wait()
        path = self.probe / f"rank{r}.json"
        assert path.exists(), f"{self.name}: rank {r} wrote no record\n{self.tail()}"
        return json.loads(path.read_text())

    def weights(self, r: int) -> dict[str, torch.Tensor]:
        self.wait()
        return torch.load(self.probe / f"weights_rank{r}.pt", weights_only=True)


def zoo_fit(*args: str, devices: int, workdir: Path, launcher: str = "zoo") -> list[str]:
    common = [
        "--trainer.accelerator", "cpu",
        "--trainer.devices", str(devices),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(workdir / "runs"),
        "--trainer.callbacks+=ddp_probe.DDPProbe",
        "--trainer.callbacks.out_dir", str(workdir / "probe"),
    ]  # fmt: skip
    if devices > 1:
        common += ["--trainer.strategy", "ddp"]
    if launcher == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={devices}"]
        return [*head, "-m", "zoo", "fit", *args, *common]
    return [sys.executable, "-m", "zoo", "fit", *args, *common]


def classification_args(data: Path, workdir: Path, epochs: int) -> list[str]:
    return [
        "--model", "zoo.tasks.SequenceClassifier",
        "--model.encoder.cell", "gru",
        "--model.encoder.hidden_size", "16",
        "--model.embedding_dim", "8",
        "--model.dropout", "0",
        "--data", "zoo.data.TextClassificationData",
        "--data.path", "csv",
        "--data.data_files", f"{{train: {data / 'train.csv'}, validation: {data / 'val.csv'}}}",
        "--data.batch_size", "8",
        "--data.cache_dir", str(workdir / "cache"),
        "--trainer.max_epochs", str(epochs),
    ]  # fmt: skip


def lm_args(data: Path, workdir: Path, batch_size: int) -> list[str]:
    return [
        "--model", "zoo.tasks.LanguageModel",
        "--model.encoder.cell", "gru",
        "--model.encoder.hidden_size", "16",
        "--model.embedding_dim", "16",
        "--model.dropout", "0",
        "--data", "zoo.data.LanguageModelingData",
        "--data.data_files", f"{{train: {data / 'lm_train.txt'}, validation: {data / 'lm_val.txt'}}}",
        "--data.seq_len", "10",
        "--data.batch_size", str(batch_size),
        "--data.cache_dir", str(workdir / "cache"),
        "--trainer.max_epochs", "1",
        "--trainer.num_sanity_val_steps", "0",
    ]  # fmt: skip


#: Track the torchrun run in MLflow (SQLite in the run's folder) and register its model: under torchrun
#: both ranks start at once, so they would race on a fresh store if rank 0 did not create it alone.
MLFLOW_ARGS = [
    "--trainer.logger", "zoo.tracking.ZooMLFlowLogger",
    "--trainer.logger.experiment_name", "ddp-test",
    "--trainer.callbacks+=zoo.tracking.LogModelCallback",
    "--trainer.callbacks.log_model", "true",
    "--trainer.callbacks.registered_model_name", "ddp-classifier",
    "--trainer.callbacks.log_plots", "false",
]  # fmt: skip


def recipe_args(data: Path) -> list[str]:
    """The PTB recipe with the multi-GPU flags its header documents (on CPU, tiny, local files)."""
    return [
        "-c", str(ROOT / "zoo" / "recipes" / "lm" / "ptb-gru.yaml"),
        "--data.path", "text",
        "--data.text_column", "text",
        "--data.data_files", f"{{train: {data / 'lm_train.txt'}, validation: {data / 'lm_val.txt'}}}",
        "--data.batch_size", "5",  # 2 ranks x 5 rows; the recipe's 20 would be 4 GPUs x 5
        "--model.encoder.hidden_size", "16",
        "--model.embedding_dim", "16",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "4",
        "--trainer.limit_val_batches", "2",
    ]  # fmt: skip


def stream_args(data: Path) -> list[str]:
    """A classifier on a streamed CSV through the test-only ``stream_data.StreamedCSVData``."""
    return [
        "--model", "zoo.tasks.SequenceClassifier",
        "--model.encoder.hidden_size", "8",
        "--model.embedding_dim", "8",
        "--model.dropout", "0",
        "--data", "stream_data.StreamedCSVData",
        "--data.train", str(data / "stream_train.csv"),
        "--data.val", str(data / "stream_val.csv"),
        "--data.batch_size", "5",
        "--data.batches_per_epoch", "10",
        "--trainer.max_epochs", "2",
    ]  # fmt: skip


def write_id_csv(path: Path, rows: int, seed: int) -> None:
    """Rows of 2..7 token ids (unique: the first two ids encode the row number) and a parity label."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(rows):
        ids = [1 + i // 60, 1 + i % 60] + [rng.randint(1, 63) for _ in range(rng.randint(0, 5))]
        lines.append(f"{' '.join(map(str, ids))},{ids[-1] % 2}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp_data")
    rows = classification_rows(TRAIN_ROWS + 30, seed=0)
    random.Random(1).shuffle(rows)
    write_csv(root / "train.csv", rows[:TRAIN_ROWS])
    write_csv(root / "val.csv", rows[TRAIN_ROWS:])
    markov_corpus(root / "lm_train.txt", lines=300, seed=1)
    markov_corpus(root / "lm_val.txt", lines=41, seed=2)
    write_id_csv(root / "stream_train.csv", STREAM_ROWS, seed=3)
    write_id_csv(root / "stream_val.csv", 24, seed=4)
    return root


@pytest.fixture(scope="module")
def runs(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Start every run at once (they overlap their start-up), to be waited for by the tests."""
    base = tmp_path_factory.mktemp("ddp_runs")
    started: dict[str, Run] = {}
    for name, devices, args, launcher in [
        ("classify-2", 2, classification_args(data, base / "classify-2", epochs=2), "zoo"),
        ("lm-2", 2, lm_args(data, base / "lm-2", batch_size=4), "zoo"),
        ("lm-1", 1, lm_args(data, base / "lm-1", batch_size=8), "zoo"),
        (
            "torchrun-2",
            2,
            [*classification_args(data, base / "torchrun-2", epochs=1), *MLFLOW_ARGS],
            "torchrun",
        ),
        ("recipe-2", 2, recipe_args(data), "zoo"),
        ("stream-2", 2, stream_args(data), "zoo"),
    ]:
        workdir = base / name
        started[name] = Run(
            name, zoo_fit(*args, devices=devices, workdir=workdir, launcher=launcher), workdir
        )
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()


def _train_rows(run: Run, epoch: int) -> list[list[tuple[int, ...]]]:
    """Per rank, the training rows it saw in ``epoch``."""
    return [[tuple(row) for batch in run.rank(r)["epochs"][epoch] for row in batch] for r in (0, 1)]


def _stream_rows(record: dict[str, Any]) -> list[list[int]]:
    """Each batch row's tokens over the first epoch, windows joined: the stream rows a rank read."""
    batches = record["epochs"][0]
    return [[tok for batch in batches for tok in batch[i]] for i in range(len(batches[0]))]


def _encoded_train_set(run: Run, data: Path) -> Counter[tuple[int, ...]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(run.rank(0)["tokenizer_path"])
    tokenizer.no_padding()
    tokenizer.no_truncation()
    texts = [line.rsplit(",", 1)[0] for line in (data / "train.csv").read_text().splitlines()[1:]]
    return Counter(tuple(tokenizer.encode(t).ids) for t in texts)


# -- the tests ----------------------------------------------------------------------------------------
def test_two_process_fit_finishes_with_identical_weights_on_both_ranks(runs: dict[str, Run]) -> None:
    run = runs["classify-2"].wait()
    r0, r1 = run.rank(0), run.rank(1)
    assert (r0["world_size"], r1["world_size"]) == (2, 2)
    assert r0["global_step"] == r1["global_step"] > 0
    w0, w1 = run.weights(0), run.weights(1)
    assert w0.keys() == w1.keys()
    # DDP all-reduces the gradients, so every rank takes bit-identical optimiser steps
    different = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    assert not different, f"weights differ between ranks: {different}"
    # one tokenizer, trained once: the same vocabulary on both ranks
    assert r0["vocab_sha"] == r1["vocab_sha"] and r0["vocab_size"] > 10


def test_ranks_see_disjoint_shards_that_cover_uneven_data(runs: dict[str, Run], data: Path) -> None:
    run = runs["classify-2"]
    expected = _encoded_train_set(run, data)
    assert sum(expected.values()) == TRAIN_ROWS and len(expected) == TRAIN_ROWS  # unique rows, odd count
    for epoch in (0, 1):
        rank0, rank1 = _train_rows(run, epoch)
        batches = [len(run.rank(r)["epochs"][epoch]) for r in (0, 1)]
        assert batches[0] == batches[1], f"epoch {epoch}: unequal batch counts {batches} would hang DDP"
        # equal shards: 101 rows -> 51 each, the one extra a repeat that evens them out
        assert len(rank0) == len(rank1) == (TRAIN_ROWS + 1) // 2
        seen = Counter(rank0) + Counter(rank1)
        assert set(seen) == set(expected), "the shards together must cover the training split"
        assert len(set(rank0) & set(rank1)) <= 1 and sum(seen.values()) - len(seen) <= 1


def test_set_epoch_reshuffles_the_shards(runs: dict[str, Run]) -> None:
    run = runs["classify-2"]
    first, second = _train_rows(run, 0), _train_rows(run, 1)
    for r in (0, 1):
        assert first[r] != second[r], f"rank {r} saw the same order in both epochs"
    # not just a new order within a fixed shard: the split between ranks changes too
    assert set(first[0]) != set(second[0])


def test_validation_metrics_are_synchronised_across_ranks(runs: dict[str, Run]) -> None:
    run = runs["classify-2"]
    m0, m1 = run.rank(0)["metrics"], run.rank(1)["metrics"]
    val_rows = [len(run.rank(r)["val_rows"]) for r in (0, 1)]
    assert val_rows == [15, 15]  # 30 validation rows, sharded
    for key in ("val_loss", "val_acc"):
        assert m0[key] == m1[key], f"{key} differs by rank ({m0[key]} vs {m1[key]}): not synchronised"


def test_two_processes_match_one_process_with_the_same_global_batch(runs: dict[str, Run]) -> None:
    """2 ranks x 4 rows against 1 process x 8 rows, same seed, truncated BPTT over one epoch.

    The rows are the same (rank r reads rows 4r..4r+3 of the 8-row layout) and every rank's loss is a
    mean over the same number of tokens, so the averaged gradient equals the 8-row gradient up to float32
    rounding (a different summation order: two 4-row sums and an all-reduce, against one 8-row sum). Such
    rounding is ~1e-7 relative per step and does not grow much over one epoch at this learning rate, so
    we allow 1e-5 relative on the loss and 1e-5 absolute on the weights; a wrong shard, a missing
    all-reduce or an unscaled gradient would be off by far more than that (1e-2 and above).
    """
    two, one = runs["lm-2"], runs["lm-1"]
    r0, r1, single = two.rank(0), two.rank(1), one.rank(0)
    # the same rows: rank 0 then rank 1 is the single process's row order
    rows = [_stream_rows(rec) for rec in (r0, r1, single)]
    assert len(rows[0]) == len(rows[1]) == 4 and len(rows[2]) == 8
    assert rows[0] + rows[1] == rows[2]
    assert len(r0["losses"]) == len(r1["losses"]) == len(single["losses"]) >= 20
    global_loss = (torch.tensor(r0["losses"], dtype=torch.float64) + torch.tensor(r1["losses"])) / 2
    torch.testing.assert_close(
        global_loss, torch.tensor(single["losses"], dtype=torch.float64), rtol=1e-5, atol=0
    )
    assert single["losses"][-1] < single["losses"][0] - 0.3  # it learned: the comparison is not of noise
    w2, w1 = two.weights(0), one.weights(0)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-5, msg=f"weight {k} differs")
    # validation perplexity is synchronised over both ranks' halves of the stream: equal to one process's
    assert r0["metrics"]["val_ppl"] == r1["metrics"]["val_ppl"]
    assert r0["metrics"]["val_ppl"] == pytest.approx(single["metrics"]["val_ppl"], rel=1e-5)


def test_uneven_language_model_stream_does_not_hang(runs: dict[str, Run], data: Path) -> None:
    run = runs["lm-2"].wait()  # a hang fails inside wait(), after TIMEOUT seconds
    r0, r1 = run.rank(0), run.rank(1)
    tokens = sum(len(line.split()) + 1 for line in (data / "lm_train.txt").read_text().splitlines())
    assert tokens % 8 != 0, "the corpus should not divide into the 2 x 4 rows"
    assert len(r0["epochs"][0]) == len(r1["epochs"][0]) > 0


def test_torchrun_launch_with_a_fresh_cache(runs: dict[str, Run], data: Path) -> None:
    """Under torchrun every rank starts at once, so both build the data and tokenizer cache together."""
    run = runs["torchrun-2"]
    r0, r1 = run.rank(0), run.rank(1)
    assert r0["vocab_sha"] == r1["vocab_sha"]
    rank0, rank1 = _train_rows(run, 0)
    assert set(rank0) | set(rank1) == set(_encoded_train_set(run, data))
    assert len(set(rank0) & set(rank1)) <= 1
    w0, w1 = run.weights(0), run.weights(1)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


def test_the_lm_recipe_runs_with_its_documented_ddp_flags(runs: dict[str, Run]) -> None:
    run = runs["recipe-2"]
    r0, r1 = run.rank(0), run.rank(1)
    assert r0["global_step"] == r1["global_step"] == 4
    rows0, rows1 = ({tuple(row) for batch in rec["epochs"][0] for row in batch} for rec in (r0, r1))
    assert not rows0 & rows1, "the two ranks read the same rows of the stream"
    w0, w1 = run.weights(0), run.weights(1)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert r0["metrics"]["val_ppl"] == r1["metrics"]["val_ppl"]


def test_one_mlflow_run_and_one_registered_version_under_torchrun(runs: dict[str, Run]) -> None:
    run = runs["torchrun-2"].wait()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run.workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ddp-test")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 1, f"expected one MLflow run for a 2-rank fit, found {len(found)}"
    assert found[0].info.status == "FINISHED"
    assert "val_acc" in found[0].data.metrics
    versions = client.search_model_versions("name='ddp-classifier'")
    assert len(versions) == 1 and versions[0].run_id == found[0].info.run_id


def test_a_streamed_dataset_is_split_across_two_real_processes(runs: dict[str, Run]) -> None:
    """``ShardedStream`` under a real 2-process fit: ``split_dataset_by_node`` with the live process group."""
    run = runs["stream-2"]
    r0, r1 = run.rank(0), run.rank(1)
    for epoch in (0, 1):
        rank0, rank1 = _train_rows(run, epoch)
        # equal batch counts from an uneven split (52/51 rows): 10 batches of 5 each
        assert [len(run.rank(r)["epochs"][epoch]) for r in (0, 1)] == [10, 10]
        assert not set(rank0) & set(rank1), f"epoch {epoch}: ranks read the same rows"
        assert len(set(rank0)) == len(rank0) == 50
    assert _train_rows(run, 0)[0] != _train_rows(run, 1)[0], "no reshuffle between epochs"
    w0, w1 = run.weights(0), run.weights(1)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert r0["metrics"]["val_acc"] == r1["metrics"]["val_acc"]
