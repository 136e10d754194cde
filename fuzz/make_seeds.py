#!/usr/bin/env python3
"""Writes the checked-in seed inputs of the fuzz targets whose inputs are binary records or
protobuf messages (fuzz/corpus/<target>/): a few valid inputs and the edge cases next to them.
Run from anywhere; it rewrites only the files it names. Protobuf is encoded by hand (wire format:
varints and length-delimited fields), so the script needs nothing beyond Python."""
import os
import struct

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


# ---- protobuf wire format ------------------------------------------------------------------
def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vfield(num, value):  # varint field (ints, bools, enums)
    return varint(num << 3) + varint(value)


def bfield(num, data):  # length-delimited field (bytes, strings, messages)
    return varint((num << 3) | 2) + varint(len(data)) + data


def dfield(num, value):  # double field
    return varint((num << 3) | 1) + struct.pack("<d", value)


def key(i):
    return bytes([i]) * 16


# ---- ssd_record_fuzz: geometry bytes, then an index record value -----------------------------
def ssd_entry(flags, segment, offset, size, checksum, seq, parent=None, created=None):
    out = struct.pack("<IIQQQQ", flags, segment, offset, size, checksum, seq)
    if parent is not None:
        out += parent
    if created is not None:
        out += struct.pack("<Q", created)
    return out


def ssd_seeds():
    t = "ssd_record_fuzz"
    geometry = bytes([4, 0x88])  # 128 KiB segments, 10 of them, blocks up to a segment
    write(t, "entry_plain.bin", geometry + ssd_entry(0, 1, 8192, 5000, 0x1234, 7))
    write(t, "entry_parent_created.bin",
          geometry + ssd_entry(0xC0000000, 3, 0, 4096, 0x99, 8, key(2), 1_700_000_000_000))
    write(t, "entry_last_slot.bin", geometry + ssd_entry(1, 9, 126976, 4096, 1, 9))
    write(t, "entry_short.bin", geometry + ssd_entry(0, 1, 0, 1, 0, 1)[:39])
    write(t, "entry_flags_lie.bin", geometry + ssd_entry(0x80000000, 1, 0, 1, 0, 1))
    write(t, "layout.bin", geometry + struct.pack("<QQ", 131072, 10))
    write(t, "segment_seq.bin", geometry + b"s" + struct.pack(">I", 3) + struct.pack("<Q", 42))


if __name__ == "__main__":
    ssd_seeds()
