"""Building models lives below both the service and training: imports flow one way, none hides in a function, and
modality-specific choices come from what adapters and label sets declare."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modality_adapters import get_adapter, list_adapters
from servable.build import has_front_end
from servable.config import ModalitySettings
from servable.labels import is_multi_label, list_label_sets

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a function) for every import of a file."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module:
                found.append((child.module, in_function))
            elif isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def _package_imports(package: str) -> list[tuple[Path, str, bool]]:
    return [(p, m, f) for p in sorted((ROOT / package).rglob("*.py")) for m, f in _imports(p)]


def test_servable_imports_neither_service_nor_training() -> None:
    bad = [(p.name, m) for p, m, _ in _package_imports("servable") if m.split(".")[0] in ("service", "training")]
    assert bad == []


def test_training_and_service_runtime_never_import_each_other_inside_functions() -> None:
    hidden = [
        (str(p.relative_to(ROOT)), m)
        for package, other in (("training", ("service", "servable")), ("service/runtime", ("training",)))
        for p, m, inside in _package_imports(package)
        if inside and m.split(".")[0] in other
    ]
    assert hidden == []


def test_training_builds_models_from_servable() -> None:
    modules = {m for _, m, _ in _package_imports("training")}
    assert "servable.build" in modules
    assert not any(m.startswith("service") for m in modules)


@pytest.mark.parametrize("modality", list_adapters())
def test_front_end_is_what_the_adapter_declares(modality: str) -> None:
    adapter = get_adapter(modality)
    assert has_front_end(adapter) == hasattr(type(adapter), "front_end")
    assert isinstance(type(adapter).training_mixup, float)


def test_multi_label_follows_the_label_set() -> None:
    assert [s for s in list_label_sets() if is_multi_label(s)] == ["audioset-527"]
    modality = list_adapters()[0]
    assert ModalitySettings(label_set="audioset-527").resolve(modality).multi_label
    assert not ModalitySettings(label_set="audioset-527", multi_label=False).resolve(modality).multi_label
    assert not ModalitySettings(label_set="imagenet-1k").resolve(modality).multi_label


def test_some_adapters_declare_a_front_end_and_others_not() -> None:
    declared = [has_front_end(get_adapter(m)) for m in list_adapters()]
    assert any(declared) and not all(declared)
    assert any(type(get_adapter(m)).training_mixup > 0 for m in list_adapters())
