"""LightningModules for the four tasks; each takes a recurrent encoder (any registered cell) and the sizes
the data module decides."""

from zoo.tasks.classification import SequenceClassifier
from zoo.tasks.forecasting import Forecaster
from zoo.tasks.gates import gate_activations
from zoo.tasks.language_model import LanguageModel, Perplexity
from zoo.tasks.tagging import TokenTagger

__all__ = [
    "Forecaster",
    "LanguageModel",
    "Perplexity",
    "SequenceClassifier",
    "TokenTagger",
    "gate_activations",
]
