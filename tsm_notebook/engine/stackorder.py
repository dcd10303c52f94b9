"""Stacks inside the daemon: which processes a ``stack:NAME`` target names, bringing several
processes up so that a stack's apps come after the apps they depend on (recovery, resurrect,
restart), and stopping them so that an app stops only after the apps that depend on it (stop).

The client orders a ``tsm up`` itself, with the readiness checks of the stack file; the daemon
only needs the same order when it brings processes back on its own. It reads the order from the
specs (``stack``, ``app``, ``depends_on``) and counts a dependency as ready once it is online and
its port (if it has one) accepts, or once a one-shot job has exited with code 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..core import states
from ..core.errors import ProcessNotFound
from ..core.spec import LaunchSpec
from .managed import Managed
from .ports import accepts

#: seconds a dependant waits for a dependency before it is brought up anyway
DEPENDENCY_WAIT = 60.0


def stack_members(procs: Iterable[Managed], stack: str) -> list[Managed]:
    """The processes of ``stack``, by tsm_id. Raises ProcessNotFound when it has none."""
    found = sorted((m for m in procs if m.spec.stack == stack), key=lambda m: m.tsm_id)
    if not found:
        raise ProcessNotFound(f"no stack named {stack!r}", target=f"stack:{stack}")
    return found


def is_ready(m: Managed) -> bool:
    """Up enough for a dependant: online with its port accepting, or a one-shot job done with 0."""
    if m.status == states.ONLINE:
        return m.port is None or accepts(m.port)
    return m.status == states.STOPPED and m.exit_code == 0 and m.spec.ready == "exit"


def _gave_up(m: Managed) -> bool:
    return m.status == states.ERRORED or (m.status == states.STOPPED and not is_ready(m))


async def in_dependency_order(
    entries: list[tuple[LaunchSpec, Callable[[], Awaitable[Managed | None]]]],
    *,
    wait: float = DEPENDENCY_WAIT,
) -> list[Any]:
    """Run every ``(spec, bring_up)`` concurrently, except that a stack member's ``bring_up``
    starts only once every member of its stack whose app it ``depends_on`` (and that is among the
    entries) is ready, or has failed, or ``wait`` seconds passed: a bad file must never keep a
    process down for good. Returns the results (or exceptions) in the entries' order."""
    loop = asyncio.get_running_loop()
    tasks: dict[int, asyncio.Task] = {}
    by_app: dict[tuple[str, str], list[int]] = {}
    for i, (spec, _) in enumerate(entries):
        if spec.stack and spec.app:
            by_app.setdefault((spec.stack, spec.app), []).append(i)

    async def one(i: int) -> Managed | None:
        spec, bring_up = entries[i]
        deps = [j for app in spec.depends_on or () for j in by_app.get((spec.stack or "", app), ()) if j != i]
        if deps:
            deadline = loop.time() + wait
            done, _ = await asyncio.wait([tasks[j] for j in deps], timeout=wait)
            ups = [t.result() for t in done if not t.exception() and t.result() is not None]
            while ups and loop.time() < deadline and not all(is_ready(m) or _gave_up(m) for m in ups):
                await asyncio.sleep(0.05)
        return await bring_up()

    for i in range(len(entries)):
        tasks[i] = loop.create_task(one(i))
    return list(await asyncio.gather(*(tasks[i] for i in range(len(entries))), return_exceptions=True))


async def in_reverse_dependency_order(entries: list[tuple[LaunchSpec, Callable[[], Awaitable[Any]]]]) -> list[Any]:
    """Run every ``(spec, stop)`` concurrently, except that a stack member's ``stop`` waits until
    the members of its stack that depend on its app (and are among the entries) have stopped, as
    ``tsm down`` does. A cycle in the records (they are input) is broken: its members stop together.
    Returns the results (or exceptions) in the entries' order."""
    dependants: dict[int, list[int]] = {i: [] for i in range(len(entries))}
    by_app: dict[tuple[str, str], list[int]] = {}
    for i, (spec, _) in enumerate(entries):
        if spec.stack and spec.app:
            by_app.setdefault((spec.stack, spec.app), []).append(i)
    for i, (spec, _) in enumerate(entries):
        for app in spec.depends_on or ():
            for j in by_app.get((spec.stack or "", app), ()):
                if j != i:
                    dependants[j].append(i)
    level: dict[int, int] = {}

    def depth(i: int, seen: frozenset[int]) -> int:  # how many layers of dependants stop before i
        if i not in level:
            level[i] = 1 + max((depth(j, seen | {i}) for j in dependants[i] if j not in seen), default=-1)
        return level[i]

    for i in range(len(entries)):
        depth(i, frozenset())
    results: list[Any] = [None] * len(entries)
    for layer in sorted(set(level.values())):  # those nothing depends on first
        batch = [i for i in range(len(entries)) if level[i] == layer]
        done = await asyncio.gather(*(entries[i][1]() for i in batch), return_exceptions=True)
        for i, r in zip(batch, done):
            results[i] = r
    return results
