"""A 2-process DDP fit on CPU of the toy classifier, tracked and registered; run as a script."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
from tracking_toys import ToyClassifier, ToyTextData

from zoo.tracking import LogModelCallback, ZooMLFlowLogger

if __name__ == "__main__":
    root = Path(sys.argv[1])
    L.seed_everything(0)
    data = ToyTextData(num_train=64)
    model = ToyClassifier(vocab_size=data.vocab_size, label_names=data.label_names)
    trainer = L.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=1,
        logger=ZooMLFlowLogger(experiment_name="ddp"),
        callbacks=[LogModelCallback(log_model=True, registered_model_name="toy-ddp")],
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=data)
