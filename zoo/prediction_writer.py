"""The prediction writer of ``zoo predict -c recipe --ckpt_path best --data.predict_files FILE``.

Each batch of the data module's ``predict_dataloader`` is formatted by :meth:`zoo.Predictor.rows` (the same
rows as ``zoo predict MODEL ...`` and the MLflow model) and appended to a JSON-lines file as it comes, so
nothing is kept in memory. The CLI adds it as ``prediction`` (``--prediction.output preds.jsonl``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import IO, Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter


class JsonLinesWriter(BasePredictionWriter):
    """Write one JSON line per input predicted by ``trainer.predict``, in order.

    Args:
        output: the file to write (default ``<default_root_dir>/predictions.jsonl``; printed at the end).
        max_new_tokens: language models: tokens to generate per prompt (default 20).
        temperature: language models: sampling temperature (default 1.0).
        top_k: language models: sample from the ``top_k`` likeliest tokens (default: all).
        seed: language models: sampling seed (default 0).
    """

    def __init__(
        self,
        output: str | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        given = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "seed": seed}
        self.options = {k: v for k, v in given.items() if v is not None}
        self.path: Path | None = None
        self.count = 0
        self._file: IO[str] | None = None
        self._predictor: Any = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Open the output and build the row formatter from the module and its data."""
        from zoo.tracking.predict import Predictor

        # the rows go to the file as they come; Lightning would also keep every batch's output in memory
        trainer.predict_loop.return_predictions = False
        # the inputs are streamed (an IterableDataset has no indices to report); rows keep their order
        warnings.filterwarnings("ignore", message="Couldn't infer the batch indices", category=UserWarning)
        self._predictor = Predictor.from_module(pl_module, trainer.datamodule)  # type: ignore[attr-defined]
        if self.options and self._predictor.kind != "language_model":
            from zoo.errors import ZooConfigError

            raise ZooConfigError(
                f"prediction.{', prediction.'.join(self.options)} apply to language models only; this model "
                f"is a {self._predictor.kind} model."
            )
        self.path = Path(self.output or Path(trainer.default_root_dir) / "predictions.jsonl")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        self.count = 0

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Format the batch's rows and append them to the output."""
        if self._file is None:
            return
        rows = self._predictor.rows(batch, prediction, **self.options)
        self._file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        self._file.flush()
        self.count += len(rows)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Close the output and say where it is."""
        if self._file is not None:
            self._file.close()
            self._file = None
            print(f"\nPredictions: {self.count} rows in {self.path}", flush=True)
