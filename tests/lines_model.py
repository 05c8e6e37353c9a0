"""The line rules of docs/tailing.md ("Lines"), written from that page for the tests' expected
values, independently of the splitter (src/core/lines.c):

- a record ends at '\n'; a record of NUL bytes only is no line;
- NULs before a line's first byte are no part of it: its offset is that of its first other byte;
- text followed by NULs is torn when anything follows the NULs (more text, or the '\n'): it is not
  given to the rules, and the text after the NULs is a line of its own;
- a line (or a torn piece) longer than `mx` bytes (without one trailing '\r'; mx 0: no limit) is
  long, skipped;
- one trailing '\r' is dropped.
"""
import re

PIECE = re.compile(rb"([^\0]+)(\0*)")


def split(data, mx=0):
    """Yields (kind, offset, number, bare, nuls) for every record of `data` up to its last '\n':
    kind is "line", "long", "torn" or "nul"; offset the file offset of its first byte; number the
    line number of its '\n'; bare its bytes without a trailing '\r'; nuls the NUL bytes counted
    with it (NUL bytes before it, and those after a torn piece; those after a long piece's bytes
    are its own)."""
    pos = number = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return
        number += 1
        rec = data[pos:nl]
        body = rec.lstrip(b"\0")
        lead = len(rec) - len(body)
        if not body:
            yield ("nul" if rec else "line", pos, number, b"", lead)
        for m in PIECE.finditer(body):
            text, nuls = m.group(1), len(m.group(2))
            bare = text[:-1] if text.endswith(b"\r") else text
            before = lead if m.start() == 0 else 0
            if mx and len(bare) > mx:
                yield ("long", pos + lead + m.start(), number, bare, before)
            else:
                yield ("torn" if nuls else "line", pos + lead + m.start(), number, bare,
                       before + nuls)
        pos = nl + 1


RID = re.compile(rb" rid=([0-9]+)\r?$")


def rid_lines(data, mx=0):
    """(offset, rid) of every line (not torn, not long) that ends in " rid=N"."""
    for kind, off, _, bare, _ in split(data, mx):
        m = RID.search(bare) if kind == "line" else None
        if m:
            yield off, int(m.group(1))
