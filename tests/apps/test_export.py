"""compattr.apps.export: interaction values in shapiq's InteractionValues format."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

import compattr
from compattr.apps import export

#: A Python with shapiq installed (its own environment): the round trip runs through it.
SHAPIQ_PYTHON = os.environ.get("COMPATTR_SHAPIQ_PYTHON")


@pytest.fixture
def sp():
    return compattr.synthetic.complete_hierarchy(7, n_sets=3, order=3, seed=4)


@pytest.mark.parametrize("index", list(export.SHAPIQ_INDICES))
def test_json_holds_the_index_in_shapiqs_layout(sp, index, tmp_path):
    path = export.write_shapiq_json(sp, tmp_path / "values.json", index, 2, budget=123, description="test")
    payload = json.loads(path.read_text())
    meta = payload["metadata"]
    assert payload["object_name"] == "InteractionValues" and payload["data_type"] == "interaction_values"
    assert meta["n_players"] == 7 and meta["index"] == index and meta["max_order"] == 2
    assert meta["estimation_budget"] == 123
    assert meta["baseline_value"] == pytest.approx(sp.predict(np.zeros((1, 7), bool))[0])
    expected = export.shapiq_values(sp, index, 2)
    keys = {("Empty" if not t else ",".join(map(str, t))): v for t, v in expected.items()}
    assert payload["data"] == pytest.approx(keys)
    assert meta["min_order"] == (0 if "Empty" in payload["data"] else 1)
    assert max(len(k.split(",")) for k in payload["data"] if k != "Empty") <= 2


def test_values_are_compattrs_indices(sp):
    assert export.shapiq_values(sp, "k-SII", 3) == pytest.approx(compattr.indices.k_sii(sp, 3))
    assert export.shapiq_values(sp, "SII", 2) == pytest.approx(compattr.indices.shapley_interaction(sp, max_order=2))
    assert export.shapiq_values(sp, "Moebius", 7) == pytest.approx(compattr.indices.moebius(sp))


def test_bad_requests_are_refused(sp, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown shapiq index"):
        export.shapiq_values(sp, "SHAP")
    with pytest.raises(ValueError, match="max_order"):
        export.shapiq_values(sp, "k-SII", 0)
    with pytest.raises(ValueError, match=r"\.json"):
        export.write_shapiq_json(sp, tmp_path / "values.txt")
    import builtins

    real_import = builtins.__import__

    def no_shapiq(name, *args, **kwargs):
        if name == "shapiq":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_shapiq)
    with pytest.raises(ImportError, match="write_shapiq_json"):
        export.to_shapiq(sp)


@pytest.mark.skipif(not SHAPIQ_PYTHON, reason="set COMPATTR_SHAPIQ_PYTHON to a Python with shapiq installed")
def test_shapiq_loads_the_file_and_its_plots_read_it(sp, tmp_path):
    path = export.write_shapiq_json(sp, tmp_path / "values.json", "k-SII", 2)
    script = (
        "import json, sys; from pathlib import Path; from shapiq import InteractionValues\n"
        "iv = InteractionValues.from_json_file(Path(sys.argv[1]))\n"
        "second = iv.get_n_order_values(2)\n"
        "print(json.dumps({'values': {','.join(map(str, t)): float(iv[t]) for t in iv.interaction_lookup},"
        " 'baseline': iv.baseline_value, 'pair01': float(second[0, 1])}))\n"
    )
    out = json.loads(
        subprocess.run([SHAPIQ_PYTHON, "-c", script, str(path)], capture_output=True, check=True, text=True).stdout
    )
    ours = export.shapiq_values(sp, "k-SII", 2)
    assert out["values"] == pytest.approx({",".join(map(str, t)): v for t, v in ours.items()})
    assert out["pair01"] == pytest.approx(ours.get((0, 1), 0.0))
