"""The daemon's side of the peer check (see :mod:`tsm_notebook.core.peer`)."""

from __future__ import annotations

from ..core.peer import peer_refusal


def peer_allowed(sock) -> str | None:
    """None when the connecting process may talk to this daemon, else the reason it may not."""
    why = peer_refusal(sock, allow_root=True)
    return f"refused: {why}; a tsm daemon serves only its own user" if why else None

