"""One self-contained HTML page: inline CSS, figures embedded as base64 PNG, no external requests.

The page carries a few lines of script that count the figures the browser decoded and their rendered widths
into ``<body data-figures-loaded=... data-figures-total=... data-min-figure-width=...>``, so a headless
browser (``chromium --headless --dump-dom``) can check that it renders and its figures are readable.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

VERDICT_CLASS = {"held": "held", "did not hold": "failed", "inconclusive": "inconclusive"}

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:2.2em;border-bottom:2px solid #ddd;padding-bottom:.2em}
h3{margin-top:1.4em;font-size:1.05em}
.verdict{display:inline-block;padding:.15em .7em;border-radius:1em;font-weight:600;font-size:.9em;margin-left:.6em;
vertical-align:middle}
.held{background:#d8f5dd;color:#11632a}.failed{background:#fddede;color:#8a1111}
.inconclusive{background:#fff2cc;color:#7a5b00}.neutral{background:#e8eef7;color:#23466e}
.claim{font-size:1.05em;border-left:4px solid #4a7bd0;padding:.4em .8em;background:#f5f8fd}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em;display:block;overflow-x:auto}
th,td{border:1px solid #d5d5d5;padding:.25em .55em;text-align:right;white-space:nowrap}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;font-size:.9em}
dl.kv dt{font-weight:600;color:#555}dl.kv dd{margin:0;word-break:break-word}
figure{margin:1em 0}figure img{max-width:100%;min-width:min(640px,100%);border:1px solid #e3e3e3}
figcaption{font-size:.85em;color:#555}nav a{margin-right:1em}
.muted{color:#777;font-size:.85em}
"""

SCRIPT = """
window.addEventListener('load',function(){var imgs=document.querySelectorAll('figure img'),ok=0,minw=1e9;
imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0){ok++;minw=Math.min(minw,i.getBoundingClientRect().width);}});
document.body.setAttribute('data-figures-loaded',ok);document.body.setAttribute('data-figures-total',imgs.length);
document.body.setAttribute('data-min-figure-width',imgs.length?Math.round(minw):0);});
"""


@dataclass
class Section:
    """One section of the page: a title, an optional verdict badge, and HTML blocks in order."""

    title: str
    anchor: str
    blocks: list[str] = field(default_factory=list)
    verdict: str | None = None

    def add(self, *blocks: str) -> "Section":
        """Append blocks (already HTML); returns the section."""
        self.blocks.extend(b for b in blocks if b)
        return self


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value))


def fmt(value: Any) -> str:
    """A number as a reader wants it in a table: 4 significant figures, integers as they are."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value[:8]) + (", ..." if len(value) > 8 else "")
    return str(value)


def table_html(rows: list[dict[str, Any]], columns: list[str] | None = None, caption: str | None = None) -> str:
    """A table of ``rows`` (dicts) with ``columns`` (default: every key, first-seen order)."""
    if not rows:
        return ""
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(row.get(c)))}</td>" for c in columns) + "</tr>" for row in rows)
    cap = f"<caption class='muted'>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_html(values: dict[str, Any]) -> str:
    """A definition list of settings ``key: value``."""
    if not values:
        return ""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in values.items())
    return f"<dl class='kv'>{items}</dl>"


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_html(png: bytes | str | Path, caption: str = "", alt: str = "") -> str:
    """An embedded figure from PNG bytes or a PNG file (its bytes are copied into the page)."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{png if not isinstance(png, bytes) else 'figure'} is not a PNG image")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure><img alt='{esc(alt or caption)}' src='{png_data_uri(data)}'>{cap}</figure>"


def figure_png(fig) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards), at the resolution the reproductions use."""
    from genlab.report.figures import pyplot

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    pyplot().close(fig)
    return buf.getvalue()


def verdict_badge(verdict: str | None) -> str:
    """The coloured verdict label (``held`` green, ``did not hold`` red, ``inconclusive`` amber)."""
    if not verdict:
        return ""
    return f"<span class='verdict {VERDICT_CLASS.get(verdict, 'neutral')}'>{esc(verdict)}</span>"


def page_html(title: str, sections: Iterable[Section], intro: str = "", footer: str = "") -> str:
    """The whole page: title, table of contents, sections, footer."""
    sections = list(sections)
    nav = "".join(f"<a href='#{esc(s.anchor)}'>{esc(s.title)}</a>" for s in sections) if len(sections) > 1 else ""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>", f"<h1>{esc(title)}</h1>", intro,
             f"<nav>{nav}</nav>" if nav else ""]
    for s in sections:
        parts.append(f"<section id='{esc(s.anchor)}'><h2>{esc(s.title)}{verdict_badge(s.verdict)}</h2>")
        parts.extend(s.blocks)
        parts.append("</section>")
    parts.append(f"<footer><h2>Machine and versions</h2>{footer}</footer></body></html>" if footer
                 else "</body></html>")
    return "\n".join(parts)


def write_page(path: str | Path, text: str) -> Path:
    """Write the page atomically; returns its path."""
    from genlab.jsonio import write_text_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, text)
