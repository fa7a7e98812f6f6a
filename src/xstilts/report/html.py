"""One self-contained HTML page: tables as HTML, figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from xstilts.report.render import Table, to_html
from xstilts.report.statistics import __doc__ as STATISTICS_DOC

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.3em 0.7em; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #333; }
tr.group td { border-top: 2px solid #999; }
.note { font-size: 0.9em; color: #555; }
img { max-width: 100%; }
"""


def embed_png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def page(title: str, tables: list[Table], figures: list[Path], summary: list[str] = ()) -> str:
    """``summary``: computed sentences shown above the tables."""
    esc = html.escape
    method = " ".join((STATISTICS_DOC or "").split())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        *(
            ["<h2>Summary</h2>", "<ul>", *[f"<li>{esc(line)}</li>" for line in summary], "</ul>"]
            if summary
            else []
        ),
        *[to_html(t) for t in tables],
        "<h2>Statistics</h2>",
        f'<p class="note">{esc(method)}</p>',
        "<h2>Figures</h2>",
        *[
            f"<figure>{embed_png(f)}<figcaption>{esc(f.stem)}</figcaption></figure>"
            for f in figures
        ],
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
