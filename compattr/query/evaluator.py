"""Evaluate a model on many masks: :class:`MaskedModel` binds a model, a masker, a value and inputs.

A :class:`MaskedModel` binds a model, a :class:`~compattr.features.base.Masker` (heads, words,
patches), a :class:`~compattr.query.values.Value` and inputs into a
:class:`~compattr.features.base.SetFunction`. Its ``evaluate(masks)`` lays masks x examples out
as rows of one batch (row ``r`` = mask ``r // e``, example ``r % e``), so one forward pass
evaluates many masks; picks the batch size (growing it while throughput rises, with
``batch_size="auto"``) and halves it on out-of-memory; runs under ``torch.inference_mode``
with masks on the inputs' device; and reuses what no mask changes, exactly: for attention
heads, the layers before the first masked layer run once per example batch and only the later
layers per mask batch (:class:`~compattr.features.replay.LayerReplay`); for token masks after
a fixed prompt prefix, the prefix's key/value cache is computed once
(:class:`~compattr.query.prefix.PrefixCache`).

:func:`~compattr.query.runner.run_queries` evaluates it on a mask matrix, cached and
resumable. This is the call path of ``compattr.explain``::

    query = MaskedModel(model, features=heads, value=ClassLogit(), inputs=batch)
    X = compattr.sample_masks(query.n, m, seed=seed)
    y = run_queries(query, X, cache_dir=cache_dir)      # (m,) outputs
    est = compattr.ProxySPEX(seed=seed).fit(X, y)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, cast

import numpy as np
import torch

from .._validation import as_masks
from ..features.architectures import text_config
from ..features.base import (
    Inputs,
    Masker,
    SetFunction,
    digest,
    evaluation_mode,
    input_device,
    map_inputs,
    masks_by_example,
    n_examples,
    reads_pad_tokens,
)
from .prefix import PrefixCache
from .values import Value

_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class MaskedModel:
    """A model, a masker, a value function and inputs, evaluated as a :class:`SetFunction`.

    ``Query`` is its earlier name (the same class).

    Parameters
    ----------
    model : torch.nn.Module
        The model; it runs in eval mode (no dropout) while masks are evaluated, whatever
        mode it is in, and is put back in its own mode after.
    features : Masker
        What to mask: :class:`~compattr.features.AttentionHeads` (of this model),
        :class:`~compattr.features.Words`, :class:`~compattr.features.ImagePatches`, ...
    value : Value
        What to measure, e.g. :class:`~compattr.values.ClassLogit`.
    inputs : tensor or mapping of tensors, optional
        ``E`` examples on the first axis; default ``features.inputs`` (text, images).
        Moved to the device of the model's input embeddings.
    batch_size : int or "auto", optional
        Rows (mask x example pairs) per forward pass, halved on out-of-memory. ``"auto"``
        starts at 256 and doubles while the masks evaluated per second rise by at least 10 %
        (up to 8,192 rows), keeping the best size; it is the default on an accelerator. The
        default on CPU is 64, where larger batches gained nothing (docs/results.md).
    replay : bool
        Reuse what no mask changes: the output of the unmasked leading layers (attention heads
        not in layer 0), or the key/value cache of a fixed prompt prefix (text features with a
        ``prefix``, on Hugging Face causal LMs).

    Notes
    -----
    What it reuses (the value's targets and greedy answers, the replayed layers' outputs,
    the prefix's key/value cache) is computed again when the model's weights change in place
    between calls (fine-tuning, pruning, another checkpoint loaded into the same object), as
    :func:`model_fingerprint`, the cache's key, changes. Writes through ``.data``
    (``p.data.mul_(0)``) leave no trace in the tensors' versions, which :meth:`evaluate`
    checks: they are seen when the weights are read whole (:meth:`fingerprint`, which
    ``run_queries`` with a ``cache_dir`` calls); without a cache, write under
    ``torch.no_grad()`` instead (``p.mul_(0)``) or build a new one. What the features recorded from the
    model when they were built (mean ablation's reference means, patching's corrupted
    activations) is theirs: build them again for new weights.

    Attributes
    ----------
    n, names, groups
        Those of ``features``.
    kinds : (n,) array of str or None
        ``features.kinds`` when it has them (heads and MLP blocks together), else None.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        features: Masker,
        value: Value,
        inputs: Inputs | None = None,
        *,
        batch_size: int | str | None = None,
        replay: bool = True,
    ):
        if getattr(features, "model", model) is not model:
            raise ValueError("features were built for another model than the one given to MaskedModel.")
        replacement = getattr(features, "replacement_id", None)
        pad = getattr(text_config(model), "pad_token_id", None)
        if replacement is not None and replacement == pad and reads_pad_tokens(model):
            raise ValueError(
                f"the features replace masked tokens by {type(model).__name__}'s pad token (id {pad}), "
                "which it reads as padding (a classifier takes its logits at the last token that is not "
                "pad): masking the last words would move the read-out. Pass replacement= (another token) "
                "to the text features."
            )
        if inputs is None:
            inputs = getattr(features, "inputs", None)
            if inputs is None:
                raise ValueError(f"{type(features).__name__} owns no inputs; pass inputs=.")
        if (
            batch_size is not None
            and batch_size != "auto"
            and not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1)
        ):
            raise ValueError(f"batch_size must be a positive int or 'auto', got {batch_size!r}.")
        self.model = model
        self.features = features
        self.value = value
        self.n, self.names, self.groups = features.n, features.names, features.groups
        self.kinds = getattr(features, "kinds", None)
        self.device = input_device(model)
        self.inputs = map_inputs(lambda t: t.to(self.device), inputs)
        if batch_size is None:
            batch_size = 64 if self.device.type == "cpu" else "auto"
        self._sizer = _BatchSizer(256) if batch_size == "auto" else None
        self.batch_size = self._sizer.size if self._sizer else int(batch_size)
        layer_replay = getattr(features, "layer_replay", None)
        self._layer_replay = layer_replay() if (replay and layer_replay is not None) else None
        self._prefix_cache = None
        fixed = getattr(features, "fixed_prefix", 0)
        if replay and fixed > 0 and PrefixCache.supports(model):
            ids = self.inputs["input_ids"] if isinstance(self.inputs, Mapping) else self.inputs
            self._prefix_cache = PrefixCache(model, ids[:1, :fixed])
        # maskers that patch from paired inputs are told each batch row's example
        self._takes_examples = masks_by_example(features)
        self._prepared: tuple[Inputs, Any] | None = None
        self._captured: dict[tuple[int, int], Any] = {}  # layer-replay outputs per example slice
        self._weights: tuple = ()  # the weights' state those were computed with (_weights_state)
        self._model_key: str | None = None  # the model fingerprint those were computed with, where read

    def fingerprint(self) -> dict[str, str]:
        """What the outputs depend on: model weights, features, value function and inputs.

        Reading the weights, it also forgets what was computed from other weights (the
        greedy answers, the layer replay's captures): writes through ``.data`` (``p.data.mul_(0)``)
        leave no trace in a tensor's version, so only this full read sees them, and outputs
        of the weights before must not be stored under the key of these."""
        model = model_fingerprint(self.model)
        if model != self._model_key:
            self._forget_prepared()
            self._model_key = model
        return {
            "model": model,
            "features": self.features.fingerprint(),
            "value": self.value.fingerprint(),
            "inputs": f"inputs#{digest(self.inputs)}",
        }

    def evaluate(self, masks, per_example: bool = False) -> np.ndarray:
        """Outputs of masks ``(m, n)`` bool (True = feature kept).

        Parameters
        ----------
        masks : (m, n) bool array
        per_example : bool
            Return every example's output (the value's ``per_example``, e.g. whether each
            question was answered right) instead of their mean.

        Returns
        -------
        (m,) float64 array, or (m, Q) with ``per_example``
        """
        X = as_masks(masks, self.n)
        M = torch.from_numpy(X).to(self.device)
        out: list[np.ndarray] = []
        with torch.inference_mode(), evaluation_mode(self.model):
            inputs, targets = self._prepare()
            E = n_examples(inputs)
            i = 0
            while i < len(X):
                e = min(E, self.batch_size)
                b = max(1, self.batch_size // e)
                start = time.perf_counter()
                try:
                    out.append(self._evaluate_batch(M[i : i + b], inputs, targets, e, per_example))
                except Exception as error:
                    if not _is_oom(error) or self.batch_size == 1:
                        raise
                    self._shrink()
                    continue
                if self._sizer is not None and i + b <= len(X):  # full batches only
                    self._sizer.observe(b / (time.perf_counter() - start))
                    self.batch_size = self._sizer.size
                i += b
        return np.concatenate(out) if out else np.empty((0, 0) if per_example else 0)

    def mask_gradient(self) -> np.ndarray:
        """``(n,)`` derivative of the value with respect to each feature's mask at the full
        model: the first-order estimate of ``f(all) - f(all but i)``.

        With attention heads or MLP blocks under ``ablation="patch"`` this is *attribution
        patching*: a masked component outputs ``corrupted + m · (clean - corrupted)``, so the
        derivative in ``m`` is the gradient times the clean-minus-corrupted activation
        difference, summed over positions and averaged as the value averages examples. Under
        zero ablation it is gradient × activation, for heads with ``rescale=False``; with
        :class:`~compattr.features.AttentionHeads`' default ``rescale=True`` (kept heads scaled
        by ``H / k``) the rescale moves with the mask too, and head ``i``'s derivative is its
        gradient × activation less the mean of that over its layer's ``H`` heads. It costs
        one forward and one backward pass
        over the examples (plus the corrupted forward the features ran once when built),
        against ``n + 1`` forwards for single-feature ablation.

        The examples run as one batch with the autograd graph held, so memory grows with the
        number of examples; the value must be differentiable (a probability or log-probability,
        not an accuracy).

        Raises
        ------
        TypeError
            The features apply masks in a way gradients cannot pass (e.g. words replaced by a
            mask token), or the value is not differentiable.
        """
        ones = torch.ones(1, self.n, device=self.device, requires_grad=True)
        with evaluation_mode(self.model):
            with torch.no_grad():  # not the cached inference-mode targets: these enter the graph
                inputs, targets = self.value.prepare(self.model, self.inputs, self.batch_size)
            E = n_examples(inputs)
            examples = {"examples": torch.arange(E, device=self.device)} if self._takes_examples else {}
            with torch.enable_grad(), self.features.masking(ones, inputs, **examples) as masked_inputs:
                scores = self.value.score(self.model, masked_inputs, targets).view(1, E)
                value = self.value.reduce(scores).sum()
        # the value may need gradients through the model's weights and still not reach the masks
        # (words replaced by a token): then the masks' gradient is None
        (gradient,) = torch.autograd.grad(value, ones, allow_unused=True) if value.requires_grad else (None,)
        if gradient is None:
            raise TypeError(
                f"the value does not depend differentiably on the masks of {type(self.features).__name__}: "
                "mask_gradient needs features that scale activations (heads, MLPs) and a "
                "differentiable value (a probability or logit, not an accuracy)."
            )
        return gradient[0].double().cpu().numpy()

    def _forget_prepared(self) -> None:
        """Drop what was computed from the model's weights: the value's preparation, the
        layer replay's captures and the prefix's key/value cache."""
        self._prepared = None
        self._captured.clear()
        if self._prefix_cache is not None:
            self._prefix_cache.clear()

    def _prepare(self) -> tuple[Inputs, Any]:
        weights = _weights_state(self.model)
        if weights != self._weights:  # changed in place since: nothing computed before holds
            self._forget_prepared()
            self._weights = weights
        if self._prepared is None:
            self._prepared = self.value.prepare(self.model, self.inputs, self.batch_size)
        return self._prepared

    def _evaluate_batch(
        self, masks: torch.Tensor, inputs: Inputs, targets: Any, e: int, per_example: bool = False
    ) -> np.ndarray:
        """Outputs ``(b,)`` (or ``(b, Q)`` per example) of ``b`` masks, their examples taken
        ``e`` at a time."""
        b, E = len(masks), n_examples(inputs)
        model = self.model if self._prefix_cache is None else self._prefix_cache
        tile = lambda v: v.repeat(b, *([1] * (v.ndim - 1)))  # row r: example r % k
        scores = []
        for j in range(0, E, e):
            k = min(j + e, E) - j
            x, t = (map_inputs(lambda v: v[j : j + k], z) for z in (inputs, targets))
            x_rows, t_rows = map_inputs(tile, x), map_inputs(tile, t)
            rows = masks.repeat_interleave(k, 0)
            examples = {"examples": torch.arange(j, j + k).repeat(b)} if self._takes_examples else {}
            with self._replaying(j, x, t), self.features.masking(rows, x_rows, **examples) as xm:
                scores.append(self.value.score(model, xm, t_rows).view(b, k))
        rows = torch.cat(scores, 1)
        out = self.value.per_example(rows) if per_example else self.value.reduce(rows)
        return out.double().cpu().numpy()

    def _replaying(self, start: int, x: Inputs, t: Any):
        if self._layer_replay is None:
            return nullcontext()
        key = (start, n_examples(x))
        if key not in self._captured:
            self._captured[key] = self._layer_replay.capture(lambda: self.value.score(self.model, x, t))
        return self._layer_replay.replaying(self._captured[key])

    def _shrink(self) -> None:
        self.batch_size //= 2
        if self._sizer is not None:
            self._sizer.stop(self.batch_size)
        self._captured.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


#: The earlier name of :class:`MaskedModel` (the same class).
Query = MaskedModel


class _BatchSizer:
    """``batch_size="auto"``: double the rows per forward pass while throughput rises.

    Each full batch reports its masks per second. The first report is a warm-up and is
    ignored; then a size is kept and doubled (up to ``limit`` rows) when its throughput beats
    the best so far by ``gain``, and growth stops at the first size that does not, going back
    to the best one. Out-of-memory also stops growth (see :meth:`stop`).
    """

    def __init__(self, size: int, limit: int = 8192, gain: float = 1.1):
        self.size, self.limit, self.gain = size, limit, gain
        self.growing, self._warm = True, False
        self._best: tuple[int, float] | None = None  # (size, masks per second)

    def observe(self, rate: float) -> None:
        if not self.growing:
            return
        if not self._warm:
            self._warm = True
            return
        if self._best is not None and rate < self.gain * self._best[1]:
            self.stop(self._best[0] if rate < self._best[1] else self.size)
            return
        self._best = (self.size, rate)
        if 2 * self.size > self.limit:
            self.growing = False
        else:
            self.size *= 2

    def stop(self, size: int) -> None:
        """Stop growing and use ``size`` rows from now on."""
        self.size, self.growing = size, False


def _weights_state(model: torch.nn.Module) -> tuple:
    """Which tensors hold the model's weights and how often each was written: ``(id,
    data pointer, version)`` per parameter and buffer. A write in place (``load_state_dict``,
    ``mul_``) raises a version, a replaced tensor changes the id or pointer. Tensors made
    under ``torch.inference_mode`` keep no version (None): replacing them still shows."""
    if not isinstance(model, torch.nn.Module):  # a stand-in that only runs (tests' wrappers)
        return ()
    state = []
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        try:
            version = tensor._version
        except RuntimeError:  # an inference tensor
            version = None
        state.append((id(tensor), tensor.data_ptr(), version))
    return tuple(state)


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, _OOM) or (isinstance(error, RuntimeError) and "out of memory" in str(error))


