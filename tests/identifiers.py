#!/usr/bin/env python3
"""Computes meter event identifiers independently of logmeter's C code, from the layout documented
in docs/identifiers.md. Reads line offsets (one per line) on stdin, prints one identifier per line.

usage: identifiers.py INSTANCE SOURCE FILE_UID RULE < offsets
"""
import hashlib
import struct
import sys


def field(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


def identifier(instance, source, uid, offset, rule):
    h = hashlib.sha256()
    for part in (instance, source, uid, str(offset), rule):
        h.update(field(part.encode()))
    return "lm1-" + h.digest()[:20].hex()


def main():
    instance, source, uid, rule = sys.argv[1:5]
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if line:
            out.write(identifier(instance, source, uid, int(line), rule) + "\n")


if __name__ == "__main__":
    main()
