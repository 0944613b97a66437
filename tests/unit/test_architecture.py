"""The package's shape (docs/design.md, Architecture): no import cycle, every module imports
only from its own layer or below, each third-party library has its one adapter, and no
function or module outgrows the size limits. Read from the source with ``ast``, so a new
module is checked without being listed here (an unknown module fails the layer test)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "streamsgd"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400

# Lower layers first; a module may import its own layer and the layers before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("streamsgd.core",)),
    ("stream", ("streamsgd.codec", "streamsgd.buffer", "streamsgd.synthetic")),
    (
        "loop",
        (
            "streamsgd.ports",
            "streamsgd.totals",
            "streamsgd.collective",
            "streamsgd.partitions",
            "streamsgd.exchange",
            "streamsgd.service",
            "streamsgd.service_config",
            "streamsgd.manifest",
            "streamsgd.replica_intake",
            "streamsgd.replica_manifest",
            "streamsgd.replica_agreement",
            "streamsgd.replicated",
        ),
    ),
    (
        "adapters",
        (
            "streamsgd.kafka",
            "streamsgd.sources",
            "streamsgd.checkpoint",
            "streamsgd.metrics",
            "streamsgd.metrics_kafka",
            "streamsgd.replica_metrics",
            "streamsgd.http",
            "streamsgd.model_document",
            "streamsgd.progress",
            "streamsgd.logs",
            "streamsgd.evaluation",
            "streamsgd.mpi",
            "streamsgd.mpi_bounded",
        ),
    ),
    (
        "composition",
        (
            "streamsgd.options",
            "streamsgd.config",
            "streamsgd.config_minibatch",
            "streamsgd.config_distributed",
            "streamsgd.produce_config",
            "streamsgd.cli",
        ),
    ),
    ("package", ("streamsgd.__init__", "streamsgd.__main__")),
]

# Each third-party library and the only modules that may import it.
LIBRARY_OWNERS = {
    "kafka": ("streamsgd.kafka.source", "streamsgd.kafka.dead_letter", "streamsgd.kafka.producer"),
    # The confluent source reads topic ids with the admin API (a module of its own).
    "confluent_kafka": ("streamsgd.kafka.confluent", "streamsgd.kafka.confluent_admin"),
    # The Kafka-operations metrics (issue 21) sit beside the training metrics.
    "prometheus_client": ("streamsgd.metrics", "streamsgd.metrics_kafka"),
    "mpi4py": ("streamsgd.mpi",),
}
CORE_ALLOWED = {"numpy", "__future__"}  # plus the standard library


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name if parts[-1] != "__init__" or len(parts) > 2 else "streamsgd.__init__"] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of every module ``name`` imports (at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if name == "streamsgd.__init__":
        package = "streamsgd"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from . import x` / `from .pkg import mod` may name submodules.
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def _internal(imported: set[str]) -> set[str]:
    """The package modules among ``imported`` (a name may be a module or an attribute)."""
    return {m for m in imported if m in MODULES} | {
        m.rpartition(".")[0]
        for m in imported
        if m not in MODULES and m.rpartition(".")[0] in MODULES
    }


def _layer(name: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS (docs/design.md)")


def test_every_module_imports_only_its_own_layer_or_below() -> None:
    wrong = []
    for name, path in MODULES.items():
        for dependency in _internal(_imports(name, path)) - {name}:
            if dependency == "streamsgd.__init__":
                continue
            if _layer(dependency) > _layer(name):
                wrong.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {dependency}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle() -> None:
    graph = {name: _internal(_imports(name, path)) - {name} for name, path in MODULES.items()}
    # Importing a package runs its __init__: a submodule that imports its own package's
    # __init__ is not a cycle of ours when the __init__ only re-exports.
    visiting: set[str] = set()
    done: set[str] = set()
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append(" -> ".join([*trail[trail.index(node) :], node]))
            return
        visiting.add(node)
        for nxt in sorted(graph.get(node, ())):
            if not (node.startswith(nxt + ".") or nxt.startswith(node + ".")):
                visit(nxt, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("library", sorted(LIBRARY_OWNERS))
def test_each_library_has_its_one_adapter(library: str) -> None:
    importers = sorted(
        name
        for name, path in MODULES.items()
        if any(m == library or m.startswith(library + ".") for m in _imports(name, path))
    )
    assert set(importers) <= set(LIBRARY_OWNERS[library]), importers


def test_the_core_imports_numpy_and_the_standard_library_only() -> None:
    import sys

    stdlib = set(sys.stdlib_module_names)
    foreign = []
    for name, path in MODULES.items():
        if not name.startswith("streamsgd.core"):
            continue
        for module in _imports(name, path):
            top = module.split(".")[0]
            if top not in stdlib and top not in CORE_ALLOWED and top != "streamsgd":
                foreign.append(f"{name} imports {module}")
    assert not foreign, foreign


def test_no_function_or_module_outgrows_the_limits() -> None:
    too_long = []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        if (n := len(source.splitlines())) > MAX_MODULE_LINES:
            too_long.append(f"module {name}: {n} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                if (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)