def model_fingerprint(model: torch.nn.Module) -> str:
    """Class name plus a SHA-256 of the model's configuration and of every parameter's and
    buffer's name, shape, dtype and bytes.

    Any change of any value (fine-tuning or pruning in place, another checkpoint loaded into
    the same object) changes it, and so does a setting that lives in the configuration alone
    (a norm's epsilon, a soft cap, a sliding window: the Hugging Face ``config`` or a
    TransformerLens ``cfg``, without the entries that name where or how it was loaded, such
    as ``_name_or_path``, ``transformers_version``, ``dtype`` and ``device``), or in the
    generation configuration's end tokens (which end a greedy answer). A model without a
    configuration (a plain ``torch.nn.Module``) is told apart by its modules' ``repr`` (the
    layers, activations, a convolution's stride) and their public plain attributes (a
    temperature set on a module). Tensors are
    copied to the CPU one at a time; a tensor on the ``meta`` device contributes the weights
    accelerate's offload hook holds for it (``cpu_offload``, a ``device_map`` onto "cpu" or
    "disk").

    Raises
    ------
    ValueError
        A tensor is on the ``meta`` device and no offload hook holds its values: two such
        models could not be told apart (run without ``cache_dir``).
    """
    h = hashlib.sha256(type(model).__qualname__.encode())
    settings = _config_settings(model)
    if settings is None:  # no configuration: the modules and their settings say what runs
        # (a memory address in a custom module's repr would change the key in every process)
        settings = {"modules": re.sub(r" at 0x[0-9a-fA-F]+", "", repr(model)), "attributes": _module_settings(model)}
    # the generation configuration's end tokens end greedy answers
    ends = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ends is not None:
        settings = {**settings, "generation eos_token_id": ends}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
            for name, t in named:
                h.update(f"|{kind} {name} {tuple(t.shape)} {t.dtype}|".encode())
                if t.device.type == "meta":
                    t = _offloaded(model, name)
                # an ndarray is a buffer (NumPy's stubs do not say so): hashed without a copy
                h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]
    return f"{type(model).__name__} weights#{h.hexdigest()[:16]}"


