"""The package layout: old import paths still work, no private imports across modules, no cycles."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import compattr

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "compattr"

# The import paths of the flat layout (before the subpackages), with names read from them.
OLD_PATHS = {
    "compattr.values": ["ClassLogit", "LogLikelihood", "Margin", "MultipleChoice", "Value", "margin", "logits_of"],
    "compattr.masks": ["budget", "sample_masks"],
    "compattr.cache": ["QueryCache", "CacheMismatchError", "CacheCorruptError"],
    "compattr.lasso": ["LassoBaseline"],
    "compattr.indices": ["shapley", "banzhaf", "influence", "moebius", "or_index", "faith_shapley"],
    "compattr.metrics": ["faithfulness", "dsr", "scr", "shr"],
    "compattr.tasks": ["QuestionSet", "capitals", "from_jsonl", "compare_plans", "accuracy", "METRIC_RANGES"],
    "compattr.models": ["load_model", "smollm2", "MissingAssetError", "ALIASES"],
    "compattr.cli": ["main", "build_parser", "keep_value", "markdown_table", "plan_size", "write_explanation"],
    "compattr.plots": ["head_interactions", "layer_energy", "words_html", "save"],
    "compattr.query": ["Query", "run_queries", "PrefixCache", "model_fingerprint", "input_device"],
    "compattr.proxy": ["ProxySPEX", "PAPER_GRID"],
    "compattr.spectrum": ["Spectrum", "EnergySplit", "group_padded_rows", "parity_matrix"],
    "compattr.optimize": ["PruningPlan", "ValueRangeWarning", "best_subset", "removal", "lasso_subset", "best_of_n"],
    "compattr.explain": ["Explanation", "explain", "held_out_masks"],
}


# ----------------------------------------------------------------------------- module index
def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(name: str) -> str:
    """The package a module's relative imports start from."""
    return name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]


def _resolve(module: str, node: ast.ImportFrom) -> str | None:
    """The absolute module a ``from ... import`` names, or None outside compattr."""
    if node.level == 0:
        target = node.module or ""
    else:
        base = _package_of(module).split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    return target if target == "compattr" or target.startswith("compattr.") else None


