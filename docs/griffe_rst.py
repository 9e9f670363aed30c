"""A griffe extension for the API pages: the reST idioms of mtcv's NumPy-style
docstrings rendered as Markdown.

mtcv's docstrings are written for the terminal and Sphinx-like readers; the
API pages (mkdocstrings, Markdown) would show three idioms as raw text. This
extension rewrites each docstring as it is loaded (the source is untouched):

* simple tables (``=====  =====`` rules) become Markdown tables;
* cross-reference roles (``:class:`~a.b.C```) become code spans (``C``);
* a paragraph ending in ``::`` before an indented literal block ends in
  ``:`` (the block itself is already an indented Markdown code block).

Named in ``mkdocs.yml`` under the python handler's ``extensions``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_RULE = re.compile(r"^ *=+( +=+)+ *$")
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|ref):`(~?)([^`]+)`")


def _columns(rule: str) -> list[int]:
    return [m.start() for m in re.finditer(r"=+", rule)]


def _cells(line: str, starts: list[int]) -> list[str]:
    """Cut ``line`` at the column starts; text running past its column's
    end (a word across a boundary) stays in its cell."""
    cuts = []
    for b in starts[1:]:
        while 0 < b < len(line) and line[b - 1] != " " and line[b] != " ":
            b += 1
        cuts.append(b)
    bounds = list(zip([starts[0], *cuts], [*cuts, None], strict=True))
    return [line[a:b].strip() for a, b in bounds]


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def _rows(lines: list[str], starts: list[int]) -> list[list[str]]:
    """Rows of a table body; a line whose first cell is empty continues the
    row above."""
    rows: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        cells = _cells(line, starts)
        if rows and not cells[0]:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    return rows


def tables_to_markdown(text: str) -> str:
    """Replace every reST simple table in ``text`` by a Markdown table."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _RULE.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        # rule, header, rule, body, rule -- or rule, body, rule (no header):
        # a third rule counts only before the next blank line
        rules = [i]
        j = i + 1
        while j < len(lines) and len(rules) < 3:
            if _RULE.match(lines[j]):
                rules.append(j)
            elif len(rules) == 2 and not lines[j].strip():
                break
            j += 1
        if len(rules) < 2:
            out.append(lines[i])
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        starts = [s - indent for s in _columns(lines[i])]
        body = [x[indent:] for x in lines[rules[0] + 1:rules[1]]]
        if len(rules) == 3:
            header = _rows(body, starts)
            rows = _rows([x[indent:] for x in lines[rules[1] + 1:rules[2]]], starts)
        else:
            header = [[""] * len(starts)]
            rows = _rows(body, starts)
        pad = " " * indent
        if out and out[-1].strip():
            out.append("")
        out.append(pad + "| " + " | ".join(_escape(c) for c in header[0]) + " |")
        out.append(pad + "|" + "---|" * len(starts))
        out += [pad + "| " + " | ".join(_escape(c) for c in r) + " |" for r in rows]
        i = rules[-1] + 1
        if i < len(lines) and lines[i].strip():
            out.append("")
    return "\n".join(out)


def roles_to_code(text: str) -> str:
    """``:class:`~a.b.C``` -> ```C```; ``:func:`a.f``` -> ```a.f```."""
    def repl(m: re.Match[str]) -> str:
        target = m.group(2)
        if m.group(1):
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return _ROLE.sub(repl, text)


def literal_markers(text: str) -> str:
    """RST's ``text::`` before a literal block -> ``text:``; a lone ``::`` goes."""
    lines = text.splitlines()
    out = []
    for k, line in enumerate(lines):
        nxt = lines[k + 1] if k + 1 < len(lines) else ""
        if line.rstrip().endswith("::") and not nxt.strip():
            stripped = line.rstrip()[:-2].rstrip()
            if not stripped:
                continue
            out.append(stripped + ":")
        else:
            out.append(line)
    return "\n".join(out)


def convert(text: str) -> str:
    """All three rewrites."""
    return literal_markers(roles_to_code(tables_to_markdown(text)))


class RstToMarkdown(griffe.Extension):
    """Rewrite docstrings as they are loaded (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