def _module_settings(model: torch.nn.Module) -> dict[str, dict]:
    """Each module's public plain settings (numbers, NumPy's too, strings, booleans, tuples
    and lists of them, and functions by name, in its ``__dict__``: a temperature, a slope, a
    stride, ``torch.tanh``), by module name; ``training`` left out (compattr runs models in
    eval mode). A public attribute the module changes as it runs (a call counter) would
    change the key at every run: keep such state in a ``_``-named attribute."""

    def setting(value):  # a JSON-able stand-in for a plain setting, else None
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (tuple, list)):
            items = [setting(v) for v in value]
            return items if all(i is not None or v is None for i, v in zip(items, value)) else None
        if callable(value) and hasattr(value, "__qualname__"):  # an activation held as a function
            return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
        return None

    settings = {}
    for name, module in model.named_modules():
        public = {k: setting(v) for k, v in sorted(vars(module).items()) if not k.startswith("_") and k != "training"}
        settings[name] = {k: v for k, v in public.items() if v is not None}
    return settings


def _offloaded(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The values of ``model``'s tensor ``name`` (on the ``meta`` device) that accelerate's
    offload hook of its module holds (``_hf_hook.weights_map``, in a sequence of hooks too),
    or ``ValueError``."""
    owner, _, leaf = name.rpartition(".")
    hooks = [getattr(model.get_submodule(owner), "_hf_hook", None)]
    while hooks:
        hook = hooks.pop()
        hooks += list(getattr(hook, "hooks", []))
        weights = getattr(hook, "weights_map", None)
        if weights is not None and leaf in weights:
            return weights[leaf]
    raise ValueError(
        f"{name} is on the meta device and no offload hook holds its values: the model's fingerprint "
        "(the query cache's key) cannot tell it from another. Run without cache_dir."
    )


#: Configuration entries that say where or how a model was loaded, not what it computes.
_LOADING_SETTINGS = frozenset({"transformers_version", "dtype", "torch_dtype", "device", "n_devices"})


def _config_settings(model: torch.nn.Module) -> dict | None:
    """The model's configuration as a dict (``config.to_dict()``, else ``cfg.to_dict()``)
    without :data:`_LOADING_SETTINGS` and private (``_``) entries, at every depth; None
    without one."""
    for name in ("config", "cfg"):
        to_dict = getattr(getattr(model, name, None), "to_dict", None)
        if callable(to_dict):
            return _without_loading(to_dict())
    return None


def _without_loading(settings: Any) -> Any:
    if isinstance(settings, Mapping):
        return {
            str(k): _without_loading(v)
            for k, v in settings.items()
            if not (str(k).startswith("_") or k in _LOADING_SETTINGS)
        }
    return settings


def bind(
    model: torch.nn.Module | None,
    features: Masker | SetFunction | None,
    value: Value | None,
    inputs: Inputs | None,
    batch_size: int | str | None = None,
    caller: str = "explain",
) -> SetFunction:
    """The set function to query: ``features`` itself when it evaluates masks (a
    :class:`~compattr.features.base.SetFunction`), else a :class:`MaskedModel` of the model
    (given or ``features.model``), the masker ``features``, ``value`` and ``inputs``.

    Every argument is checked first, as :func:`compattr.explain` and
    :func:`compattr.explain_shapley` take them (``caller`` names the function in the
    messages): a model that is not a ``torch.nn.Module`` (features passed first), no
    ``features``, a model other than the one the features carry, arguments a set function
    would ignore, a masker without a model or without ``value``.

    Raises
    ------
    TypeError, ValueError
        As listed above, before any query.
    """
    if model is not None and not isinstance(model, torch.nn.Module):
        if hasattr(model, "evaluate") or hasattr(model, "masking"):
            raise TypeError(
                f"{caller}'s first argument is the model, got features ({type(model).__name__}). "
                f"Pass them by keyword: {caller}(features=heads, value=..., inputs=...); the model "
                "is read from the features when they carry it."
            )
        raise TypeError(f"{caller}'s model must be a torch.nn.Module, got {type(model).__name__}.")
    if features is None:
        raise ValueError(
            f"{caller} needs features=: what to mask, e.g. compattr.AttentionHeads(model), or a set "
            "function with evaluate(masks)."
        )
    carried = getattr(features, "model", None)
    if model is not None and carried is not None and carried is not model:
        raise ValueError(
            f"the {type(features).__name__} were built for another model than the one given to {caller}: "
            "pass their own model, or none (it is read from the features)."
        )
    if hasattr(features, "evaluate"):
        unused = (("value", value), ("inputs", inputs), ("batch_size", batch_size))
        given = [name for name, arg in unused if arg is not None]
        if model is not None and carried is None:  # a set function that runs no model of ours
            given.insert(0, "model")
        if given:
            raise ValueError(
                f"{type(features).__name__} evaluates masks itself (a set function), so "
                f"{', '.join(f'{g}=' for g in given)} would be ignored: they are for features that "
                "mask a model (heads, words, patches). Set them on the set function instead."
            )
        return cast(SetFunction, features)  # it evaluates masks itself
    if not hasattr(features, "masking"):
        raise TypeError(
            f"features must be a set function (with evaluate(masks)) or a masker (with masking(masks, "
            f"inputs)), got {type(features).__name__}."
        )
    model = model if model is not None else carried
    if model is None:
        raise ValueError(
            f"{type(features).__name__} masks a model but does not carry one: pass the model, "
            f"{caller}(model, features=..., value=...)."
        )
    if value is None:
        raise ValueError(
            f"{type(features).__name__} masks a model: pass value= (what to measure, e.g. "
            "compattr.values.ClassLogit())."
        )
    return MaskedModel(model, features, value, inputs, batch_size=batch_size)
