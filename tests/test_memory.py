"""Repeated ``explain`` calls hold no memory of earlier calls: no live tensors or hooks pile up."""

import gc

import numpy as np
import pytest
import torch

import compattr
from compattr._testing import tiny_llama
from compattr.values import ClassLogit

torch.set_num_threads(1)

pytestmark = pytest.mark.slow  # repeats whole explain runs


def live_tensors() -> int:
    gc.collect()
    return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_repeated_explain_calls_keep_memory_flat(tmp_path):
    model = tiny_llama(layers=2)
    inputs = torch.randint(6, 60, (3, 6), generator=torch.Generator().manual_seed(0))
    heads = compattr.AttentionHeads(model)

    def run(i):
        return compattr.explain(
            model,
            features=heads,
            value=ClassLogit(),
            inputs=inputs,
            budget=60,
            test_masks=20,
            seed=i,
            cache_dir=tmp_path / "queries",
            progress=False,
            baseline=False,
        )

    for i in range(2):  # warm-up: imports, LightGBM and allocator pools
        run(i)
    tensors, rss = live_tensors(), rss_mb()
    for i in range(2, 8):
        assert np.isfinite(run(i).faithfulness)
    assert live_tensors() <= tensors
    assert rss_mb() - rss < 50
    site = model.model.layers[1].self_attn.o_proj
    assert not site._forward_pre_hooks and not site._forward_hooks
