"""A small hand-written transformer for the known-circuit recipes, its training loop, and the
exact spectrum of a function known on all ``2^n`` masks.

The model is small enough that every one of the ``2^n`` head/MLP masks can be evaluated, so a
recipe checks ProxySPEX against the exact answer. Its config names follow Hugging Face
(``num_attention_heads``, ``num_hidden_layers``, ``model_type``), and its architecture is
registered, so :class:`compattr.AttentionHeads` hooks ``layers[i].attn.o_proj`` and
:class:`compattr.MLPBlocks` hooks ``layers[i].mlp`` as they would in a Llama.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import compattr
from compattr.features import Architecture, register_architecture
from compattr.features.base import digest

MODEL_TYPE = "compattr-toy-transformer"
register_architecture(MODEL_TYPE, Architecture(blocks="layers", out_proj="attn.o_proj", mlp="mlp"))


@dataclass(frozen=True)
class ToyConfig:
    """Shape of the model: vocabulary, width, heads, layers, sequence length, MLPs or not."""

    vocab: int = 64
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    seq_len: int = 32
    mlp: bool = False

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def model_type(self) -> str:
        return MODEL_TYPE


class Attention(nn.Module):
    """Causal multi-head self-attention; ``o_proj`` reads the head-major concatenation of heads."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.o_proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``[B, S, d]`` and attention pattern ``[B, H, S, S]`` (query, key)."""
        B, S, d = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.n_heads, d // self.n_heads).unbind(2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.n_heads)
        future = torch.ones(S, S, dtype=torch.bool, device=x.device).triu(1)
        pattern = scores.masked_fill(future, float("-inf")).softmax(-1)
        heads = torch.einsum("bhqk,bkhd->bqhd", pattern, v).reshape(B, S, d)
        return self.o_proj(heads), pattern


class Block(nn.Module):
    """Pre-norm residual block: attention, then (with ``config.mlp``) a GELU MLP of width 4d."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.attn = Attention(config)
        self.mlp: nn.Module | None = None
        if config.mlp:
            self.mlp_norm = nn.LayerNorm(config.d_model)
            d = config.d_model
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, pattern = self.attn(self.norm(x))
        x = x + out
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x, pattern


class ToyTransformer(nn.Module):
    """Token and position embeddings, ``n_layers`` blocks, a linear unembedding."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.d_model)
        self.pos = nn.Embedding(config.seq_len, config.d_model)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.unembed = nn.Linear(config.d_model, config.vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[B, S, vocab]``."""
        return self._run(tokens)[0]

    def attention_patterns(self, tokens: torch.Tensor) -> torch.Tensor:
        """Attention patterns ``[layers, B, H, S, S]``."""
        return torch.stack(self._run(tokens)[1])

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def _run(self, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
        patterns = []
        for block in self.layers:
            x, pattern = block(x)
            patterns.append(pattern)
        return self.unembed(self.norm(x)), patterns


# --------------------------------------------------------------------------- training
def add_training_arguments(p: argparse.ArgumentParser, steps: int) -> None:
    """``--steps`` (default ``steps``) and ``--lr``, the options of :func:`load_or_train`."""
    p.add_argument("--steps", type=int, default=steps, help="training steps of batch 64 (default %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default %(default)s)")


def train(
    config: ToyConfig,
    loss: Callable[[ToyTransformer, np.random.Generator], torch.Tensor],
    steps: int,
    lr: float = 3e-3,
    seed: int = 0,
) -> ToyTransformer:
    """Train a fresh model with Adam for ``steps`` steps; ``loss(model, rng)`` draws a batch
    from ``rng`` and returns its loss."""
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 0])
    model = ToyTransformer(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss(model, rng).backward()
        opt.step()
    return model.eval()


def load_or_train(
    folder: Path,
    task: str,
    config: ToyConfig,
    loss: Callable[[ToyTransformer, np.random.Generator], torch.Tensor],
    steps: int,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[ToyTransformer, float | None]:
    """The trained model from ``folder`` if it holds one with these settings, else train one
    (:func:`train`) and save it there (``<task>-model-<digest of the settings>.pt``).

    Returns
    -------
    model : ToyTransformer
        In eval mode.
    seconds : float or None
        Training time, or None when the weights were loaded.
    """
    settings = {**asdict(config), "steps": steps, "lr": lr, "seed": seed}
    path = folder / f"{task}-model-{digest(settings)}.pt"
    if path.exists():
        model = ToyTransformer(config)
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), None
    clock = time.perf_counter()
    model = train(config, loss, steps, lr=lr, seed=seed)
    seconds = time.perf_counter() - clock
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model, seconds


# --------------------------------------------------------------------------- exact spectrum
def all_masks(n: int) -> np.ndarray:
    """Every mask over ``n`` features, ``(2^n, n)`` bool; row ``i`` keeps the bits of ``i``."""
    return (np.arange(2**n)[:, None] >> np.arange(n)) & 1 == 1


def lookup(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``f(masks)`` read from ``values``, the outputs of all :func:`all_masks` in order."""
    n = int(np.log2(len(values)))
    bits = 1 << np.arange(n)
    return lambda masks: values[np.asarray(masks, np.int64) @ bits]


def walsh_hadamard(values: np.ndarray) -> np.ndarray:
    """``F(T) = 2^-n Σ_S (-1)^{|S∩T|} f(S)`` for all ``T``, in ``O(n 2^n)``: ``values`` and the
    result are indexed by the bits of the mask (row ``i`` keeps the bits of ``i``)."""
    F = np.array(values, float)
    n = int(np.log2(len(F)))
    for i in range(n):
        F = F.reshape(-1, 2, 2**i)
        F = np.stack([F[:, 0] + F[:, 1], F[:, 0] - F[:, 1]], 1)
    return F.reshape(-1) / len(F.reshape(-1))


def exact_spectrum(values: np.ndarray) -> compattr.Spectrum:
    """The exact spectrum (:func:`walsh_hadamard`) of ``values`` on all :func:`all_masks`."""
    n = int(np.log2(len(values)))
    return compattr.Spectrum(n, [np.flatnonzero(t) for t in all_masks(n)], walsh_hadamard(values))


def faithfulness_on_every_mask(ex: compattr.Explanation, values: np.ndarray) -> tuple[float, float]:
    """R² of ``ex``'s spectrum on all :func:`all_masks` (outputs ``values``), and on those of
    them it was never fitted on."""
    masks = all_masks(ex.n)
    seen = {m.tobytes() for m in ex.masks}
    unseen = np.array([m.tobytes() not in seen for m in masks])
    return (
        compattr.faithfulness(ex.spectrum, masks, values),
        compattr.faithfulness(ex.spectrum, masks[unseen], values[unseen]),
    )
