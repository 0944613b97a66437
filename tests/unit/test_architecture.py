"""The package's shape (docs/design.md, Architecture): the folders are the layers. Every module
imports only from its own layer or below, there is no import cycle, each third-party library
has its one adapter, the configuration is standard library only, the package's top level
stays small, and no function or module outgrows the size limits. Read from the source with
``ast``: a layer is a package prefix, so a new module is checked without being listed here
(a module under no prefix fails the layer test)."""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "streamsgd"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400
MAX_TOP_LEVEL_MODULES = 8  # besides __init__ and __main__: the packages say the architecture

# Lower layers first; a module may import its own layer and the layers before it. Each entry
# is a package (every module under it belongs to the layer).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("streamsgd.core",)),
    ("stream", ("streamsgd.codec", "streamsgd.datasets")),
    ("training", ("streamsgd.training",)),
    ("distributed", ("streamsgd.distributed",)),
    (
        "adapters",
        (
            "streamsgd.kafka",
            "streamsgd.sources",
            "streamsgd.checkpoint",
            "streamsgd.telemetry",
            "streamsgd.http",
        ),
    ),
    ("composition", ("streamsgd.config", "streamsgd.cli")),
    ("package", ("streamsgd.__init__", "streamsgd.__main__")),
]

# Each third-party library and the only modules that may import it.
LIBRARY_OWNERS = {
    "kafka": (
        "streamsgd.kafka.source",
        "streamsgd.kafka.rebalance",
        "streamsgd.kafka.read_before_eof",  # a fix to kafka-python's transports
        "streamsgd.kafka.python_metadata",  # metadata asked by topic name
        "streamsgd.kafka.dead_letter",
        "streamsgd.kafka.producer",
    ),
    # The confluent source reads topic ids with the admin API (a module of its own).
    "confluent_kafka": (
        "streamsgd.kafka.confluent",
        "streamsgd.kafka.confluent_admin",
        "streamsgd.kafka.confluent_metadata",
    ),
    # The Kafka-operations metrics sit beside the training metrics.
    "prometheus_client": ("streamsgd.telemetry.metrics", "streamsgd.telemetry.kafka_metrics"),
    "mpi4py": ("streamsgd.distributed.mpi",),
}
CORE_ALLOWED = {"numpy", "__future__"}  # plus the standard library

# Where the formatter escape comment is still allowed, and why: each entry goes
# when its owner's branch is merged, and the guard then covers the whole tree.


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
    raise AssertionError(f"{name} is in no layer: put it in a package of LAYERS (docs/design.md)")


def test_every_module_imports_only_its_own_layer_or_below() -> None:
    wrong = []
    for name, path in MODULES.items():
        for dependency in _internal(_imports(name, path)) - {name}:
            if dependency == "streamsgd.__init__":
                continue
            if _layer(dependency) > _layer(name):
                wrong.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {dependency}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_top_level_keeps_a_handful_of_modules() -> None:
    """The folders say the architecture: a concept gets a package, not another loose module."""
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(loose) <= MAX_TOP_LEVEL_MODULES, loose


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


def _foreign_imports(prefix: str, allowed: set[str], own: str) -> list[str]:
    stdlib = set(sys.stdlib_module_names)
    foreign = []
    for name, path in MODULES.items():
        if name != prefix and not name.startswith(prefix + "."):
            continue
        for module in _imports(name, path):
            top = module.split(".")[0]
            inside = module == own or module.startswith(own + ".")
            if top not in stdlib and top not in allowed and not inside:
                foreign.append(f"{name} imports {module}")
    return foreign


def test_the_core_imports_numpy_and_the_standard_library_only() -> None:
    foreign = _foreign_imports("streamsgd.core", CORE_ALLOWED, "streamsgd.core")
    assert not foreign, foreign


def test_the_configuration_is_standard_library_only() -> None:
    """The Python API, bench and the tests import their defaults from ``streamsgd.config``."""
    foreign = _foreign_imports("streamsgd.config", {"__future__"}, "streamsgd.config")
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


def _fmt_skips(path: Path) -> list[int]:
    """Lines of ``path`` with a ``# fmt: skip`` or ``# fmt: off`` comment (not in strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return [
        token.start[0]
        for token in tokens
        if token.type == tokenize.COMMENT and re.search(r"fmt:\s*(skip|off)", token.string)
    ]


def test_no_formatter_escape() -> None:
    """``# fmt: skip`` folds code onto fewer lines to pass a size cap: the formatter decides
    the layout, and a module too long is split by concept instead."""
    found = []
    for folder in ("streamsgd", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            found += [f"{relative}:{line}" for line in _fmt_skips(path)]
    assert not found, "\n".join(found)
