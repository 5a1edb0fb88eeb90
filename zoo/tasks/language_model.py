"""Language modelling with truncated BPTT and step-wise generation.

Weight tying follows Press & Wolf 2017, "Using the Output Embedding to Improve Language Models"
(arXiv:1608.05859): the decoder reuses the embedding matrix, through a linear projection when the encoder's
output size differs from the embedding size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from zoo.cells import detach_state
from zoo.encoder import uniform_init_
from zoo.tasks._common import (
    EncoderArg,
    check_at_least,
    check_token_ids,
    default_optimizer,
    is_bidirectional,
    make_encoder,
    metric,
    output_size,
)
from zoo.tasks._linear_ce import linear_cross_entropy

IGNORE_INDEX = -100


class Perplexity(Metric):
    """``exp`` of the token-weighted mean negative log-likelihood over everything seen (synced across ranks).

    ``update(nll_sum, tokens)`` takes the summed loss of a batch and its number of predicted tokens, so a
    short batch weighs what its tokens weigh (not the mean of per-batch perplexities).
    """

    full_state_update = False
    nll_sum: Tensor
    tokens: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, nll_sum: Tensor, tokens: Tensor | int) -> None:
        self.nll_sum += nll_sum.detach().to(torch.float64)
        self.tokens += torch.as_tensor(tokens, dtype=torch.float64, device=self.tokens.device)

    def compute(self) -> Tensor:
        return torch.exp(self.nll_sum / self.tokens.clamp(min=1.0)).float()


class LanguageModel(L.LightningModule):
    """Next-token language model on a unidirectional recurrent encoder.

    ``embedding -> encoder -> dropout -> [projection] -> decoder``; with ``tie_weights`` the decoder shares
    the embedding matrix (with a linear projection first when ``encoder.output_size != embedding_dim``).

    Batch: ``{"input_ids": Long[B, T], "targets": Long[B, T], "reset": Bool[]}``; targets equal to -100 are
    ignored. Truncated BPTT: in training (and, separately, in validation and test) the encoder state is
    carried from one batch to the next and detached, so gradients stop at the batch boundary. It is reset
    at each epoch start, when ``batch["reset"]`` is true, and when the batch size changes. A batch without
    ``reset`` continues the previous one.

    Logs ``train_loss`` per step, ``train_ppl``, ``val_loss``, ``val_ppl`` (``test_*``) per epoch, where the
    perplexity is ``exp`` of the token-weighted mean loss of the epoch.

    ``predict_step`` takes ``{"input_ids": Long[B, T], "lengths": Long[B] (optional)}`` prompts and
    returns ``{"next_token_probs": Float[B, vocab_size]}`` (the distribution after each prompt's last real
    token) and, when ``predict_max_new_tokens > 0``, ``"generated"``: one list of new token ids per prompt
    from :meth:`generate`.

    Args:
        encoder: an ``EncoderConfig`` (or dict) built with ``input_size=embedding_dim``, unidirectional; or a
            ready module with ``output_size`` and ``step`` (then ``load_from_checkpoint(path, encoder=...)``).
            With the config's ``init: uniform``, the embedding and decoder are drawn from the same
            U(-init_scale, init_scale) as the cells: every weight of the model, as Zaremba et al. 2014.
        vocab_size: size of the vocabulary (link from the data module).
        embedding_dim: size of each token's embedding.
        tie_weights: share the embedding matrix with the decoder.
        dropout: dropout on the embeddings and the encoder's output.
        learning_rate: AdamW learning rate (when no optimiser is configured from YAML).
        weight_decay: AdamW weight decay.
        predict_max_new_tokens: tokens to generate per prompt in ``predict_step`` (0: probabilities only).
        predict_temperature: sampling temperature for ``predict_step`` (0: greedy).
        predict_top_k: sample from the ``k`` likeliest tokens only in ``predict_step``.
    """

    def __init__(
        self,
        encoder: EncoderArg,
        vocab_size: int,
        embedding_dim: int = 128,
        tie_weights: bool = True,
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        predict_max_new_tokens: int = 0,
        predict_temperature: float = 1.0,
        predict_top_k: int | None = None,
    ) -> None:
        super().__init__()
        check_at_least("vocab_size", vocab_size, 2)
        self.encoder, encoder_config = make_encoder(encoder, embedding_dim)
        if is_bidirectional(self.encoder):
            raise ValueError(
                "LanguageModel needs a unidirectional encoder: a backward direction would read the tokens it "
                "must predict. Set `bidirectional: false` in the encoder config."
            )
        if encoder_config is None:
            self.save_hyperparameters(ignore=["encoder"])
        else:
            encoder = encoder_config  # the plain dict is what save_hyperparameters records
            self.save_hyperparameters()
        self.vocab_size = vocab_size
        out_size = output_size(self.encoder)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.projection: nn.Module = nn.Identity()
        if tie_weights:
            if out_size != embedding_dim:
                self.projection = nn.Linear(out_size, embedding_dim)
            self.decoder = nn.Linear(embedding_dim, vocab_size)
            self.decoder.weight = self.embedding.weight
        else:
            self.decoder = nn.Linear(out_size, vocab_size)
        if encoder_config is not None and encoder_config.get("init") == "uniform":
            # Zaremba et al. 2014 draw ALL weights uniformly, not only the recurrent ones
            for part in (self.embedding, self.projection, self.decoder):
                uniform_init_(part, float(encoder_config["init_scale"]))
        self.example_input_array = torch.zeros(2, 8, dtype=torch.long)
        self._carried: dict[str, Any] = {}
        self.ppl = nn.ModuleDict({f"{stage}_ppl": Perplexity() for stage in ("train", "val", "test")})
        self.mean_loss = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in ("val", "test")})

    def encoder_inputs(self, input_ids: Tensor) -> Tensor:
        """What the encoder reads: the embeddings ``[B, T, embedding_dim]`` (with dropout in training)."""
        check_token_ids(input_ids, self.vocab_size)
        return self.dropout(self.embedding(input_ids))

    def decoder_inputs(self, hidden: Tensor) -> Tensor:
        """What the decoder reads: encoder outputs after dropout and the tying projection."""
        return self.projection(self.dropout(hidden))

    def logits(self, hidden: Tensor) -> Tensor:
        """Decoder logits for encoder outputs ``[..., output_size]`` -> ``[..., vocab_size]``."""
        return self.decoder(self.decoder_inputs(hidden))

    def nll_sum(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Summed next-token loss of encoder outputs ``[B, T, output_size]`` against ``targets`` ``[B, T]``.

        Equals ``cross_entropy(self.logits(hidden), targets, reduction="sum")`` (targets of -100 ignored),
        computed by :func:`linear_cross_entropy`, which never keeps the full logits for the backward pass.
        Both go through :meth:`decoder_inputs` and ``self.decoder``.
        """
        features = self.decoder_inputs(hidden)
        return linear_cross_entropy(
            features.reshape(-1, features.size(-1)),
            self.decoder.weight,
            self.decoder.bias,
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )

    def forward(self, input_ids: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """Logits ``[B, T, vocab_size]`` and the encoder state after the last step."""
        out, state = self.encoder(self.encoder_inputs(input_ids), state)
        return self.logits(out), state

    # -- truncated BPTT -----------------------------------------------------------------------------------
    def _start_state(self, stage: str, batch: Mapping[str, Any]) -> Any:
        """The state this batch continues from, or ``None`` when it starts afresh."""
        carried = self._carried.get(stage)
        if carried is None:
            return None
        reset = batch.get("reset")
        if reset is not None and bool(torch.as_tensor(reset).any()):
            return None
        batch_size, state = carried
        if batch_size != batch["input_ids"].size(0):
            return None
        return state

    def _stage_step(self, batch: Mapping[str, Any], stage: str) -> tuple[Tensor, Tensor, int]:
        input_ids, targets = batch["input_ids"], batch["targets"]
        if targets.shape != input_ids.shape:
            raise ValueError(
                f"targets must have the shape of input_ids {list(input_ids.shape)}, got {list(targets.shape)}"
            )
        out, state = self.encoder(self.encoder_inputs(input_ids), self._start_state(stage, batch))
        self._carried[stage] = (input_ids.size(0), detach_state(state))
        nll_sum = self.nll_sum(out, targets)
        tokens = int((targets != IGNORE_INDEX).sum())
        metric(self.ppl, f"{stage}_ppl").update(nll_sum, tokens)
        return nll_sum / max(tokens, 1), nll_sum, tokens

    def _reset(self, stage: str) -> None:
        self._carried.pop(stage, None)

    def on_train_epoch_start(self) -> None:
        self._reset("train")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the state the next training window continues from: a fit resumed mid-epoch carries it on exactly
        if "train" in self._carried:
            checkpoint["carried_train_state"] = self._carried["train"]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "carried_train_state" in checkpoint:
            self._carried["train"] = checkpoint["carried_train_state"]

    def on_train_start(self) -> None:
        # a state restored from a checkpoint was loaded before the model moved to its device
        self._carried = move_data_to_device(self._carried, self.device)

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    def on_test_epoch_start(self) -> None:
        self._reset("test")

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss, _, tokens = self._stage_step(batch, "train")
        self.log("train_loss", loss, prog_bar=True, batch_size=max(tokens, 1))
        self.log("train_ppl", metric(self.ppl, "train_ppl"), on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: Mapping[str, Any], stage: str) -> Tensor:
        loss, _, tokens = self._stage_step(batch, stage)
        mean_loss = metric(self.mean_loss, f"{stage}_loss")
        mean_loss.update(loss.detach(), weight=tokens)
        self.log(f"{stage}_loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log(
            f"{stage}_ppl", metric(self.ppl, f"{stage}_ppl"), on_step=False, on_epoch=True, prog_bar=True
        )
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    # -- generation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Sequence[int] | Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        eos_id: int | None = None,
    ) -> list[int]:
        """Continue a prompt: the prompt runs once through the encoder, then one ``step`` per new token.

        Args:
            prompt_ids: the prompt's token ids (at least one).
            max_new_tokens: how many tokens to add at most.
            temperature: softmax temperature; 0 picks the likeliest token (greedy).
            top_k: sample only among the ``k`` likeliest tokens.
            seed: seed of a private generator, for reproducible samples.
            eos_id: stop after generating this token (it is included).

        Returns:
            The new token ids (not the prompt).
        """
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=self.device).flatten()
        if prompt.numel() == 0:
            raise ValueError("generate needs a prompt of at least one token (e.g. a BOS id)")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        if not hasattr(self.encoder, "step"):
            raise TypeError(
                f"generate needs an encoder with a `step` method; {type(self.encoder).__name__} has none"
            )
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        try:
            out, state = self.encoder(self.encoder_inputs(prompt.unsqueeze(0)))
            logits = self.logits(out[:, -1])  # [1, vocab]
            new: list[int] = []
            for i in range(max_new_tokens):
                token = _pick(logits[0], temperature, top_k, generator)
                new.append(token)
                if token == eos_id or i == max_new_tokens - 1:
                    break
                x_t = self.embedding(torch.tensor([token], device=self.device))
                h, state = cast(Any, self.encoder).step(x_t, state)
                logits = self.logits(h)
            return new
        finally:
            self.train(was_training)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        """See the class docstring: next-token probabilities, and generated ids when asked."""
        input_ids = batch["input_ids"]
        lengths = batch.get("lengths")
        lens = [input_ids.size(1)] * input_ids.size(0) if lengths is None else [int(n) for n in lengths]
        logits, _ = self(input_ids)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        last = torch.as_tensor(lens, device=input_ids.device) - 1
        result: dict[str, Any] = {"next_token_probs": logits[rows, last].softmax(-1)}
        n_new = int(self.hparams.get("predict_max_new_tokens", 0))
        if n_new > 0:
            result["generated"] = [
                self.generate(
                    input_ids[b, : lens[b]],
                    n_new,
                    temperature=self.hparams.get("predict_temperature", 1.0),
                    top_k=self.hparams.get("predict_top_k"),
                )
                for b in range(input_ids.size(0))
            ]
        return result

    def configure_optimizers(self) -> Any:
        return default_optimizer(self, self.hparams["learning_rate"], self.hparams["weight_decay"])


def _pick(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> int:
    """One token id from ``[vocab]`` logits: greedy at temperature 0, else a (top-k) sample."""
    if temperature == 0:
        return int(logits.argmax())
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))
