"""HTML renderers for the notebook: status badges, port links, the status table, log lines and
small SVG charts. Pure functions from raw rows (epoch seconds, bytes, ``None``) to HTML strings.

They are shared by the live panel (:mod:`tsm_notebook.panel`, which puts them in ``HTML``
widgets) and the static reprs of the notebook objects, so a process looks the same in both.
Nothing here imports ipywidgets or pandas; every value from a process (names, commands, log
lines) is escaped.
"""

from __future__ import annotations

import html
import time
from typing import Any, Callable, Iterable, Sequence

from ..core import render, states
from .ansi import ansi_html, name_color

__all__ = [
    "STATUS_COLORS", "status_color", "status_badge", "proxy_available", "port_url", "port_link",
    "status_table", "summary", "log_lines", "chart", "sparkline_path",
]

#: background colour of each status badge (GitHub's palette: readable on light and dark themes)
STATUS_COLORS = {
    states.ONLINE: "#1a7f37",
    states.LAUNCHING: "#0969da",
    states.WAITING: "#bf8700",
    states.STOPPING: "#bc4c00",
    states.STOPPED: "#6e7781",
    states.ERRORED: "#cf222e",
}
_UNKNOWN_COLOR = "#6e7781"

# Scoped to .tsm-* classes; JupyterLab's variables keep it readable in the dark theme.
STYLE = """<style>
.tsm-table{border-collapse:collapse;width:100%;font-size:12px;line-height:1.5;
  font-family:var(--jp-ui-font-family,sans-serif);color:var(--jp-ui-font-color1,#1f2328)}
.tsm-table th{text-align:left;font-weight:600;padding:3px 8px;white-space:nowrap;
  color:var(--jp-ui-font-color2,#57606a);border-bottom:1px solid var(--jp-border-color1,#d0d7de)}
.tsm-table td{padding:2px 8px;white-space:nowrap;border-bottom:1px solid var(--jp-border-color3,#eaeef2)}
.tsm-table td.num,.tsm-table th.num{text-align:right;font-variant-numeric:tabular-nums}
.tsm-table td.cmd{max-width:28em;overflow:hidden;text-overflow:ellipsis;
  font-family:var(--jp-code-font-family,monospace);color:var(--jp-ui-font-color2,#57606a)}
.tsm-table tr.tsm-selected td{background:var(--jp-layout-color2,#eef4ff)}
.tsm-table tr.tsm-selected td:first-child{box-shadow:inset 3px 0 0 #0969da}
.tsm-status{display:inline-block;min-width:5.2em;text-align:center;border-radius:9px;
  padding:0 7px;color:#fff;font-size:11px;font-weight:600;line-height:17px}
.tsm-log{display:flex;flex-direction:column-reverse;overflow:auto;height:15em;margin:0;
  border:1px solid var(--jp-border-color2,#d0d7de);border-radius:4px;
  background:var(--jp-layout-color1,#f6f8fa)}
.tsm-log pre{flex:none;overflow:visible;margin:0;padding:4px 6px;font-size:11.5px;line-height:1.35;white-space:pre-wrap;
  word-break:break-all;font-family:var(--jp-code-font-family,monospace);color:var(--jp-content-font-color1,#1f2328)}
.tsm-log .err{color:#cf222e}
.tsm-log .who{color:#8250df}
.tsm-log .t{color:var(--jp-ui-font-color3,#8c959f)}
.tsm-log .none{color:var(--jp-ui-font-color3,#8c959f);font-style:italic}
.tsm-chart{font-size:11.5px;font-family:var(--jp-ui-font-family,sans-serif);
  color:var(--jp-ui-font-color1,#1f2328);margin-bottom:6px}
.tsm-chart .label{display:flex;justify-content:space-between;gap:8px}
.tsm-chart .label span:last-child{color:var(--jp-ui-font-color2,#57606a)}
.tsm-chart svg{display:block;border:1px solid var(--jp-border-color2,#d0d7de);border-radius:4px;
  background:var(--jp-layout-color1,#fff)}
.tsm-muted{color:var(--jp-ui-font-color2,#57606a)}
.tsm-detail-line{display:flex;gap:12px;align-items:center;flex-wrap:wrap;font-size:12px;line-height:20px;
  font-family:var(--jp-ui-font-family,sans-serif);color:var(--jp-ui-font-color1,#1f2328)}
.tsm-detail-line .cmd{flex:1 1 12em;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
  font-family:var(--jp-code-font-family,monospace);color:var(--jp-ui-font-color2,#57606a)}
</style>"""


def status_color(status: str | None) -> str:
    """The CSS colour of ``status`` (grey for an unknown one)."""
    return STATUS_COLORS.get(status or "", _UNKNOWN_COLOR)


