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


# ---- wire_header_fuzz: message/envelope byte, region byte, then the header --------------------
MAGIC = 0x4B565031
BASE = 0x7F0000000000  # the fuzz target's region start


def push_request(reply_tag, addr, length, grant=bytes(24), magic=MAGIC):
    return struct.pack("<IIQQQ", magic, 0, reply_tag, addr, length) + grant


def get_request(reply_tag, max_length, k, magic=MAGIC):
    return struct.pack("<IIQQ", magic, 0, reply_tag, max_length) + k


def put_request(flags, tag, size, checksum, k, parent=bytes(16), magic=MAGIC):
    return struct.pack("<IIQQQ", magic, flags, tag, size, checksum) + k + parent


def wire_seeds():
    t = "wire_header_fuzz"
    region = bytes([8])  # 1 MiB
    write(t, "push_read.bin", bytes([0]) + region + push_request(7, BASE + 4096, 4096, bytes([1]) * 24))
    write(t, "push_probe.bin", bytes([0]) + region + push_request(8, BASE, 8))
    write(t, "push_last_byte.bin", bytes([0]) + region + push_request(9, BASE + (1 << 20) - 1, 1, bytes([2]) * 24))
    write(t, "push_past_end.bin", bytes([0]) + region + push_request(9, BASE + (1 << 20) - 1, 2, bytes([2]) * 24))
    write(t, "push_old_version.bin", bytes([0]) + region + push_request(1, BASE, 8, magic=0x4B565030))
    write(t, "push_rendezvous.bin", bytes([4]) + region + push_request(7, BASE + 4096, 4096))
    write(t, "push_no_reply.bin", bytes([8]) + region + push_request(7, BASE + 4096, 4096))
    write(t, "push_with_payload.bin", bytes([16]) + region + push_request(7, BASE + 4096, 4096))
    write(t, "get.bin", bytes([1]) + region + get_request(11, 65536, key(3)))
    write(t, "get_no_room.bin", bytes([1]) + region + get_request(11, 0, key(3)))
    write(t, "get_short.bin", bytes([1]) + region + get_request(11, 65536, key(3))[:39])
    write(t, "put_pinned_parent.bin", bytes([2]) + region + put_request(1 | 2 | 4, 12, 5000, 0xABC, key(4), key(5)))
    write(t, "put_both_advice.bin", bytes([2]) + region + put_request(4 | 8, 12, 5000, 0xABC, key(4)))
    write(t, "put_unknown_flag.bin", bytes([2]) + region + put_request(16, 12, 5000, 0xABC, key(4)))
    write(t, "put_whole_region.bin", bytes([2]) + region + put_request(8, 13, 1 << 20, 1, key(6)))
    write(t, "put_empty.bin", bytes([2]) + region + put_request(0, 14, 0, 0, key(6)))


if __name__ == "__main__":
    ssd_seeds()
    wire_seeds()
