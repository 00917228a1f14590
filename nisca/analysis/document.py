"""A report as a list of blocks (heading, text, table, figure) written as Markdown and as one HTML file.

Tables are pandas' own `to_markdown` / `to_html` output; figures are PNG files beside report.md and
are embedded as base64 data URIs in report.html, so the HTML opens anywhere without its folder.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.6em; }
table.dataframe { border-collapse: collapse; font-size: 13px; margin: .6em 0 1.2em; display: block;
                  overflow-x: auto; max-width: 100%; }
table.dataframe th, table.dataframe td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left;
                                         vertical-align: top; font-variant-numeric: tabular-nums; }
table.dataframe td { max-width: 480px; }
table.dataframe th { background: #f6f8fa; white-space: nowrap; }
table.dataframe tr:nth-child(even) td { background: #fbfbfc; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; border: 1px solid #eaeef2; }
figcaption { font-size: 13px; color: #57606a; }
p.note { background: #fff8c5; border: 1px solid #d4a72c66; padding: .5em .8em; border-radius: 4px; }
code, pre { font-family: SFMono-Regular, Consolas, monospace; font-size: 12.5px; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
nav { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .6em 1em; font-size: 14px; }
nav ul { margin: .3em 0; padding-left: 1.2em; columns: 2; }
nav li.l3 { margin-left: 1.2em; font-size: 13px; }
"""


@dataclass
class Block:
    kind: str  # "heading", "text", "note", "code", "details", "table", "figure"
    text: str = ""
    level: int = 2
    table: pd.DataFrame | None = None
    csv: str | None = None  # relative path of the table's CSV
    body: str = ""  # the folded text of a "details" block
    image: str | None = None  # relative path of the figure's PNG


@dataclass
class Document:
    """Blocks in reading order, plus where the files go."""

    title: str
    out_dir: Path
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Block("heading", text, level))

    def text(self, text: str) -> None:
        self.blocks.append(Block("text", text))

    def note(self, text: str) -> None:
        self.blocks.append(Block("note", text))

    def code(self, text: str) -> None:
        self.blocks.append(Block("code", text))

    def details(self, summary: str, text: str) -> None:
        """A long text block (folded in HTML)."""
        self.blocks.append(Block("details", summary, body=text))

    def table(self, frame: pd.DataFrame, csv: str | None, caption: str = "") -> None:
        self.blocks.append(Block("table", caption, table=frame, csv=csv))

    def figure(self, image: str, caption: str) -> None:
        self.blocks.append(Block("figure", caption, image=image))

    def write_markdown(self, path: Path) -> Path:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            if block.kind == "heading":
                lines += ["#" * block.level + " " + block.text, ""]
            elif block.kind == "text":
                lines += [block.text, ""]
            elif block.kind == "note":
                lines += [f"> {block.text}", ""]
            elif block.kind == "code":
                lines += ["```", block.text, "```", ""]
            elif block.kind == "details":
                lines += [f"<details><summary>{block.text}</summary>", "", "```json", block.body, "```", "",
                          "</details>", ""]
            elif block.kind == "table":
                if block.text:
                    lines += [f"*{block.text}*", ""]
                lines += [_markdown_table(block.table), ""]
                if block.csv:
                    lines += [f"CSV: [{block.csv}]({block.csv})", ""]
            elif block.kind == "figure":
                lines += [f"![{block.text}]({block.image})", "", f"*{block.text}*", ""]
        path.write_text("\n".join(lines))
        return path

    def _anchors(self) -> list[str]:
        """One unique id per heading, in order (the same subsection title recurs once per study)."""
        seen: dict[str, int] = {}
        out = []
        for block in self.blocks:
            if block.kind == "heading":
                base = _anchor(block.text)
                seen[base] = seen.get(base, 0) + 1
                out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
        return out

    def _contents(self) -> str:
        """A linked list of the sections (level-2 headings) and their subsections."""
        items = []
        headings = [b for b in self.blocks if b.kind == "heading"]
        for block, anchor in zip(headings, self._anchors()):
            if block.level <= 3:
                items.append(f'<li class="l{block.level}"><a href="#{anchor}">{html.escape(block.text)}</a></li>')
        return f'<nav><strong>Contents</strong><ul>{"".join(items)}</ul></nav>' if items else ""

    def write_html(self, path: Path) -> Path:
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title>",
            f"<style>{CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
            self._contents(),
        ]
        anchors = iter(self._anchors())
        for block in self.blocks:
            if block.kind == "heading":
                anchor = next(anchors)
                parts.append(f'<h{block.level} id="{anchor}">{html.escape(block.text)}</h{block.level}>')
            elif block.kind == "text":
                parts.append(f"<p>{_inline(block.text)}</p>")
            elif block.kind == "note":
                parts.append(f'<p class="note">{_inline(block.text)}</p>')
            elif block.kind == "code":
                parts.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
            elif block.kind == "details":
                parts.append(f"<details><summary>{html.escape(block.text)}</summary>"
                             f"<pre><code>{html.escape(block.body)}</code></pre></details>")
            elif block.kind == "table":
                if block.text:
                    parts.append(f"<p><em>{_inline(block.text)}</em></p>")
                parts.append(_html_table(block.table))
                if block.csv:
                    parts.append(f'<p style="font-size:12px">CSV beside this report: <code>{html.escape(block.csv)}</code></p>')
            elif block.kind == "figure":
                data = base64.b64encode((self.out_dir / block.image).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img alt="{html.escape(block.text)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline(block.text)}</figcaption></figure>"
                )
        parts.append("</body></html>")
        path.write_text("\n".join(parts))
        return path


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    return _for_display(frame).to_markdown(index=False)


def _html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>(none)</p>"
    return _for_display(frame).to_html(index=False, escape=True, border=0, classes="dataframe", na_rep="—")


def _for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """Floats to 4 significant digits, missing values as a dash, booleans as yes/no."""
    shown = frame.copy()
    for column in shown.columns:
        values = shown[column]
        if pd.api.types.is_bool_dtype(values):
            shown[column] = values.map({True: "yes", False: "no"})
        elif pd.api.types.is_float_dtype(values):
            shown[column] = values.map(lambda v: "—" if pd.isna(v) else f"{v:.4g}")
        else:
            shown[column] = values.astype(object).where(values.notna(), "—")
    return shown


def _inline(text: str) -> str:
    """The few Markdown inline forms the report uses: `code` and **bold**."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
