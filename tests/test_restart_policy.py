"""The restart policy's arithmetic, on a real supervisor and loop with no child: what each crash
leads to (the status, the delay of the restart timer, the counters) at and around every boundary
(``min_uptime``, ``max_restarts``, ``stable_after``, the backoff cap). The same policy as a child
lives it, through a real daemon, is in tests/test_policy.py; these run in milliseconds, so the
mutation run (tools/mutants.py) tries them first.
"""

from __future__ import annotations

import asyncio

import pytest

from conftest import PY
from tsm_notebook.core import states
from tsm_notebook.core.config import Config
from tsm_notebook.core.paths import Home
from tsm_notebook.core.spec import build_spec
from tsm_notebook.engine.managed import Managed
from tsm_notebook.engine.supervisor import EXP_BACKOFF_CAP, Supervisor


def crashes(tmp_path, uptimes, *, config=None, **spec_options):
    """Apply the policy to one exit per uptime of an online process; after each: (status, the
    restart timer's delay or None, consecutive_crashes, consecutive_unstable, unstable_restarts),
    and the events recorded."""
    home = Home.resolve(tmp_path / "home")
    home.ensure()
    recorded: list[tuple[str, dict]] = []

    async def go():
        sup = Supervisor(home, config or Config(), on_event=lambda m, event, **f: recorded.append((event, f)),
                         tree_rss=lambda pid: None)
        spec = build_spec(argv=[PY, "-c", "pass"], name="p", **spec_options)
        directory = home.process_dir("p")
        directory.mkdir()
        m = Managed(0, "p", spec, {}, directory, sup.config)
        m.status = states.ONLINE
        after = []
        for uptime in uptimes:
            if m.status == states.WAITING:
                m.status = states.ONLINE  # as the restart would (not run here: no child)
            sup._after_crash(m, uptime, exit_code=1)
            timer = m.restart_timer
            delay = None
            if timer is not None:
                delay = round(timer.when() - sup.loop.time(), 3)
                timer.cancel()
                m.restart_timer = None
            after.append((m.status, delay, m.consecutive_crashes, m.consecutive_unstable, m.unstable_restarts))
        return after

    return asyncio.run(go()), recorded


def test_exp_backoff_grows_by_half_each_crash_up_to_the_cap(tmp_path):
    after, _ = crashes(tmp_path, [2.0] * 6, exp_backoff="4s")
    assert [a[1] for a in after] == pytest.approx([4.0, 6.0, 9.0, 13.5, EXP_BACKOFF_CAP, EXP_BACKOFF_CAP], abs=0.01)
    assert [a[2] for a in after] == [1, 2, 3, 4, 5, 6]
    assert EXP_BACKOFF_CAP == 15.0


def test_a_run_up_exactly_stable_after_starts_the_backoff_over(tmp_path):
    after, _ = crashes(tmp_path, [0.5, 0.5, 5.0, 0.5, 4.999], config=Config(stable_after=5.0), exp_backoff="1s")
    assert [a[1] for a in after] == pytest.approx([1.0, 1.5, 1.0, 1.5, 2.25], abs=0.01)
    assert [a[2] for a in after] == [1, 2, 1, 2, 3]


def test_restart_delay_without_backoff_is_constant(tmp_path):
    after, recorded = crashes(tmp_path, [2.0, 2.0, 2.0], restart_delay="700ms")
    assert [a[1] for a in after] == pytest.approx([0.7, 0.7, 0.7], abs=0.01)
    assert [a[0] for a in after] == [states.WAITING] * 3
    assert [(e, f["reason"], f["exit_code"]) for e, f in recorded] == [("crash", "restart in 0.700s", 1)] * 3


def test_no_delay_at_all_by_default(tmp_path):
    after, _ = crashes(tmp_path, [2.0])
    assert after[0][:2] == (states.WAITING, 0.0)


def test_an_exit_before_min_uptime_is_unstable_and_one_at_it_is_not(tmp_path):
    after, _ = crashes(tmp_path, [0.5, 0.999, 1.0, 0.2], min_uptime="1s")
    # (consecutive_unstable, unstable_restarts) after each exit
    assert [a[3:] for a in after] == [(1, 1), (2, 2), (0, 2), (1, 3)]


def test_errored_after_max_restarts_unstable_exits_in_a_row(tmp_path):
    after, recorded = crashes(tmp_path, [0.1, 0.1, 0.1], max_restarts="2", min_uptime="1s")
    assert [a[0] for a in after] == [states.WAITING, states.WAITING, states.ERRORED]
    assert after[2][1] is None  # no restart planned
    assert recorded[-1][0] == "errored"
    assert recorded[-1][1]["reason"] == "3 unstable restarts in a row (max_restarts 2)"


def test_a_stable_exit_between_unstable_ones_breaks_the_row(tmp_path):
    after, _ = crashes(tmp_path, [0.1, 0.1, 3.0, 0.1, 0.1], max_restarts="2", min_uptime="1s")
    assert [a[0] for a in after] == [states.WAITING] * 5


def test_max_restarts_zero_errors_at_the_first_unstable_exit(tmp_path):
    after, _ = crashes(tmp_path, [0.1], max_restarts="0", min_uptime="1s")
    assert after[0][0] == states.ERRORED


def test_autorestart_off_stops_at_the_first_exit(tmp_path):
    after, recorded = crashes(tmp_path, [0.1], autorestart=False)
    assert after == [(states.STOPPED, None, 0, 0, 0)]
    assert recorded == [("stop", {"reason": "exited, autorestart off", "exit_code": 1})]


def test_the_restart_timer_counts_the_restart_only_while_still_waiting(tmp_path):
    home = Home.resolve(tmp_path / "home")
    home.ensure()

    async def go():
        sup = Supervisor(home, Config(), on_event=lambda m, event, **f: None, tree_rss=lambda pid: None)
        directory = home.process_dir("p")
        directory.mkdir()
        m = Managed(0, "p", build_spec(argv=[PY, "-c", "pass"], name="p"), {}, directory, sup.config)
        m.status = states.STOPPED  # stopped while it waited: the timer fires for nothing
        m.restart_timer = sup.loop.call_later(60, lambda: None)
        sup._auto_restart(m)
        stopped = (m.restarts, m.restart_timer)
        m.status = states.WAITING
        sup._auto_restart(m)
        m.status = states.STOPPED  # before the restart task runs: it launches nothing
        waiting = m.restarts
        await asyncio.sleep(0.05)
        return stopped, waiting, m.status, m.run

    stopped, waiting, status, run = asyncio.run(go())
    assert stopped == (0, None)
    assert waiting == 1
    assert (status, run) == (states.STOPPED, None)


@pytest.mark.parametrize("status", [states.ERRORED, states.WAITING])
def test_stop_of_a_process_with_no_live_run_marks_it_stopped(tmp_path, status):
    home = Home.resolve(tmp_path / "home")
    home.ensure()
    recorded = []

    async def go():
        sup = Supervisor(home, Config(), on_event=lambda m, event, **f: recorded.append(event), tree_rss=lambda pid: None)
        directory = home.process_dir("p")
        directory.mkdir()
        m = Managed(0, "p", build_spec(argv=[PY, "-c", "pass"], name="p"), {}, directory, sup.config)
        m.status = status
        m.restart_timer = sup.loop.call_later(60, lambda: None)
        timer = m.restart_timer
        await sup.stop(m)
        return m.status, m.restart_timer, timer.cancelled()

    assert asyncio.run(go()) == (states.STOPPED, None, True)
    assert recorded == ["stop"]
