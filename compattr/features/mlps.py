"""MLP blocks as features: mask the MLP of any subset of layers, a different subset per batch row.

Each selected layer gets a forward hook on the module whose output is its MLP's contribution
to the residual stream (``block.mlp`` in most decoders, BERT's ``output.dense``; located by
:mod:`compattr.features.architectures`) or on ``blocks.{l}.hook_mlp_out`` (TransformerLens).
A masked MLP's output ``[batch, tokens, d_model]`` is replaced row by row (where the site
sees the tokens flattened, ``[batch·tokens, d_model]`` as OPT's ``fc2``, it is read in the
shape of the hidden states entering its block):

``"zero"``
    by zero;
``"mean"``
    by its mean over the tokens of ``reference`` inputs;
``"patch"``
    by its output on the paired ``corrupted`` example (activation patching), recorded once.

Combine with heads into one feature vector: ``compattr.AttentionHeads(model) +
compattr.MLPBlocks(model)`` (:class:`~compattr.features.Components`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .architectures import check_layers, find_blocks, is_lens, language_model, resolve, text_config
from .base import Inputs, attention_mask_of, digest, mask_rows
from .components import Components
from .patching import patched_rows, record_activations, token_mean
from .replay import LayerReplay, replay_before

_ABLATIONS = ("zero", "mean", "patch")


class MLPBlocks:
    """The MLP blocks of an HF or TransformerLens model, one feature per layer.

    Parameters
    ----------
    model : torch.nn.Module
        A Hugging Face transformer of a registered or discoverable family, or a
        TransformerLens model (``hook_mlp_out``).
    layers : sequence of int, optional
        Layers whose MLPs are features; default all. They are taken in increasing order,
        whatever the order given: feature ``i`` is the MLP of ``self.layers[i]``.
    ablation : {"zero", "mean", "patch"}
        What a masked MLP outputs.
    reference : tensor or mapping of tensors, optional
        ``ablation="mean"``: inputs whose token-averaged MLP outputs replace masked MLPs.
    corrupted : tensor or mapping of tensors, optional
        ``ablation="patch"``: one corrupted example per clean example, same token positions.

    Attributes
    ----------
    n : int
    names : list of str
        ``'L{layer}.MLP'``.
    groups : (n,) int array
        The layer of each MLP.
    layers : list of int
        The layers, in increasing order.
    inputs : None
    """

    inputs = None

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int] | None = None,
        ablation: str = "zero",
        reference: Inputs | None = None,
        corrupted: Inputs | None = None,
    ):
        if ablation not in _ABLATIONS:
            raise ValueError(f"ablation must be one of {_ABLATIONS}, got {ablation!r}.")
        if (ablation == "mean") != (reference is not None) or (ablation == "patch") != (corrupted is not None):
            raise ValueError("ablation='mean' needs reference= and ablation='patch' needs corrupted= (and only they).")
        self.model, self.ablation = model, ablation
        self._lens = is_lens(model)
        if self._lens:
            hooks: Any = model.hook_dict
            cfg: Any = model.cfg  # TransformerLens' config
            n_layers = int(cfg.n_layers)
            self._blocks: Any = model.blocks
            site = lambda l: hooks[f"blocks.{l}.hook_mlp_out"]
            self._site_name = "hook_mlp_out"
        else:
            if text_config(model) is None:
                raise ValueError(
                    f"{type(model).__name__} has no config; MLPBlocks needs a Hugging Face or TransformerLens model."
                )
            architecture, _ = resolve(model)
            self._blocks = find_blocks(language_model(model), architecture)
            n_layers, self._site_name = len(self._blocks), architecture.mlp
            site = lambda l: _submodule(self._blocks[l], architecture, text_config(model))
        self.layers = check_layers(layers, n_layers)
        self._sites = [site(l) for l in self.layers]
        self.n = len(self.layers)
        self.names = [f"L{l}.MLP" for l in self.layers]
        self.groups = np.asarray(self.layers)
        self._tokens: tuple[int, ...] | None = None  # (batch, tokens) entering the block running
        self._replacements: list[torch.Tensor] | None = None
        if reference is not None:
            weights = attention_mask_of(reference)
            read = lambda x: token_mean(self._unflattened(x), weights, tail=1)
            with self._block_tokens():
                self._replacements = record_activations(model, self._sites, reference, read, pre=False)
        elif corrupted is not None:
            read = lambda x: self._unflattened(x).clone()
            with self._block_tokens():
                self._replacements = record_activations(model, self._sites, corrupted, read, pre=False)
        self._keep: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None

    def __add__(self, other: Any) -> Components:
        """These features and ``other``'s (e.g. MLP blocks) as one feature vector."""
        return Components(self, other)

    def __repr__(self) -> str:
        return f"MLPBlocks({type(self.model).__name__}, layers={self.layers}, ablation={self.ablation!r})"

    def fingerprint(self) -> str:
        """Identifies the masking (layers, hook site, ablation and its recorded outputs)."""
        recorded = "none" if self._replacements is None else digest(self._replacements)
        return f"{self!r} site={self._site_name} replacements={recorded}"

    @contextmanager
    def masked(self, masks, examples=None) -> Iterator[MLPBlocks]:
        """Mask MLPs while the block runs; hooks are removed on exit, also on exceptions.

        Parameters
        ----------
        masks : (n,) or (B, n) bool array or tensor
            True = MLP kept; row ``b`` applies to batch row ``b`` (one row: to all).
        examples : (B,) int array or tensor, optional
            With ``ablation="patch"``: each batch row's example; default row ``b`` is example ``b``.
        """
        if self._keep is not None:
            raise RuntimeError("MLPs are already masked; masked() contexts do not nest.")
        self._keep = mask_rows(masks, self.n, "MLP masks").to(torch.float32)
        self._rows = None if examples is None else torch.as_tensor(examples, dtype=torch.long)
        handles = [site.register_forward_hook(self._hook(pos)) for pos, site in enumerate(self._sites)]
        try:
            with self._block_tokens():
                yield self
        finally:
            for handle in handles:
                handle.remove()
            self._keep, self._rows = None, None

    @contextmanager
    def masking(self, masks: torch.Tensor, inputs: Inputs, examples: torch.Tensor | None = None) -> Iterator[Inputs]:
        """:class:`~compattr.features.base.Masker` protocol: ``masked(masks, examples)``."""
        with self.masked(masks, examples):
            yield inputs

    def layer_replay(self) -> LayerReplay | None:
        """Replay of the blocks before the first masked MLP's layer, or None if there are none."""
        return replay_before(self._blocks, min(self.layers), None if self._lens else text_config(self.model))

    # ------------------------------------------------------------------ internals
    def _hook(self, pos: int):
        def hook(module: nn.Module, args: tuple, output: Any):
            out = output[0] if isinstance(output, tuple) else output
            masked = self._apply(pos, self._unflattened(out)).reshape(out.shape)
            return (masked, *output[1:]) if isinstance(output, tuple) else masked

        return hook

    @contextmanager
    def _block_tokens(self) -> Iterator[None]:
        """Keep in ``_tokens`` the ``(batch, tokens)`` shape of the hidden states entering
        each selected layer's block as it runs (a pre-hook on the block; a TransformerBridge
        of OPT flattens the tokens at ``hook_mlp_out`` as the Hugging Face model does), for
        :meth:`_unflattened`. The blocks run one after another, so the shape kept is that of
        the block whose MLP site fires next."""

        def keep(module: nn.Module, args: tuple, kwargs: dict) -> None:
            hidden = args[0] if args else kwargs.get("hidden_states")
            self._tokens = tuple(hidden.shape[:-1]) if isinstance(hidden, torch.Tensor) else None

        handles = [self._blocks[l].register_forward_pre_hook(keep, with_kwargs=True) for l in self.layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._tokens = None

    def _unflattened(self, out: torch.Tensor) -> torch.Tensor:
        """``out`` ``[batch, tokens, d_model]``: as it is, or, where the site flattened the
        tokens (``[batch·tokens, d_model]`` from a block whose hidden states were ``[batch,
        tokens, d_model]``), viewed in the block's shape."""
        tokens = self._tokens
        if out.ndim == 2 and tokens is not None and len(tokens) == 2 and tokens[0] * tokens[1] == out.shape[0]:
            return out.view(*tokens, out.shape[-1])
        return out

    def _apply(self, pos: int, out: torch.Tensor) -> torch.Tensor:
        assert self._keep is not None
        keep = self._keep[:, pos]
        if keep.shape[0] not in (1, out.shape[0]):
            raise ValueError(f"the MLP masks have {keep.shape[0]} rows but the model runs a batch of {out.shape[0]}.")
        keep = keep.to(device=out.device, dtype=out.dtype).view(-1, *([1] * (out.ndim - 1)))
        if self._replacements is None:
            return out * keep
        alt = self._replacements[pos]
        if self.ablation == "patch":
            alt = patched_rows(alt, self._rows, out, "MLP outputs")
        alt = alt.to(device=out.device, dtype=out.dtype)
        return out * keep + alt * (1 - keep)  # exactly ``out`` where kept, in bfloat16 too


def _submodule(block: nn.Module, architecture, config) -> nn.Module:
    """The module of ``block`` at ``architecture.mlp``, or a ``ValueError`` that says how to
    register the site where the block has none (Llama 4's ``feed_forward``, for one)."""
    try:
        return block.get_submodule(architecture.mlp)
    except AttributeError:
        model_type = getattr(config, "model_type", None)
        raise ValueError(
            f"{type(block).__name__} has no module '{architecture.mlp}' to mask as its MLP. Register "
            f"where its MLP's contribution to the residual stream is (without the residual): "
            f"compattr.features.register_architecture({model_type!r}, Architecture(blocks="
            f"{architecture.blocks!r}, out_proj={architecture.out_proj!r}, mlp='<path in a block>'))."
        ) from None
