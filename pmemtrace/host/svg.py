"""Pictures of per-chunk verdicts: an SVG strip per file or mapping (each
2 MiB chunk a cell coloured by outcome, and for fallbacks by reason, with a
legend and a tooltip per cell) and a compact coloured strip for terminals.

No dependencies: the SVG is written by hand (xml-escaped).
"""

from xml.sax.saxutils import escape

from ..units import format_size

# outcome colours (successful huge mappings in greens)
OUTCOME_COLOURS = {
    "pud": "#1b7837",
    "pmd": "#4dac26",
    "huge-zero": "#b8e186",
    "pte": "#f1a340",
    "zero-pte": "#fee0b6",
    "sigbus": "#d7191c",
    "error": "#7b3294",
    "none": "#bababa",
}

# fallback reasons get their own colours so a strip shows *why* at a glance
REASON_COLOURS = {
    "extent-too-short": "#e66101",
    "pfn-unaligned": "#fdb863",
    "pmd-colour-mismatch": "#b2abd2",
    "private-write": "#5e3c99",
    "vma-start": "#8073ac",
    "vma-end": "#8073ac",
    "beyond-eof": "#f4a582",
    "pte-entry-present": "#ffd92f",
    "pte-table-present": "#ffd92f",
    "nohugepage": "#a6cee3",
    "thp-disabled": "#1f78b4",
    "pfn-no-devmap": "#999999",
    "devdax-align-smaller": "#fdae61",
}

GLYPH = {
    "pud": "P",
    "pmd": "#",
    "huge-zero": "z",
    "pte": ".",
    "zero-pte": ",",
    "sigbus": "!",
    "error": "x",
    "none": " ",
}
# one letter per fallback reason in terminal strips
REASON_GLYPH = {
    "extent-too-short": "e",
    "pfn-unaligned": "a",
    "pmd-colour-mismatch": "c",
    "private-write": "w",
    "vma-start": "s",
    "vma-end": "v",
    "beyond-eof": "b",
    "pte-entry-present": "o",
    "pte-table-present": "t",
    "nohugepage": "n",
    "thp-disabled": "d",
    "pfn-no-devmap": "m",
    "devdax-align-smaller": "4",
}
ANSI = {
    "pud": "32;1",
    "pmd": "32",
    "huge-zero": "92",
    "pte": "33",
    "zero-pte": "93",
    "sigbus": "31",
    "error": "35",
    "none": "90",
}


def chunk_colour(ch):
    if ch.outcome in ("pte", "zero-pte") and ch.reason in REASON_COLOURS:
        return REASON_COLOURS[ch.reason]
    return OUTCOME_COLOURS.get(ch.outcome, "#bababa")


def _label(ch):
    return ch.outcome + (f": {ch.reason}" if ch.reason and ch.outcome not in ("pmd", "pud") else "")


#: a strip of more 2 MiB chunks than this draws one cell per run of like
#: chunks instead of one per chunk (a 4 TiB mapping has 2 million chunks)
MAX_CELLS = 4096


def cells(strip, limit=MAX_CELLS):
    """The chunks to draw, one cell each: every 2 MiB chunk while the strip
    has at most *limit*, else one per run (:attr:`Chunk.count`)."""
    if strip.blocks() > limit:
        return list(strip.chunks)
    return [ch for ch in strip.chunks for _ in range(ch.count)]


def render_svg(strips, title="pmemtrace diagnose", per_row=64, cell=12):
    """One SVG document with a strip per :class:`~pmemtrace.host.strips.Strip`."""
    pad, lh = 10, 16
    width = pad * 2 + max(per_row * cell, 520)
    y = pad + lh
    body = [f'<text x="{pad}" y="{y}" font-size="14" font-weight="bold">{escape(title)}</text>']
    y += 8
    used = {}
    for s in strips:
        y += lh + 4
        cnt = s.counts()
        summary = ", ".join(f"{v} {k}" for k, v in sorted(cnt.items()))
        drawn = cells(s)
        per = "2M" if len(drawn) == s.blocks() else "run"
        body.append(
            f'<text x="{pad}" y="{y}" font-size="12">{escape(s.subject)} '
            f"({s.blocks()} x 2M: {escape(summary) or 'no chunks'}; one cell per {per})</text>"
        )
        y += 6
        for i, ch in enumerate(drawn):
            col = chunk_colour(ch)
            used[_label(ch)] = col
            cx = pad + (i % per_row) * cell
            cy = y + (i // per_row) * cell
            tip = (
                f"chunk {ch.index} @ {format_size(ch.offset) if ch.offset else '0'}: {_label(ch)}; extents: {ch.layout}"
            )
            body.append(
                f'<rect x="{cx}" y="{cy}" width="{cell - 1}" height="{cell - 1}" fill="{col}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        rows = max(1, (len(drawn) + per_row - 1) // per_row)
        y += rows * cell + 4
        for f in s.findings:
            y += lh - 2
            body.append(
                f'<text x="{pad}" y="{y}" font-size="11" fill="#555">{escape(f.code)}: {escape(f.message)}</text>'
            )
    y += lh + 4
    body.append(f'<text x="{pad}" y="{y}" font-size="12" font-weight="bold">legend</text>')
    for label, col in sorted(used.items()):
        y += lh
        body.append(
            f'<rect x="{pad}" y="{y - 10}" width="11" height="11" fill="{col}"/>'
            f'<text x="{pad + 16}" y="{y}" font-size="11">{escape(label)}</text>'
        )
    height = y + pad
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>'
    )
    return head + "".join(body) + "</svg>\n"


def write_svg(path, strips, title="pmemtrace diagnose"):
    with open(path, "w") as f:
        f.write(render_svg(strips, title))


def glyph(ch):
    if ch.outcome in ("pte", "zero-pte") and ch.reason in REASON_GLYPH:
        return REASON_GLYPH[ch.reason]
    return GLYPH.get(ch.outcome, "?")


def terminal_strip(strip, colour=True, per_row=64):
    """Lines of glyphs, one per 2 MiB chunk (# pmd, . pte, z huge zero,
    ! sigbus, x error), or per run of like chunks beyond :data:`MAX_CELLS`;
    coloured with ANSI when *colour*."""
    lines = []
    row = []
    drawn = cells(strip)
    for i, ch in enumerate(drawn):
        g = glyph(ch)
        if colour:
            g = f"\x1b[{ANSI.get(ch.outcome, '0')}m{g if g != ' ' else '_'}\x1b[0m"
        row.append(g)
        if len(row) == per_row or i == len(drawn) - 1:
            lines.append("".join(row))
            row = []
    return lines


def terminal_legend(strips):
    seen = {}
    for s in strips:
        for ch in s.chunks:
            g = glyph(ch)
            seen.setdefault(g, _label(ch))
    return "  ".join(f"{g}={label}" for g, label in sorted(seen.items()))


__all__ = ["render_svg", "write_svg", "terminal_strip", "terminal_legend"]