def status_badge(status: str | None) -> str:
    """A coloured pill with the status name (class ``tsm-status tsm-status-<status>``).

    The colour is also set inline, so the badge looks right without :data:`STYLE` too.
    """
    text = html.escape(status or "unknown")
    return (f'<span class="tsm-status tsm-status-{text}" style="background:{status_color(status)};'
            f'color:#fff;border-radius:9px;padding:0 7px">{text}</span>')


def proxy_available() -> bool:
    """True when the serving Jupyter offers jupyter-server-proxy (see :mod:`.proxy`)."""
    from .proxy import server_has_proxy

    return server_has_proxy()


def port_url(port: int | None, home: Any = None) -> str | None:
    """Where a browser reaches ``port``: the home's ``notebook.url_template``, else through
    jupyter-server-proxy (``<prefix>proxy/<port>/``, which works on JupyterHub and Binder) when
    the serving Jupyter offers it, else ``http://localhost:<port>``. ``None`` for no port."""
    from .proxy import port_url as url

    return url(port, home)


def port_link(port: int | None) -> str:
    """An ``<a>`` to :func:`port_url` opening in a new tab, or ``-`` for no port."""
    url = port_url(port)
    if url is None:
        return "-"
    return f'<a class="tsm-port" href="{html.escape(url)}" target="_blank" rel="noopener">{int(port)}</a>'


TABLE_HEADERS = (("id", "num"), ("name", ""), ("status", ""), ("pid", "num"), ("port", "num"),
                 ("cpu", "num"), ("memory", "num"), ("uptime", "num"), ("restarts", "num"), ("command", ""))


def _row(r: dict[str, Any], selected: str | None, host: bool = False) -> str:
    name = html.escape(str(r.get("name")))
    command = r.get("command") or " ".join(r.get("argv") or [])
    cells = (
        f'<td class="num">{r.get("tsm_id", "")}</td>',
        f'<td class="name"><b>{name}</b></td>',
        f"<td>{status_badge(r.get('status'))}</td>",
        f'<td class="num tsm-pid">{r.get("pid") or "-"}</td>',
        f'<td class="num">{port_link(r.get("port"))}</td>',
        f'<td class="num">{render.percent(r.get("cpu"))}</td>',
        f'<td class="num">{render.size(r.get("memory"))}</td>',
        f'<td class="num">{render.duration(r.get("uptime"))}</td>',
        f'<td class="num">{r.get("restarts", 0)}</td>',
        f'<td class="cmd" title="{html.escape(command)}">{html.escape(command)}</td>',
    )
    if host:
        cells = (f'<td class="tsm-host">{html.escape(str(r.get("host") or ""))}</td>', *cells)
    cls = ' class="tsm-selected"' if selected is not None and r.get("name") == selected else ""
    return f'<tr data-name="{name}"{cls}>{"".join(cells)}</tr>'


