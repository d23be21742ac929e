"""Render sections to one self-contained HTML page and write it atomically.

Every piece of text goes through :func:`html.escape`; images are ``data:``
URIs; a Content-Security-Policy forbids any fetch, so the page works from
disk, offline, without JavaScript.
"""
from __future__ import annotations

import base64
import csv
import io
import math
import os
import tempfile
from html import escape
from pathlib import Path

from .blocks import Facts, Figure, Heading, Note, Section, Table

#: no network, no scripts: only inline styles and data: images
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

#: standalone tables longer than this are folded into a <details> element
LONG_TABLE_ROWS = 10

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2430;
 margin:0;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:24px} header p{margin:4px 0 0;opacity:.85}
nav{padding:8px 28px;background:#e8ecf2;border-bottom:1px solid #d5dbe4}
nav a{margin-right:16px;color:#1f3a5f;text-decoration:none;font-weight:600}
main{max-width:1180px;margin:0 auto;padding:8px 28px 40px}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;margin:18px 0;padding:6px 22px 16px}
h2{font-size:20px;border-bottom:2px solid #1f3a5f;padding-bottom:4px}
h3{font-size:16px;margin:18px 0 6px}
.answer{font-size:18px;background:#eef6ee;border-left:5px solid #2e7d32;padding:10px 14px;margin:10px 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 18px;margin:8px 0}
dl.facts dt{font-weight:600;color:#44505f} dl.facts dd{margin:0;word-break:break-word}
figure{margin:14px 0 20px} figure img{max-width:100%;height:auto;display:block;border:1px solid #eef0f3}
figcaption{font-weight:600;margin-bottom:6px}
table.data{border-collapse:collapse;font-size:13px;margin:6px 0 10px;font-variant-numeric:tabular-nums}
table.data caption{text-align:left;font-weight:600;padding:4px 0}
table.data th,table.data td{border:1px solid #d5dbe4;padding:2px 8px}
table.data th{background:#f0f3f7} table.data td.num{text-align:right;font-family:ui-monospace,Menlo,Consolas,monospace}
details{margin:4px 0 8px} summary{cursor:pointer;color:#1f3a5f}
a.csv{font-size:12px;margin-left:8px}
footer{color:#667;font-size:12px;text-align:center;padding:10px}
"""


def cell_text(v) -> str:
    """Display form of a raw table value: 6 significant digits for floats, blank for missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.columns)
    w.writerows([("" if v is None else repr(v) if isinstance(v, float) else v) for v in r] for r in t.rows)
    return buf.getvalue()


def render_table(t: Table) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f'<td class="num">{escape(cell_text(v))}</td>' if _is_num(v)
                                    else f"<td>{escape(cell_text(v))}</td>" for v in r) + "</tr>"
                   for r in t.rows)
    csv_uri = "data:text/csv;charset=utf-8;base64," + base64.b64encode(table_csv(t).encode()).decode()
    return (f'<table class="data" id="{escape(t.key)}"><caption>{escape(t.caption)}'
            f'<a class="csv" download="{escape(t.key)}.csv" href="{csv_uri}">CSV</a></caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def render_figure(f: Figure) -> str:
    tables = "".join(f"<details><summary>Numbers behind this plot: {escape(t.caption)}</summary>"
                     f"{render_table(t)}</details>" for t in f.tables)
    return (f'<figure id="{escape(f.key)}"><figcaption>{escape(f.title)}</figcaption>'
            f'<img src="{escape(f.image)}" alt="{escape(f.alt)}">{tables}</figure>')


def render_block(b) -> str:
    if isinstance(b, Figure):
        return render_figure(b)
    if isinstance(b, Table):
        if len(b.rows) > LONG_TABLE_ROWS:
            return (f"<details><summary>Table: {escape(b.caption)} ({len(b.rows)} rows)</summary>"
                    f"{render_table(b)}</details>")
        return render_table(b)
    if isinstance(b, Facts):
        items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in b.items)
        return f'<dl class="facts" id="{escape(b.key)}">{items}</dl>'
    if isinstance(b, Heading):
        return f"<h3>{escape(b.text)}</h3>"
    if isinstance(b, Note):
        cls = ' class="answer"' if b.answer else ""
        return f"<p{cls}>{escape(b.text)}</p>"
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_page(title: str, subtitle: str, sections: list[Section], footer: str = "") -> str:
    nav = "".join(f'<a href="#{escape(s.key)}">{escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{escape(s.key)}"><h2>{escape(s.title)}</h2>'
                   + "".join(render_block(b) for b in s.blocks) + "</section>" for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main><footer>{escape(footer)}</footer></body></html>\n")


def write_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and :func:`os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