def _imported_modules(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The compattr modules an import statement loads (a name may be a submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "compattr"]
    base = _resolve(module, node)
    if base is None:
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _import_time_nodes(tree: ast.Module):
    """Import statements run when the module is imported: not those inside functions or
    under ``if TYPE_CHECKING:``."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Module -> the compattr modules its import-time imports run first.

    Importing ``a.b.c`` runs the packages ``a`` and ``a.b`` first unless they are already
    being imported, which they are when the importing module lives inside them.
    """
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        inside = set(_ancestors(name)) | {name}
        for node in _import_time_nodes(ast.parse(path.read_text())):
            for target in _imported_modules(name, node):
                graph[name] |= {p for p in _ancestors(target) if p not in inside}
                if target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# ----------------------------------------------------------------------------- the rules
def test_the_package_has_the_pipeline_layout():
    for package in ("features", "query", "proxy", "spectrum", "optimize", "apps"):
        assert f"compattr.{package}" in MODULES and (PACKAGE / package / "__init__.py").exists()
    top = {name for name in MODULES if name.count(".") == 1}
    packages = {f"compattr.{p}" for p in ("features", "query", "proxy", "spectrum", "optimize", "apps")}
    entry_points = {"compattr.explain", "compattr.explain_shapley"}  # the whole pipeline in one call each
    assert top == {"compattr._testing", "compattr._validation", "compattr.synthetic", *entry_points, *packages}
    assert _imported_modules("compattr.spectrum.supports", ast.parse("from .. import _validation").body[0]) == [
        "compattr._validation"
    ]


def test_no_module_imports_another_modules_private_names():
    offences = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        modules = {}  # local name -> compattr module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (base := _resolve(name, node)) is not None:
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in MODULES:
                        modules[alias.asname or alias.name] = target
                    elif alias.name.startswith("_") and not alias.name.startswith("__"):
                        offences.append(f"{name}:{node.lineno} imports {alias.name} from {base}")
        for node in ast.walk(tree):  # module._name, through a module imported by name
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offences.append(f"{name}:{node.lineno} reads {node.attr} of {modules[node.value.id]}")
    assert offences == []


def test_module_imports_have_no_cycles():
    graph = import_graph()
    assert graph["compattr.proxy.proxyspex"] >= {"compattr.proxy.search", "compattr.spectrum"}
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check works
    # supports is a leaf: nothing of compattr but the shared input checks
    assert graph["compattr.spectrum.supports"] <= {"compattr._validation"}


def test_all_names_exist():
    missing = [name for name in compattr.__all__ if not hasattr(compattr, name)]
    assert missing == []
    assert compattr.__version__ == importlib.metadata.version("compattr")


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_old_import_paths_still_work(module):
    imported = importlib.import_module(module)
    assert [name for name in OLD_PATHS[module] if not hasattr(imported, name)] == []
    alias = module.rsplit(".", 1)[1]
    assert getattr(compattr, alias) is sys.modules[module] or module == "compattr.explain"


def test_earlier_names_are_the_same_objects_as_the_new_ones():
    """``FeatureSet`` / ``check_feature_set`` / ``Query`` are aliases of the clearer names, exported
    wherever the earlier names were (and the new names beside them)."""
    from compattr.features import base, check_feature_set, check_set_function
    from compattr.query import evaluator

    assert compattr.FeatureSet is compattr.SetFunction is compattr.features.FeatureSet is base.SetFunction
    assert compattr.features.SetFunction is base.FeatureSet
    assert compattr.check_feature_set is compattr.check_set_function is check_feature_set is check_set_function
    assert check_set_function is base.check_feature_set is base.check_set_function
    assert compattr.Query is compattr.MaskedModel is compattr.query.Query is compattr.query.MaskedModel
    assert evaluator.Query is evaluator.MaskedModel is sys.modules["compattr.query"].Query
    assert compattr.MaskedModel.__name__ == "MaskedModel" and compattr.SetFunction.__name__ == "SetFunction"
    for names, module in [
        ({"SetFunction", "FeatureSet", "check_set_function", "check_feature_set", "MaskedModel", "Query"}, compattr),
        ({"SetFunction", "FeatureSet", "check_set_function", "check_feature_set"}, compattr.features),
        ({"MaskedModel", "Query", "cache_folder"}, compattr.query),
    ]:
        assert names <= set(module.__all__), module.__name__


def test_moved_modules_are_the_old_modules():
    assert compattr.values is compattr.query.values and compattr.tasks is compattr.apps.tasks
    assert sys.modules["compattr.indices"] is compattr.spectrum.indices
    from compattr.tasks import QuestionSet

    assert QuestionSet is compattr.apps.tasks.QuestionSet


@pytest.mark.slow  # a fresh interpreter imports compattr (torch...)
def test_old_paths_import_first_in_a_fresh_interpreter():
    code = (
        "import compattr.values, compattr.cli\n"
        "from compattr.tasks import QuestionSet\n"
        "from compattr.query import Query, run_queries, PrefixCache\n"
        "from compattr.proxy import ProxySPEX\n"
        "assert compattr.values.ClassLogit and compattr.cli.main and compattr.indices.shapley\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


# ----------------------------------------------------------------------------- documented paths
def _python_sources() -> dict[str, str]:
    """Python code of the README's and docs' python blocks, the notebook and the scripts."""
    sources = {}  # a document's blocks (a notebook's cells) share their names: one source each
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        sources[doc.name] = "\n".join(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S))
    notebook = json.loads((REPO / "notebooks" / "walkthrough.ipynb").read_text())
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    lines = "\n".join(cells).splitlines()
    sources["walkthrough.ipynb"] = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
    for folder in ("recipes", "benchmarks"):
        for path in sorted((REPO / folder).glob("*.py")):
            sources[str(path.relative_to(REPO))] = path.read_text()
    return sources


def _resolves(path: str) -> bool:
    """Whether ``compattr.a.b.c`` names a module or an attribute reachable from one."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def documented_paths() -> dict[str, set[str]]:
    """Every ``compattr...`` path the docs, the notebook, the recipes and the benchmarks use:
    imports, attribute chains on imported names, and the README's and docs' backticked paths."""
    used: dict[str, set[str]] = {}
    for where, code in _python_sources().items():
        tree = ast.parse(code)
        bound = {"compattr": "compattr"}  # local name -> the compattr path it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "compattr":
                        used.setdefault(a.name, set()).add(where)
                        bound[a.asname or a.name.split(".")[0]] = (a.asname and a.name) or "compattr"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "compattr":
                for a in node.names:
                    used.setdefault(f"{node.module}.{a.name}", set()).add(where)
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            chain = []
            while isinstance(node, ast.Attribute):
                chain.append(node.attr)
                node = node.value
            if chain and isinstance(node, ast.Name) and node.id in bound:
                used.setdefault(".".join([bound[node.id], *reversed(chain)]), set()).add(where)
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for path in re.findall(r"`(compattr(?:\.\w+)+)`", doc.read_text()):
            used.setdefault(path, set()).add(doc.name)
    return used


def test_every_documented_path_resolves():
    used = documented_paths()
    assert {"compattr.values.LogLikelihood", "compattr.indices.shapley", "compattr.tasks.capitals"} <= set(used)
    assert {path: sorted(where) for path, where in used.items() if not _resolves(path)} == {}
