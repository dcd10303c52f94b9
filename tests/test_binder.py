"""binder/ is enough: a fresh virtual environment built from exactly binder/requirements.txt and
binder/postBuild runs every notebook, as mybinder.org would build it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from test_notebooks import NOTEBOOKS, run_notebook

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def binder_python(tmp_path_factory) -> str:
    """A venv with binder/requirements.txt installed and binder/postBuild run from a copy of the repo."""
    venv = tmp_path_factory.mktemp("binder") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    subprocess.run([python, "-m", "pip", "install", "-q", "-r", str(ROOT / "binder" / "requirements.txt")],
                   check=True, env=env, timeout=900)
    subprocess.run(["bash", str(ROOT / "binder" / "postBuild")], check=True, env=env, timeout=300, cwd=ROOT)
    # a kernel spec for this venv, found through JUPYTER_PATH
    spec = venv.parent / "jupyter" / "kernels" / "binder"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps(
        {"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "binder", "language": "python"}))
    return python


def test_binder_environment_has_the_package_and_the_proxy(binder_python):
    code = "import tsm_notebook, jupyter_server_proxy, ipywidgets, pandas, psutil; print(tsm_notebook.__file__)"
    out = subprocess.run([binder_python, "-c", code], capture_output=True, text=True, check=True,
                         cwd="/", env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}).stdout
    # installed into the venv, not picked up from this checkout
    assert "site-packages" in out and not out.startswith(str(ROOT / "tsm_notebook"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_run_in_binder_environment(tsm, binder_python, path, tmp_path):
    env = dict(tsm.env)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{Path(binder_python).parent}{os.pathsep}{env['PATH']}"
    env["JUPYTER_PATH"] = str(Path(binder_python).parent.parent.parent / "jupyter")
    nb = run_notebook(path, env, tmp_path, kernel_name="binder")
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # the daemon the notebook started runs on the binder environment's interpreter
    import psutil

    pid = tsm.daemon_pid()  # None for a notebook that works in a scratch home of its own (03-recipes)
    if pid is not None or path.stem != "03-recipes":
        assert psutil.Process(pid).cmdline()[0] == binder_python
    assert tsm.call("ls", all=True) == []