def status_table(rows: Sequence[dict[str, Any]], selected: str | None = None, *, style: bool = True) -> str:
    """The status table of listing rows (as the daemon's ``ls`` returns them), ``selected`` highlighted.

    With ``style`` it includes :data:`STYLE`, so it renders on its own in any HTML output (the
    live panel sends :data:`STYLE` once instead).
    """
    head = "".join(f'<th class="{cls}">{h}</th>' for h, cls in TABLE_HEADERS)
    hosts = any("host" in r for r in rows)  # rows of several hosts (Panel(hosts=...)): a host column first
    if hosts:
        head = '<th class="tsm-host">host</th>' + head
        body = "".join(_row(r, selected, host=hosts) for r in rows)
    elif any(r.get("stack") for r in rows):
        body = _grouped_body(rows, selected)
    elif rows:
        body = "".join(_row(r, selected) for r in rows)
    else:
        body = f'<tr><td colspan="{len(TABLE_HEADERS)}" class="tsm-muted">no processes yet</td></tr>'
    return f'{STYLE if style else ""}<table class="tsm-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _grouped_body(rows: Sequence[dict[str, Any]], selected: str | None) -> str:
    """Each stack's rows together under a header row (stacks in order of their first id), then
    the processes of no stack."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("stack"), []).append(r)
    out = []
    for stack, members in sorted(groups.items(), key=lambda kv: kv[0] is None):
        up = sum(r.get("status") == "online" for r in members)
        title = (f"<b>stack {html.escape(stack)}</b> <span class='tsm-muted'>{up}/{len(members)} online</span>"
                 if stack else "<span class='tsm-muted'>not in a stack</span>")
        out.append(f'<tr class="tsm-stack-group" data-stack="{html.escape(stack or "")}">'
                   f'<td colspan="{len(TABLE_HEADERS)}">{title}</td></tr>')
        out.extend(_row(r, selected) for r in members)
    return "".join(out)


def summary(rows: Iterable[dict[str, Any]]) -> str:
    """``3 processes: 2 online, 1 errored`` with each count in its status colour."""
    rows = list(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("status") or "unknown"] = counts.get(r.get("status") or "unknown", 0) + 1
    order = [s for s in states.ALL if s in counts] + sorted(set(counts) - set(states.ALL))
    parts = ", ".join(f'<span style="color:{status_color(s)};font-weight:600">{counts[s]} {html.escape(s)}</span>'
                      for s in order)
    noun = "process" if len(rows) == 1 else "processes"
    return f"{len(rows)} {noun}" + (f": {parts}" if parts else "")


MAX_LINE = 2000  # characters shown of one log line: a 1 MB line must not reach the browser


def log_lines(lines: Iterable[tuple[str | None, str, str, float | None]], *, empty: str = "no log lines yet",
              style: bool = True) -> str:
    """A scrolling log box (newest line at the bottom, kept in view) from ``(who, stream, text, time)``.

    ``who`` labels the line when several processes are shown (None otherwise); ``err`` lines are
    red; ``time`` (epoch seconds, None when the line has no timestamp) is shown as local
    ``HH:MM:SS``. ANSI colours render as HTML (other escape codes are dropped); names are
    coloured by :func:`~tsm_notebook.notebook.ansi.name_color`. Lines longer than
    :data:`MAX_LINE` characters are cut. ``style`` as in
    :func:`status_table`.
    """
    out = []
    for who, stream, text, t in lines:
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + " …"
        label = f'<span class="t">{time.strftime("%H:%M:%S", time.localtime(t))} </span>' if t is not None else ""
        label += f'<span class="who" style="color:{name_color(who)}">{html.escape(who)} | </span>' if who else ""
        body = ansi_html(text)  # colours as in cell output; no escape code reaches the page
        out.append(f'{label}<span class="err">{body}</span>' if stream == "err" else f"{label}{body}")
    inner = "\n".join(out) if out else f'<span class="none">{html.escape(empty)}</span>'
    # column-reverse keeps the box scrolled to its end as lines arrive
    return f'{STYLE if style else ""}<div class="tsm-log"><pre>{inner}</pre></div>'


def _segments(points: Sequence[tuple[float, float | None]], *, start: float, end: float, top: float,
              width: int, height: int, gap: float) -> list[list[tuple[float, float]]]:
    span = max(end - start, 1e-9)
    top = top or 1.0
    segments: list[list[tuple[float, float]]] = []
    last_t = None
    for t, v in points:
        if v is None:
            last_t = None
            continue
        x = (t - start) / span * width
        y = height - 1 - min(max(v / top, 0.0), 1.0) * (height - 2)
        if last_t is None or t - last_t > gap:
            segments.append([])
        segments[-1].append((x, y))
        last_t = t
    return segments


def sparkline_path(points: Sequence[tuple[float, float | None]], *, start: float, end: float, top: float,
                   width: int, height: int, gap: float, area: bool = False) -> str:
    """SVG path data for ``(time, value)`` points on ``[start, end] x [0, top]``.

    The line breaks where a value is ``None`` or two samples are more than ``gap`` seconds apart
    (a stopped process, a restart), rather than drawing a straight line over the hole. With
    ``area`` each piece is closed down to the baseline, for a fill under the line.
    """
    out = []
    for seg in _segments(points, start=start, end=end, top=top, width=width, height=height, gap=gap):
        line = " ".join(f"{'L' if i else 'M'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(seg))
        if area:
            line = f"M{seg[0][0]:.1f},{height} L{line[1:]} L{seg[-1][0]:.1f},{height} Z"
        out.append(line)
    return " ".join(out)


def chart(title: str, points: Sequence[tuple[float, float | None]], *, fmt: Callable[[Any], str], start: float, end: float,
          floor: float, color: str, width: int = 240, height: int = 44, gap: float = 10.0) -> str:
    """A small labelled line chart: ``title``, the latest and highest value, the line over time.

    ``fmt`` formats a value (e.g. :func:`tsm_notebook.render.size`); the y axis runs from 0 to the
    highest value (at least ``floor``, so noise near zero stays flat).
    """
    values = [v for _, v in points if v is not None]
    latest = fmt(values[-1]) if values else "-"
    peak = max(values) if values else None
    top = max(floor, (peak or 0.0) * 1.15)
    geometry = dict(start=start, end=end, top=top, width=width, height=height, gap=gap)
    path = sparkline_path(points, **geometry)
    fill = sparkline_path(points, area=True, **geometry)
    minutes = max(1, round((end - start) / 60))
    svg = (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
           f'style="width:100%">'
           f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#d0d7de" stroke-width="1"/>'
           + (f'<path class="area" d="{fill}" fill="{color}" fill-opacity="0.12" stroke="none"/>'
              f'<path class="line" d="{path}" fill="none" stroke="{color}" stroke-width="1.5" stroke-linejoin="round"/>'
              if path else "")
           + "</svg>")
    right = f"max {fmt(peak)} · {minutes} min" if peak is not None else f"no samples in {minutes} min"
    return (f'<div class="tsm-chart"><div class="label"><span><b>{html.escape(title)}</b> {latest}</span>'
            f"<span>{right}</span></div>{svg}</div>")
