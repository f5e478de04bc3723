#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Print every chunk of every delta model in a store's catalog, one line
each: model path tensor chunk_index file_offset out_len pack pack_offset
pack_length. Reads both catalog layouts of udfs(5): a tensor map per file
(format 4) and a tensors row per tensor (format 3 and before). For the
tests that damage chosen chunks of a pack.

usage: chunk_map.py CATALOG.db
"""
import json
import sqlite3
import struct
import sys

CHUNK = 1 << 20
LOSSY = range(4, 9)  # ultradelta .. adaptive


def varint(b, pos):
    v = shift = 0
    while True:
        x = b[pos]
        pos += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return v, pos


def header_tensors(header):
    """(name, begin, end) in the order of udfs(5): begin, end, name."""
    n = struct.unpack_from("<Q", header)[0]
    h = json.loads(header[8:8 + n])
    ts = [(k, v["data_offsets"][0], v["data_offsets"][1])
          for k, v in h.items() if k != "__metadata__"]
    return sorted(ts, key=lambda t: (t[1], t[2], t[0].encode()))


def map_chunks(tmap, tensors):
    """(name, begin, end, [(offset, length)]) of each tensor of the map."""
    pos, prev, out = 1, 0, []
    for name, b, e in tensors:
        head = tmap[pos]
        pos += 1
        enc = head & 0x1F
        if head & 0x80:
            _, pos = varint(tmap, pos)
            _, pos = varint(tmap, pos)
        if enc in LOSSY:
            flags = tmap[pos + 1]
            pos += 2
            pos += 4 * bin(flags & 0x07).count("1")
            pos += 8 if flags & 0x08 else 4
            if flags & 0x10:
                _, pos = varint(tmap, pos)
        chunks = []
        if enc not in (0, 1):
            for _ in range((e - b + CHUNK - 1) // CHUNK):
                zz, pos = varint(tmap, pos)
                ln, pos = varint(tmap, pos)
                pos += 8
                off = prev + ((zz >> 1) ^ -(zz & 1))
                chunks.append((off, ln))
                prev = off + ln
        out.append((name, b, e, chunks))
    return out


def main():
    db = sqlite3.connect(sys.argv[1])
    cols = [r[1] for r in db.execute("PRAGMA table_info(files)")]
    has_map = "tensor_map" in cols
    q = ("SELECT f.id, m.name, f.path, f.data_offset, f.size, m.storage, "
         + ("f.tensor_map, coalesce(f.header, (SELECT h.header FROM files h "
            "WHERE h.id = f.header_file))" if has_map else "NULL, NULL")
         + " FROM files f JOIN models m ON m.id = f.model_id"
         " WHERE m.kind = 1 ORDER BY m.name, f.path")
    for fid, model, path, doff, size, pack, tmap, header in db.execute(q):
        if tmap is not None:
            ts = header_tensors(header) if doff else [("", 0, size)]
            tensors = map_chunks(tmap, ts)
        else:
            tensors = []
            for name, b, e, blob in db.execute(
                    "SELECT name, begin, end, chunks FROM tensors WHERE "
                    "file_id = ? ORDER BY begin, idx", (fid,)):
                cs = [struct.unpack_from("<QIQ", blob, 20 * i)[:2]
                      for i in range(len(blob or b"") // 20)]
                tensors.append((name, b, e, cs))
        for name, b, e, chunks in tensors:
            for i, (off, ln) in enumerate(chunks):
                out = min(CHUNK, e - b - i * CHUNK)
                print(model, path, name or "-", i, doff + b + i * CHUNK, out,
                      pack, off, ln)


main()
