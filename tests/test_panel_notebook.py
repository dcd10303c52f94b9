"""The panel in a notebook executed by nbclient on a real kernel: widget views in the outputs, the
background thread live while later cells run, nothing printed from it, and a clean close."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from conftest import PY, ROOT
from tsm_notebook.client import commands

VIEW = "application/vnd.jupyter.widget-view+json"

CELLS = [
    # the kernel finds its home through TSM_HOME, as a user's notebook would
    "from tsm_notebook.notebook.panel import LogTail, Panel\np = Panel(refresh=0.2)\np",
    # a cell runs normally while the panel is live, and sees the thread refresh it
    """\
import time
from tsm_notebook.client import commands
from tsm_notebook.client.client import Client
commands.start(Client(), commands.spec_from_args(commands.parse(["start", "sleep 600", "--name", "late"])))
deadline = time.monotonic() + 20
while 'data-name="late"' not in p.table.value:
    assert time.monotonic() < deadline, "the panel's thread did not show the new process"
    time.sleep(0.05)
print("late shown, live:", p.live)""",
    "tail = LogTail('talker', lines=5, refresh=0.2)\ntail",
    """\
deadline = time.monotonic() + 20
while "line 3" not in tail.text:
    assert time.monotonic() < deadline, "the tail did not show the lines"
    time.sleep(0.05)
p.close(); tail.close()
print("closed:", p.live, tail.live)""",
]


@pytest.mark.notebook
def test_panel_in_an_executed_notebook(tsm, tmp_path):
    script = tmp_path / "talk.py"
    script.write_text("import time\nfor i in range(100000):\n    print('line', i, flush=True)\n    time.sleep(0.05)\n")
    commands.start(tsm.client, commands.spec_from_args(commands.parse(["start", f"{PY} {script}", "--name", "talker"])))
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = dict(os.environ, TSM_HOME=str(tsm.home), PYTHONPATH=str(ROOT))
    client = NotebookClient(nb, kernel_name="python3", timeout=90, resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)
    nbformat.write(nb, str(tmp_path / "panel.ipynb"))  # kept with the test's files for a person to open

    outputs = [c.outputs for c in nb.cells]
    assert not [o for out in outputs for o in out if o["output_type"] == "error"]
    views = [[o for o in out if VIEW in o.get("data", {})] for out in outputs]
    assert len(views[0]) == 1 and len(views[2]) == 1 and not views[1] and not views[3]
    # the threads set trait values only: the one print of each cell is the whole of its stream output
    streams = [["".join(o["text"]) for o in out if o["output_type"] == "stream"] for out in outputs]
    assert streams == [[], ["late shown, live: True\n"], [], ["closed: False False\n"]]

    # the saved widget state holds the panel's table with the real processes
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    panel_id = views[0][0]["data"][VIEW]["model_id"]
    assert state[panel_id]["model_name"] == "VBoxModel"
    values = json.dumps([m["state"].get("value") for m in state.values()])
    assert "talker" in values and "late" in values and "tsm-status-online" in values
    assert tsm.row("late")["status"] == "online"
