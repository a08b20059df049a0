"""The layout the design depends on, read from the source (nothing is imported):

- no import cycle among nblstm's modules (``nblstm/`` and ``kernels/``, installed as
  ``nblstm.kernels``), counting imports inside functions too;
- the kernels never import the API (``nblstm.*`` outside ``nblstm.kernels``);
- ``kernels/`` holds the ``math``, ``cpu`` and ``cuda`` subpackages;
- the CUDA target is imported in one module only;
- no test module imports another test module (shared helpers live in ``_*.py`` files).
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = {"nblstm": ROOT / "nblstm", "nblstm.kernels": ROOT / "kernels"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the installed package."""
    modules = {}
    for prefix, folder in SOURCE_ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = path
    return modules


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> set[str]:
    """Modules of the project that module ``name`` imports, anywhere in its body."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from package import submodule`` imports the submodule
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES
                       else module for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in MODULES and target != name)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _find_cycle() -> list[str] | None:
    state = dict.fromkeys(GRAPH, 0)  # 0 new, 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for neighbour in sorted(GRAPH[node]):
            if state[neighbour] == 1:
                return path[path.index(neighbour):] + [neighbour]
            if state[neighbour] == 0:
                cycle = visit(neighbour)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if state[node] == 0:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_the_expected_modules():
    for package in ("nblstm.kernels.math", "nblstm.kernels.cpu", "nblstm.kernels.cuda"):
        assert package in MODULES and _is_package(package), package
    assert len(MODULES) > 25  # the scan found the source


def test_no_import_cycle():
    cycle = _find_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_kernels_never_import_the_api():
    for name, imported in GRAPH.items():
        if name.startswith("nblstm.kernels"):
            api = sorted(m for m in imported if not m.startswith("nblstm.kernels"))
            assert not api, f"{name} imports {api}"


def test_the_cuda_target_is_imported_in_one_module():
    importers = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "numba" and any(
                    alias.name == "cuda" for alias in node.names):
                importers.append(name)
            elif isinstance(node, ast.Import) and any(
                    alias.name in ("numba.cuda", "numba_cuda") for alias in node.names):
                importers.append(name)
    assert importers == ["nblstm.kernels.cuda.target"]


def test_no_test_module_imports_another_test_module():
    tests = {path.stem for path in Path(__file__).parent.glob("*.py")}
    for path in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for imported in names:
                top = (imported or "").split(".")[0]
                assert not (top in tests and (top.startswith("test_") or top == "conftest")), (
                    f"{path.name} imports {imported}: shared helpers belong in tests/_*.py")
