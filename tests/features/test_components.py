"""Components and Grouped: the KV groups they carry, against the model's own attention layout."""

from __future__ import annotations

import re

import numpy as np
import torch

from compattr._testing import tiny_llama
from compattr.features import AttentionHeads, Components, Grouped, MLPBlocks, attention_layers, kv_groups

torch.set_num_threads(1)


def kv_head_read(model, name: str) -> tuple[int, int] | None:
    """(layer, key/value head) that query head ``name`` ('L1.H3') reads, from the config as
    Hugging Face's ``repeat_kv`` lays heads out; None for anything but a query head."""
    found = re.fullmatch(r"L(\d+)\.H(\d+)", name)
    if found is None:
        return None
    per_kv = model.config.num_attention_heads // model.config.num_key_value_heads
    return int(found[1]), int(found[2]) // per_kv


def same_partition(ids: np.ndarray, keys: list) -> bool:
    """Whether ``ids`` and ``keys`` put the same features together (and apart)."""
    return all((ids[i] == ids[j]) == (keys[i] == keys[j]) for i in range(len(keys)) for j in range(len(keys)))


def test_heads_plus_mlps_carry_the_heads_kv_groups_and_minus_one_for_the_mlps():
    model = tiny_llama(layers=3, heads=4, kv_heads=2)
    both = AttentionHeads(model, rescale=False) + MLPBlocks(model)
    assert both.kv_groups.dtype == np.int64
    assert both.kv_groups.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, -1, -1, -1]
    reads = [kv_head_read(model, name) for name in both.names]
    assert [r is None for r in reads] == (both.kv_groups < 0).tolist() == (both.kinds == "MLPBlocks").tolist()
    assert same_partition(both.kv_groups, reads)


def test_kv_ids_of_several_parts_never_coincide():
    model = tiny_llama(layers=3, heads=4, kv_heads=2)
    parts = MLPBlocks(model, layers=[0]) + AttentionHeads(model, layers=[0], rescale=False)
    parts = parts + AttentionHeads(model, layers=[2], rescale=False)
    assert parts.names[:2] == ["L0.MLP", "L0.H0"] and parts.kinds[0] == "MLPBlocks"
    assert parts.kv_groups[0] == -1
    heads = parts.kv_groups[1:]
    assert (heads >= 0).all() and same_partition(heads, [kv_head_read(model, n) for n in parts.names[1:]])
    # a layer subset keeps the heads' global ids; a later part's ids are moved past them
    assert AttentionHeads(model, layers=[2]).kv_groups.tolist() == [4, 4, 5, 5]
    assert set(heads[:4].tolist()).isdisjoint(heads[4:].tolist())


def test_grouped_features_have_kv_groups_only_when_each_lies_in_one():
    model = tiny_llama(layers=3, heads=4, kv_heads=2)
    heads = AttentionHeads(model, rescale=False)
    kv = kv_groups(heads)
    assert kv.kv_groups.tolist() == kv.labels.tolist() == list(range(6))  # each feature one KV group
    assert attention_layers(heads).kv_groups is None  # a layer holds two KV groups
    assert Grouped(MLPBlocks(model), [0, 0, 1]).kv_groups is None  # no KV groups below
    mqa = AttentionHeads(tiny_llama(layers=2, heads=4, kv_heads=1), rescale=False)
    assert attention_layers(mqa).kv_groups.tolist() == [0, 1]  # multi-query: the layer is the KV group
    assert (kv + MLPBlocks(model)).kv_groups.tolist() == [0, 1, 2, 3, 4, 5, -1, -1, -1]
    assert (attention_layers(heads) + MLPBlocks(model)).kv_groups is None
    # grouping heads + MLPs: a group with one KV group's heads and an MLP keeps that KV group
    both = heads + MLPBlocks(model)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0, 6, 6])  # L0.MLP joins KV group 0
    assert Grouped(both, labels).kv_groups.tolist() == [0, 1, 2, 3, 4, 5, -1]


def test_a_single_kind_of_parts_without_kv_groups_has_none():
    model = tiny_llama(layers=2, heads=4, kv_heads=2)
    mlps = Components(MLPBlocks(model, layers=[0]), MLPBlocks(model, layers=[1]))
    assert mlps.kv_groups is None and mlps.kinds.tolist() == ["MLPBlocks", "MLPBlocks"]
