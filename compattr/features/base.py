"""What a set function is, a check that yours is one, and helpers shared by the built-in features.

compattr attributes a model's output to *features*: anything that can be kept or masked. Two
protocols describe them:

:class:`SetFunction`
    Everything ProxySPEX needs: ``n`` features, their ``names`` and ``groups``, and
    ``evaluate(masks)`` returning one output per mask row, i.e. a function of the set of kept
    features. Implement it for your own features (see
    :class:`~compattr.features.TrainingSubsets` for a complete example) and run
    :func:`check_set_function` on it. An optional ``fingerprint()`` (a string, or a mapping of
    readable strings such as ``{"model": ..., "value": ...}``) lets
    :func:`compattr.query.run_queries` cache the outputs on disk.
:class:`Masker`
    Features that say *how* to mask a model or its input but need a model, a value function
    and inputs to produce outputs: :class:`~compattr.features.AttentionHeads`, the text units
    (:class:`~compattr.features.Words`, ...) and :class:`~compattr.features.ImagePatches`.
    :class:`compattr.query.MaskedModel` binds one into a :class:`SetFunction`.

``FeatureSet`` and ``check_feature_set`` are the earlier names of :class:`SetFunction` and
:func:`check_set_function` (the same objects).

Inputs travel as a tensor (passed positionally to the model) or as a mapping of named tensors
(passed as keyword arguments, like a tokenizer's output); every tensor has the examples on its
first axis. :func:`map_inputs` applies a function to every tensor of either form;
:func:`call_model` runs a model on either form, :func:`input_device` says where they go and
:func:`attention_mask_of` finds their attention mask.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NoReturn, Protocol, overload, runtime_checkable

import numpy as np
import torch

from .._validation import as_masks, as_outputs

Inputs = torch.Tensor | Mapping[str, Any]


@runtime_checkable
class SetFunction(Protocol):
    """``n`` features and a function of the set kept: ``evaluate`` maps masks to outputs.

    Attributes
    ----------
    n : int
        Number of features.
    names : list of str, length n
        A readable label per feature (``'L3.H5'``, ``'movie'``, ``'P(2,3)'``).
    groups : (n,) array
        A group label per feature (the layer of a head, the sentence of a word); used for the
        linear / within-group / cross-group energy split.
    """

    n: int
    names: list[str]
    groups: np.ndarray

    def evaluate(self, masks: np.ndarray) -> np.ndarray:
        """Outputs ``(m,)`` float for masks ``(m, n)`` bool, True = feature kept.

        Each output must depend on its own mask row only, not on the other rows evaluated
        with it.
        """


@runtime_checkable
class Masker(Protocol):
    """Features that mask a model or its inputs; :class:`compattr.query.MaskedModel` evaluates them.

    ``masking(masks, inputs)`` is a context manager: inside it, running the model on the
    inputs it yields computes row ``b`` with the features of ``masks[b]`` kept. Maskers
    that own their inputs (a text, an image) expose them as ``inputs``; others set it to None.
    A masker whose ``masking`` also takes ``examples`` (each row's example index, e.g. to
    patch from that example's corrupted twin) is given them by
    :class:`~compattr.query.MaskedModel`.
    """

    n: int
    names: list[str]
    groups: np.ndarray

    @property
    def inputs(self) -> Inputs | None:
        """The examples the features own (a text, an image), or None."""

    def masking(self, masks: torch.Tensor, inputs: Inputs) -> AbstractContextManager[Inputs]:
        """Mask ``inputs`` (B examples) row by row with ``masks`` ``(B, n)`` bool."""

    def fingerprint(self) -> str:
        """A string that changes whenever the features would give other outputs."""


@overload
def map_inputs(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor: ...
@overload
def map_inputs(fn: Callable[[torch.Tensor], torch.Tensor], inputs: Mapping[str, Any]) -> dict[str, Any]: ...
def map_inputs(fn: Callable[[torch.Tensor], torch.Tensor], inputs: Inputs) -> Inputs:
    """Apply ``fn`` to the tensor ``inputs`` or to every tensor value of a mapping (a dict)."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    return {k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


@contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the block (no dropout; batch norm's running statistics),
    every module's training flag restored after, also on exceptions: a model left in
    training mode would give every mask random outputs, and the cache would keep them."""
    every = getattr(model, "modules", None)  # a plain callable standing in for a model has none
    modes = [(module, module.training) for module in every()] if callable(every) else []
    if not any(training for _, training in modes):
        yield
        return
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def call_model(model: torch.nn.Module, inputs: Inputs, **options: Any) -> Any:
    """Run ``model`` on a tensor (positional) or a mapping of tensors (keyword arguments).

    A mapping's ``input_ids`` go first, positionally, to a model whose ``forward`` has no
    parameter of that name but a positional first one (TransformerLens's ``input``; read
    through a ``DataParallel`` or ``torch.compile`` wrapper), the rest as keyword arguments.
    Models whose ``forward`` takes ``use_cache`` get ``use_cache=False``:
    compattr never decodes incrementally through the model, and a cache would only cost
    memory. ``options`` are passed as keyword arguments.
    """
    if isinstance(inputs, torch.Tensor):
        return model(inputs, **options)
    kwargs = {**inputs, **options}
    if forward_takes(type(model), "use_cache"):
        kwargs.setdefault("use_cache", False)
    run: type = type(_innermost(model))  # the model a wrapper (DataParallel, torch.compile) runs
    if "input_ids" in kwargs and _tokens_go_first(run):
        return model(kwargs.pop("input_ids"), **kwargs)
    return model(**kwargs)


def forward_takes(model_class: type, name: str) -> bool:
    """Whether ``model_class.forward`` has a parameter called ``name`` (cached per class)."""
    return name in _forward_parameters(model_class)


@functools.cache
def _forward_parameters(model_class: Any) -> frozenset[str]:
    """The parameter names of ``model_class.forward``; none when it has no introspectable one."""
    try:
        return frozenset(inspect.signature(model_class.forward).parameters)
    except (AttributeError, TypeError, ValueError):
        return frozenset()


def _innermost(model: Any) -> Any:
    """The model a wrapper runs: ``DataParallel``'s and ``DistributedDataParallel``'s
    ``module``, ``torch.compile``'s ``_orig_mod``, unwrapped until neither is left (a model's
    own submodule called ``module`` is not a wrapper's)."""
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(model, parallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


@functools.cache
def _tokens_go_first(model_class: Any) -> bool:
    """Whether ``model_class.forward`` takes its tokens as a positional first parameter not
    called ``input_ids`` (TransformerLens: ``input``): False where it has ``input_ids`` or no
    introspectable signature."""
    try:
        parameters = list(inspect.signature(model_class.forward).parameters.values())
    except (AttributeError, TypeError, ValueError):
        return False
    if any(p.name == "input_ids" for p in parameters):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    first = [p for p in parameters if p.name != "self"][:1]
    return bool(first) and first[0].kind in positional


def masks_by_example(masker: Any) -> bool:
    """Whether ``masker.masking`` takes ``examples`` (each batch row's example, e.g. to patch
    from that example's corrupted twin): :class:`~compattr.query.MaskedModel` and the
    combinators pass them only then."""
    return "examples" in inspect.signature(masker.masking).parameters


def input_device(model: torch.nn.Module) -> torch.device:
    """Where the model's inputs go: its input embeddings' device, else its first parameter's."""
    get = getattr(model, "get_input_embeddings", None)
    weight = getattr(get(), "weight", None) if callable(get) else None
    if weight is not None and weight.device.type != "meta":
        return weight.device
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def n_examples(inputs: Inputs) -> int:
    """Length of the first axis shared by all tensors of ``inputs``."""
    sizes = {t.shape[0] for t in _tensors(inputs)}
    if len(sizes) != 1:
        raise ValueError(
            "inputs must hold tensors with the examples on their first axis and the same "
            f"number of examples each; got first-axis sizes {sorted(sizes) or 'none'}."
        )
    return sizes.pop()


def attention_mask_of(inputs: Inputs) -> torch.Tensor | None:
    """The ``attention_mask`` (examples, tokens) of inputs given as a mapping (a dict or a
    tokenizer's ``BatchEncoding``, which is not a dict), else None."""
    return inputs.get("attention_mask") if isinstance(inputs, Mapping) else None


def with_positions(model: torch.nn.Module, inputs: Inputs) -> Inputs:
    """``inputs`` with position ids counted from each row's first attended token where rows
    are left-padded, as a row without padding has them: a model of absolute positions
    (GPT-2, BERT) would otherwise see every token of such a row shifted by its padding.

    Unchanged where no row is left-padded, where the inputs give ``position_ids``, where the
    model takes none, or where it counts positions from the tokens itself, skipping its
    padding token (RoBERTa, XLM-R: a position embedding with a ``padding_idx``).
    """
    mask = attention_mask_of(inputs)
    if mask is None or not isinstance(inputs, Mapping) or "position_ids" in inputs or not _left_padded(mask):
        return inputs
    if not forward_takes(type(model), "position_ids") or _positions_from_tokens(model):
        return inputs
    return {**inputs, "position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}


def _left_padded(mask: torch.Tensor) -> bool:
    """Whether an attention mask ``(B, S)`` has a row with padding before an attended token."""
    if mask.ndim != 2:
        return False
    attended = mask.bool()
    return bool((~attended[:, :-1] & attended[:, 1:]).any())


def reads_pad_tokens(model: torch.nn.Module) -> bool:
    """Whether ``model`` treats its pad token otherwise than through the attention mask: a
    Hugging Face sequence classifier reads its logits at the last token that is not the pad
    token, a RoBERTa-style position embedding skips it. Text features must not replace
    masked tokens by it there (a masked last word would move the read-out, not be replaced)."""
    return type(model).__name__.endswith("ForSequenceClassification") or _positions_from_tokens(model)


def _positions_from_tokens(model: torch.nn.Module) -> bool:
    """Whether ``model`` counts positions from its tokens, skipping a padding token (a
    position embedding with a ``padding_idx``, as RoBERTa's): given position ids, it would
    lose its own offset."""
    return any(
        isinstance(module, torch.nn.Embedding) and module.padding_idx is not None
        for name, module in model.named_modules()
        if name.split(".")[-1] == "position_embeddings"
    )


def mask_rows(masks, n: int, name: str = "masks") -> torch.Tensor:
    """Masks ``(n,)`` or ``(B, n)`` as a ``(B, n)`` tensor, or raise ``ValueError``.

    A tensor stays as it is (its device, and a float tensor of 0/1, such as ones that carry
    a gradient); anything else becomes a boolean tensor (:func:`as_masks`). Values other
    than 0 and 1 are refused either way.
    """
    if not isinstance(masks, torch.Tensor):
        return torch.from_numpy(as_masks(np.atleast_2d(np.asarray(masks)), n, name=name))
    M = masks.unsqueeze(0) if masks.ndim == 1 else masks
    if M.ndim != 2 or M.shape[1] != n:
        raise ValueError(f"{name} must have shape (n,) or (B, n) with n={n}, got {tuple(masks.shape)}.")
    if M.dtype != torch.bool and ((M != 0) & (M != 1)).any():
        raise ValueError(f"{name} must be boolean or 0/1 (1 = feature kept).")
    return M


def _tensors(inputs: Inputs) -> list[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return [inputs]
    return [v for v in inputs.values() if isinstance(v, torch.Tensor)]


def digest(*parts: Any) -> str:
    """Short SHA-256 hex digest of strings, numbers, arrays, tensors, modules (their class,
    ``repr`` and weights) and (nested) sequences, mappings and sets: the same in every
    process (a set's members in the order of their own digests, not of string hashing)."""
    h = hashlib.sha256()

    def feed(p: Any) -> None:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu()
            if p.dtype == torch.bfloat16:
                p = p.float()
            p = p.numpy()
        if isinstance(p, np.ndarray) and p.dtype == object:  # its bytes are pointers
            h.update(f"object{p.shape}".encode())
            feed(p.tolist())
        elif isinstance(p, np.ndarray):
            h.update(f"{p.dtype}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, Mapping):
            for k in _sorted_keys(p):
                feed(k)  # itself: the key 1 is not the key "1"
                feed(p[k])
        elif isinstance(p, (set, frozenset)):
            h.update(b"{")
            for q in sorted(p, key=digest):
                feed(q)
            h.update(b"}")
        elif isinstance(p, torch.nn.Module):  # a repr names the layers, not their weights
            feed([type(p).__qualname__, repr(p), dict(p.state_dict())])
        elif isinstance(p, (list, tuple)):
            h.update(b"[")
            for q in p:
                feed(q)
            h.update(b"]")
        else:
            h.update(repr(p).encode())
        h.update(b"|")

    for p in parts:
        feed(p)
    return h.hexdigest()[:16]


def _sorted_keys(mapping: Mapping) -> list:
    """A mapping's keys in an order that does not depend on how it was built: sorted where
    they are all strings, else by their own :func:`digest` (keys of several types, which
    ``sorted`` refuses, and frozensets, which it orders by inclusion alone)."""
    if all(isinstance(k, str) for k in mapping):
        return sorted(mapping)
    return sorted(mapping, key=digest)


def _fail(message: str) -> NoReturn:
    raise AssertionError(f"check_set_function: {message}")


def check_set_function(
    features: SetFunction, masks: np.ndarray | None = None, seed: int = 0, atol: float = 1e-4
) -> None:
    """Check that ``features`` behaves as compattr needs; raise ``AssertionError`` if not.

    Checks the attributes (``n``, ``names``, ``groups``), that ``evaluate`` returns one finite
    float per mask, that it is deterministic, that each output depends on its own mask row
    only (evaluating rows alone, reversed or together gives the same outputs), that a mask
    matrix of the wrong width is refused with ``ValueError``, and that ``fingerprint()``, when
    present, is a stable string or mapping of strings.

    Parameters
    ----------
    features : SetFunction
        The set function to check (your own features, or a
        :class:`~compattr.query.MaskedModel`).
    masks : (m, n) bool array, optional
        Masks to evaluate; default: the full mask, the empty mask and 6 random ones.
    seed : int
        Seed for the random masks.
    atol : float
        Absolute tolerance (plus the same relative tolerance) when comparing outputs of the
        same mask evaluated in different batches; float32 models differ by ~1e-6.
    """
    n = getattr(features, "n", None)
    if not isinstance(n, (int, np.integer)) or n < 1:
        _fail(f"n must be a positive int, got {n!r}.")
    n = int(n)
    names = list(getattr(features, "names", []))
    if len(names) != n or not all(isinstance(s, str) for s in names):
        _fail(f"names must be {n} strings, got {len(names)} entries.")
    if len(set(names)) != n:
        _fail("names must be unique.")
    groups = np.asarray(getattr(features, "groups", None))
    if groups.shape != (n,):
        _fail(f"groups must have shape ({n},), got {groups.shape}.")
    if masks is None:
        rng = np.random.default_rng(seed)
        masks = np.vstack([np.ones(n, bool), np.zeros(n, bool), rng.random((6, n)) < 0.5])
    masks = as_masks(masks, n)
    m = len(masks)
    y = as_outputs(features.evaluate(masks), m, name="evaluate(masks)")
    again = as_outputs(features.evaluate(masks), m, name="evaluate(masks)")
    if not np.allclose(y, again, rtol=atol, atol=atol):
        _fail("evaluate is not deterministic: the same masks gave different outputs.")
    rev = as_outputs(features.evaluate(masks[::-1]), m, name="evaluate(reversed masks)")
    if not np.allclose(y, rev[::-1], rtol=atol, atol=atol):
        _fail("outputs depend on the order of the mask rows (rows must be independent).")
    alone = np.array([as_outputs(features.evaluate(masks[i : i + 1]), 1)[0] for i in range(m)])
    if not np.allclose(y, alone, rtol=atol, atol=atol):
        worst = int(np.abs(y - alone).argmax())
        _fail(
            f"row {worst} gives {alone[worst]!r} alone but {y[worst]!r} in a batch: outputs "
            "depend on the other rows (per-row masking is broken)."
        )
    try:
        features.evaluate(np.ones((1, n + 1), bool))
    except ValueError:
        pass
    else:
        _fail(f"evaluate accepted masks with {n + 1} columns; it must raise ValueError.")
    if hasattr(features, "fingerprint"):
        fp = features.fingerprint()
        readable = isinstance(fp, str) or (isinstance(fp, Mapping) and all(isinstance(v, str) for v in fp.values()))
        if not readable or fp != features.fingerprint():
            _fail("fingerprint() must return the same string (or str -> str mapping) every call.")


#: The earlier names of :class:`SetFunction` and :func:`check_set_function` (the same objects).
FeatureSet = SetFunction
check_feature_set = check_set_function


def names_from(names: Sequence[str] | None, n: int, default: Callable[[int], str]) -> list[str]:
    """``names`` as a list of ``n`` strings, or ``default(i)`` for each ``i`` when None."""
    if names is None:
        return [default(i) for i in range(n)]
    names = [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"got {len(names)} names for {n} features.")
    return names
