"""Stacks in a notebook: `%tsm up` returns a Stack whose view follows the bring-up running on its
own thread, `%%tsm up` takes the file's text, processes() has a stack column, `%tsm down` stops."""

from __future__ import annotations

import textwrap

import pytest

from conftest import PY, free_port, wait_for

pytest.importorskip("IPython")


@pytest.fixture
def shell(tsm, monkeypatch, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("TSM_HOME", str(tsm.home))
    monkeypatch.chdir(tmp_path)
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "tsm_notebook")
    try:
        yield sh
    finally:
        InteractiveShell.clear_instance()


def stack_text(port: int) -> str:
    return textwrap.dedent(f"""\
        name = "nb"
        [setup]
        argv = ["{PY}", "-c", "print('set up')"]
        ready = "exit"
        [web]
        argv = ["{PY}", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
        depends_on = ["setup"]
        ready = "http://127.0.0.1:$PORT/"
        """)


def test_up_returns_a_live_stack_and_down_stops_it(tsm, shell, tmp_path):
    import tsm_notebook as tsm_api

    port = free_port()
    (tmp_path / "tsm.toml").write_text(stack_text(port))
    st = shell.run_line_magic("tsm", "up")
    assert isinstance(st, tsm_api.Stack) and st.name == "nb"
    st._ipython_display_()  # the widget exists while the bring-up runs; its thread sets the value
    widget = st._widget
    st.wait(60)
    assert [(a["name"], a["state"]) for a in st.apps] == [("setup", "ready"), ("web", "ready")]
    wait_for(lambda: "done" in widget.value, 5, message="the widget's last update")
    assert f"web-{port}" in widget.value and f"http://127.0.0.1:$PORT/" in widget.value
    html = st._repr_html_()
    assert "stack nb" in html and "exited with code 0" in html and "answered 200" in html

    df = tsm_api.processes()
    assert set(df["stack"]) == {"nb"} and set(df["app"]) == {"setup", "web"}
    down = shell.run_line_magic("tsm", "down")
    assert [(a["name"], a["state"]) for a in down.apps] == [("web", "stopped"), ("setup", "stopped")]
    assert all(s == "stopped" for s in tsm_api.processes()["status"])


def test_cell_holds_the_stack_file_and_failures_show(tsm, shell):
    port = free_port()
    st = shell.run_cell_magic("tsm", "up", stack_text(port))
    st.wait(60)
    assert tsm.row(f"web-{port}")["stack"] == "nb"
    bad = stack_text(port).replace("print('set up')", "import sys; sys.exit(4)")
    st = shell.run_cell_magic("tsm", "up", bad.replace('name = "nb"', 'name = "nb2"').replace(str(port), str(free_port())))
    with pytest.raises(Exception, match="setup failed: exited with code 4"):
        st.wait(60)
    assert "setup failed" in st._repr_html_() and st.error
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="dependency cycle"):
        shell.run_cell_magic("tsm", "up", '[a]\ncmd = "true"\ndepends_on = ["a"]\n')


def test_panel_groups_by_stack_and_acts_on_it(tsm, tmp_path):
    import tsm_notebook as tsm_api
    from tsm_notebook.notebook.panel import Panel

    port = free_port()
    (tmp_path / "tsm.toml").write_text(stack_text(port))
    tsm_api.up(tmp_path / "tsm.toml", home=tsm.home, wait=True)
    tsm.run("start", "--name", "solo", "--", PY, "-c", "import time; time.sleep(60)", check=True)
    panel = Panel(tsm.home, refresh=None)
    try:
        table = panel.table.value
        assert table.index("stack nb") < table.index(f"web-{port}") < table.index("not in a stack") < table.index("solo")
        assert panel.stack_selector.options == ("nb",) and panel.stack_actions.layout.display == ""
        for button, want in ((panel.stack_down_button, "stopped"), (panel.stack_up_button, "online"),
                             (panel.stack_restart_button, "online")):
            button.click()
            wait_for(lambda: not panel.busy, 60, message="the stack action")
            assert "done" in panel.message.value, panel.message.value
            assert tsm.row(f"web-{port}")["status"] == want
        assert tsm.row("solo")["status"] == "online"  # not in the stack: left alone
    finally:
        panel.close()
