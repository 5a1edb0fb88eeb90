"""The train/validation/test loaders every zoo data module serves from one ``_loader`` method."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from zoo.errors import ZooConfigError


class SplitDataModule(L.LightningDataModule):
    """A data module whose three loaders differ only in the split and in shuffling.

    Subclasses implement :meth:`_loader`; ``train`` is true only for the training split. The predict
    loader reads the raw inputs of ``predict_files`` lazily (``zoo predict -c recipe --data.predict_files
    FILE``) and tokenises them as ``zoo.Predictor`` does; a module without a tokenizer overrides it.
    """

    predict_files: list[str] = []  # noqa: RUF012 (never mutated: each module assigns its own list)
    #: a language model's prompt keeps its last tokens, other texts their first
    predict_keep_end = False

    def _loader(self, split: str, train: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    @property
    def predict_max_length(self) -> int:
        """Tokens (time steps) kept per input to predict on: the module's ``max_length`` if it has one."""
        from zoo.data.encoding import DEFAULT_MAX_LENGTH

        return int(getattr(self, "max_length", None) or DEFAULT_MAX_LENGTH)

    def predict_dataloader(self) -> DataLoader:
        """Batches of the raw texts of ``predict_files``, tokenised as ``zoo.Predictor`` does."""
        from zoo.data.predict_inputs import PredictTextCollate, predict_loader

        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is None:
            raise ZooConfigError(
                f"{type(self).__name__} has no tokenizer to read raw text, so it cannot predict on files; "
                "predict on its test split with `zoo test` instead."
            )
        pad_id = int(getattr(self, "pad_id", 0) or 0)
        collate = PredictTextCollate(tokenizer, self.predict_max_length, pad_id, self.predict_keep_end)
        column = getattr(self, "text_column", None)
        return predict_loader(self.predict_files, column, int(getattr(self, "batch_size", 32)), collate)
