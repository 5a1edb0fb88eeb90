"""A few-second demo: a GRU and a vanilla RNN on a generated long-range memory task.

Each sequence starts with one of ``num_classes`` "dish" tokens, then ``distance`` random filler tokens;
the model must name the class at the end. Prints each cell's accuracy on fresh sequences (chance is
0.25). Run with ``python -m zoo.demo``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from zoo.encoder import RecurrentEncoder


def make_batch(batch: int, distance: int, num_classes: int, vocab: int, gen: torch.Generator):
    """Token ids ``[batch, distance + 1]`` (class token first, then fillers) and the class labels."""
    labels = torch.randint(num_classes, (batch,), generator=gen)
    fillers = torch.randint(num_classes, vocab, (batch, distance), generator=gen)
    return torch.cat([labels.unsqueeze(1), fillers], 1), labels


class Classifier(nn.Module):
    def __init__(self, cell: str, vocab: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 32)
        self.encoder = RecurrentEncoder(cell, 32, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.encoder(self.embed(tokens))
        return self.head(out[:, -1])


def train(cell: str, distance: int, steps: int, seed: int) -> float:
    """Train ``cell`` for ``steps`` Adam steps; return accuracy on fresh sequences."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vocab, classes = 40, 4
    model = Classifier(cell, vocab, classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x, y = make_batch(64, distance, classes, vocab, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        x, y = make_batch(1000, distance, classes, vocab, gen)
        return (model(x).argmax(-1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--distance", type=int, default=30)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--cells", nargs="+", default=["gru", "rnn_tanh"])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"memory task: 4 classes, filler distance {args.distance}, chance 0.25")
    for cell in args.cells:
        start = time.perf_counter()
        acc = train(cell, args.distance, args.steps, seed=0)
        print(f"  {cell:10s} accuracy {acc:.3f}  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
