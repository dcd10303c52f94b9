"""ANSI colour codes to HTML, the way Jupyter shows them in cell output: SGR colours (the 16
basic ones in Jupyter's palette, 256-colour and 24-bit), bold, italic, underline; every other
escape sequence (cursor moves, titles, ``\\r`` progress bars' erase codes) is dropped. The text
is escaped; the result holds no escape character. Pure: no widgets, no pandas."""

from __future__ import annotations

import html
import re

__all__ = ["ansi_html", "name_color"]

# Jupyter's ansi-* colours (normal, then bright), readable on light and dark themes
_BASIC = ("#3e424d", "#e75c58", "#00a250", "#ddb62b", "#208ffb", "#d160c4", "#60c6c8", "#c5c1b4")
_BRIGHT = ("#282c36", "#b22b31", "#007427", "#b27d12", "#0065ca", "#a03196", "#258f8f", "#a1a6b2")
_SGR_RE = re.compile(r"\x1b\[([0-9;:]*)m")
# CSI sequences other than SGR, OSC strings (titles, hyperlinks), and lone two-byte escapes
_OTHER_RE = re.compile(r"\x1b\[[0-9;:?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")


def _color256(n: int) -> str | None:
    if 0 <= n < 8:
        return _BASIC[n]
    if 8 <= n < 16:
        return _BRIGHT[n - 8]
    if 16 <= n < 232:
        n -= 16
        steps = (0, 95, 135, 175, 215, 255)
        return f"#{steps[n // 36]:02x}{steps[n // 6 % 6]:02x}{steps[n % 6]:02x}"
    if 232 <= n < 256:
        level = 8 + (n - 232) * 10
        return f"#{level:02x}{level:02x}{level:02x}"
    return None


def _extended(codes: list[int], i: int) -> tuple[str | None, int]:
    """A 38/48 colour starting at ``codes[i]`` (``5;n`` or ``2;r;g;b``): (css colour, next index)."""
    if i + 1 < len(codes) and codes[i + 1] == 5 and i + 2 < len(codes):
        return _color256(codes[i + 2]), i + 3
    if i + 1 < len(codes) and codes[i + 1] == 2 and i + 4 < len(codes):
        r, g, b = (max(0, min(255, c)) for c in codes[i + 2 : i + 5])
        return f"#{r:02x}{g:02x}{b:02x}", i + 5
    return None, len(codes)


class _State:
    __slots__ = ("fg", "bg", "bold", "italic", "underline")

    def __init__(self) -> None:
        self.fg = self.bg = None
        self.bold = self.italic = self.underline = False

    def apply(self, params: str) -> None:
        codes = [int(c) if c.isdigit() else 0 for c in re.split("[;:]", params)] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            i += 1
            if c == 0:
                self.__init__()
            elif c == 1:
                self.bold = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 22:
                self.bold = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif 30 <= c <= 37:
                self.fg = _BASIC[c - 30]
            elif 90 <= c <= 97:
                self.fg = _BRIGHT[c - 90]
            elif 40 <= c <= 47:
                self.bg = _BASIC[c - 40]
            elif 100 <= c <= 107:
                self.bg = _BRIGHT[c - 100]
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48):
                color, i = _extended(codes, i - 1)
                if c == 38:
                    self.fg = color
                else:
                    self.bg = color

    def css(self) -> str:
        parts = []
        if self.fg:
            parts.append(f"color:{self.fg}")
        if self.bg:
            parts.append(f"background-color:{self.bg}")
        if self.bold:
            parts.append("font-weight:bold")
        if self.italic:
            parts.append("font-style:italic")
        if self.underline:
            parts.append("text-decoration:underline")
        return ";".join(parts)


def ansi_html(text: str) -> str:
    """``text`` escaped for HTML, its SGR colours as ``<span style=...>``; other escapes dropped."""
    if "\x1b" not in text:
        return html.escape(text)
    state = _State()
    out: list[str] = []
    pos = 0
    for m in _SGR_RE.finditer(text):
        _emit(out, text[pos : m.start()], state)
        state.apply(m.group(1))
        pos = m.end()
    _emit(out, text[pos:], state)
    return "".join(out)


def _emit(out: list[str], chunk: str, state: _State) -> None:
    chunk = _OTHER_RE.sub("", chunk)
    if not chunk:
        return
    css = state.css()
    body = html.escape(chunk)
    out.append(f'<span style="{css}">{body}</span>' if css else body)


#: colours of process names in a mixed log stream (distinct, readable on light and dark)
NAME_COLORS = ("#0969da", "#1a7f37", "#8250df", "#bc4c00", "#bf3989", "#1b7c83", "#9a6700", "#cf222e")


def name_color(name: str) -> str:
    """A stable colour for a process name (the same name gets the same colour in every view)."""
    import zlib

    return NAME_COLORS[zlib.crc32(name.encode()) % len(NAME_COLORS)]
