"""The package's layout is its architecture: import contracts, one version, small files.

The contracts themselves live in pyproject.toml ([tool.importlinter]); `make test` runs
`lint-imports`, and these tests run it too, on the real tree and on copies with a forbidden import
planted, so a contract that could not fail would show here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tsm_notebook

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "tsm_notebook"
LINT = Path(sys.executable).with_name("lint-imports")
LAYERS = ("core", "engine", "client", "cli", "notebook")


def lint(root: Path) -> subprocess.CompletedProcess:
    # lint-imports puts its working directory first on sys.path: a copy in `root` shadows the real tree
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_contracts_kept():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    "module, planted, contract",
    [
        ("core/render.py", "import pandas\n", "the core imports nothing above it"),
        ("core/paths.py", "from ..client import client\n", "the core imports nothing above it"),
        ("cli/monit.py", "from ..engine import store\n", "front ends never import the engine"),
        ("notebook/frames.py", "from ..engine import sampler\n", "front ends never import the engine"),
        ("client/commands.py", "from ..notebook import api\n", "the client imports neither the engine nor a front end"),
        ("engine/capture.py", "from ..client import client\n", "the engine imports neither the client nor a front end"),
        ("cli/main.py", "import IPython\n", "the command line's path never imports pandas, IPython or ipywidgets"),
        ("cli/main.py", "from ..notebook import html\n", "the two front ends are independent"),
    ],
)
def test_each_contract_fails_when_broken(tmp_path, module, planted, contract):
    shutil.copytree(PKG, tmp_path / "tsm_notebook", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "tsm_notebook" / module
    text = target.read_text()
    marker = "from __future__ import annotations\n"
    target.write_text(text.replace(marker, marker + planted, 1) if marker in text else planted + text)
    r = lint(tmp_path)
    assert r.returncode != 0, r.stdout
    broken = [line for line in r.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), r.stdout


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            yield node
        elif isinstance(node, ast.Import):
            yield node


def _package_of(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] != "__init__" else parts[:-1]


def test_no_module_imports_the_package_init():
    # the package's __init__ is the users' door; inside, everything imports what it means
    offenders = []
    for path in PKG.rglob("*.py"):
        if path == PKG / "__init__.py":
            continue
        package = _package_of(path)
        for node in _imports(path):
            if isinstance(node, ast.Import):
                if any(alias.name == "tsm_notebook" for alias in node.names):
                    offenders.append(f"{path}: import tsm_notebook")
                continue
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "tsm_notebook":
                offenders.append(f"{path}:{node.lineno}: from {'.' * node.level}{node.module or ''} import ...")
    assert not offenders, offenders


def test_one_version_read_by_packaging_too():
    from tsm_notebook.core.version import __version__

    assert tsm_notebook.__version__ == __version__
    assert importlib.metadata.version("tsm_notebook") == __version__
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_layers_are_folders_with_their_rules_in_the_docstring():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PKG / layer / "__init__.py").read_text()))
        assert doc and "May import" in doc, layer
    flat = sorted(p.name for p in PKG.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py"], flat


def test_files_keep_one_idea_each():
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 520}
    assert not long, long


def test_packaging_metadata_says_what_is_true():
    meta = importlib.metadata.metadata("tsm_notebook")
    assert meta["License-Expression"] == "MIT"
    classifiers = meta.get_all("Classifier")
    for c in ("Operating System :: POSIX :: Linux", "Framework :: Jupyter", "Framework :: IPython"):
        assert c in classifiers
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert (PKG / "py.typed").exists()
