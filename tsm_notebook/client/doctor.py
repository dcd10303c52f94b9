"""The client's side of ``tsm doctor``: ask the daemon when one runs (it knows the live runs),
else diagnose the home alone (never starting a daemon, whose recovery would change what is seen)."""

from __future__ import annotations

from ..core import doctor as core_doctor
from ..core.errors import DaemonNotRunning
from .client import Client

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def doctor(client: Client, *, fix: bool = False) -> dict[str, Any]:
    """The doctor report for ``client``'s home (see :func:`tsm_notebook.core.doctor.diagnose`)."""
    client.home.check()
    if client.running():
        try:
            return client.call("doctor", fix=fix)
        except DaemonNotRunning:
            pass
    report = core_doctor.diagnose(client.home, fix=fix)
    report["problems"] = []
    return report
