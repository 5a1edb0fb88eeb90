"""The train/validation/test loaders every zoo data module serves from one ``_loader`` method."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader


class SplitDataModule(L.LightningDataModule):
    """A data module whose three loaders differ only in the split and in shuffling.

    Subclasses implement :meth:`_loader`; ``train`` is true only for the training split.
    """

    def _loader(self, split: str, train: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
