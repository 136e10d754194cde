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
def ssd_entry(flags, segment, offset, size, checksum, seq, parent=None, created=None, owner=None):
    out = struct.pack("<IIQQQQ", flags, segment, offset, size, checksum, seq)
    if parent is not None:
        out += parent
    if created is not None:
        out += struct.pack("<Q", created)
    if owner is not None:
        out += struct.pack("<I", owner)
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
    write(t, "entry_all_fields_owner.bin",
          geometry + ssd_entry(0xE0000000, 2, 4096, 8192, 0x77, 11, key(3), 1_700_000_000_000, owner=5))
    write(t, "entry_owner_zero.bin", geometry + ssd_entry(0x20000000, 1, 0, 4096, 1, 1, owner=0))
    write(t, "owner_label.bin", geometry + b"o" + struct.pack(">I", 5) + b"team-a")


# ---- wire_header_fuzz: message/envelope byte, region byte, then the header --------------------
MAGIC = 0x4B565031
BASE = 0x7F0000000000  # the fuzz target's region start


def push_request(reply_tag, addr, length, grant=bytes(40), magic=MAGIC):
    return struct.pack("<IIQQQ", magic, 0, reply_tag, addr, length) + grant


def get_request(reply_tag, max_length, k, magic=MAGIC):
    return struct.pack("<IIQQ", magic, 0, reply_tag, max_length) + k


def put_request(flags, tag, size, checksum, k, parent=bytes(16), magic=MAGIC):
    return struct.pack("<IIQQQ", magic, flags, tag, size, checksum) + k + parent


def wire_seeds():
    t = "wire_header_fuzz"
    region = bytes([8])  # 1 MiB
    write(t, "push_read.bin", bytes([0]) + region + push_request(7, BASE + 4096, 4096, bytes([1]) * 40))
    write(t, "push_probe.bin", bytes([0]) + region + push_request(8, BASE, 8))
    write(t, "push_last_byte.bin", bytes([0]) + region + push_request(9, BASE + (1 << 20) - 1, 1, bytes([2]) * 40))
    write(t, "push_past_end.bin", bytes([0]) + region + push_request(9, BASE + (1 << 20) - 1, 2, bytes([2]) * 40))
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


# ---- conductor_request_fuzz: RPC byte, then the request --------------------------------------
def packed(num, values):
    body = b"".join(varint(v) for v in values)
    return bfield(num, body)


def conductor_seeds():
    t = "conductor_request_fuzz"
    write(t, "register_prefill.bin", bytes([0]) + bfield(1, b"p1") + vfield(2, 1) + bfield(3, b"10.0.0.1:50051")
          + bfield(4, b"model"))
    write(t, "register_other_role.bin", bytes([0]) + bfield(1, b"p0") + vfield(2, 2))
    write(t, "register_no_role.bin", bytes([0]) + bfield(1, b"x"))
    write(t, "register_long_id.bin", bytes([0]) + bfield(1, b"i" * 257) + vfield(2, 1))
    write(t, "heartbeat_prefill.bin", bytes([1]) + bfield(1, b"p0") + dfield(2, 0.25))
    write(t, "heartbeat_decode.bin", bytes([1]) + bfield(1, b"d0") + dfield(3, 0.02)
          + bfield(4, vfield(1, 1000) + vfield(2, 50)) + bfield(4, vfield(1, 10) + vfield(2, 1)))
    write(t, "heartbeat_nan.bin", bytes([1]) + bfield(1, b"p0") + dfield(2, float("nan")))
    write(t, "events.bin", bytes([2]) + bfield(1, b"p0") + bfield(2, key(1)) + bfield(2, key(2))
          + packed(4, [7, 8]) + packed(5, [7]))
    write(t, "events_short_key.bin", bytes([2]) + bfield(1, b"p0") + bfield(3, key(1)[:15]))
    write(t, "events_unknown.bin", bytes([2]) + bfield(1, b"nobody") + packed(4, [1]))
    write(t, "route_tokens.bin", bytes([3]) + vfield(1, 1) + packed(4, list(range(40))) + bfield(5, b"model")
          + vfield(3, 16))
    write(t, "route_keys.bin", bytes([3]) + vfield(1, 2) + vfield(2, 32) + bfield(6, key(1)) + bfield(6, key(2)))
    write(t, "route_ids.bin", bytes([3]) + vfield(1, 3) + vfield(2, 48) + packed(7, [1, 2, 3]))
    write(t, "route_two_forms.bin", bytes([3]) + packed(7, [1]) + bfield(6, key(1)))
    write(t, "route_tokens_no_model.bin", bytes([3]) + packed(4, [1, 2, 3]))
    write(t, "ttft.bin", bytes([4]) + vfield(1, 1) + dfield(2, 0.5))
    write(t, "ttft_negative.bin", bytes([4]) + vfield(1, 1) + dfield(2, -1.0))


# ---- store_request_fuzz: RPC byte, then the request (keys 1, 2 stored; "#0", "#1" open) -------
def store_seeds():
    t = "store_request_fuzz"
    write(t, "lookup_chain.bin", bytes([0]) + bfield(1, key(1)) + bfield(1, key(2)) + vfield(2, 5000))
    write(t, "lookup_lease_too_long.bin", bytes([0]) + bfield(1, key(1)) + vfield(2, 60001))
    write(t, "lookup_repeated.bin", bytes([0]) + bfield(1, key(1)) + bfield(1, key(1)))
    write(t, "put_begin.bin", bytes([1]) + bfield(1, bfield(1, key(5)) + vfield(2, 4096) + bfield(3, key(2)))
          + vfield(2, 1000))
    write(t, "put_begin_exists.bin", bytes([1]) + bfield(1, bfield(1, key(1)) + vfield(2, 1000)))
    write(t, "put_begin_too_big.bin", bytes([1]) + bfield(1, bfield(1, key(6)) + vfield(2, 65537)))
    write(t, "put_begin_two_sided.bin", bytes([1]) + bfield(1, bfield(1, key(6)) + vfield(2, 10)) + vfield(3, 1))
    write(t, "put_commit_inline.bin", bytes([2]) + bfield(1, bfield(4, b"#0") + bfield(3, bytes(512)))
          + vfield(3, 1))
    write(t, "put_commit_two.bin", bytes([2]) + bfield(1, bfield(4, b"#0")) + bfield(1, bfield(4, b"#1"))
          + vfield(2, 1))
    write(t, "put_commit_wrong_size.bin", bytes([2]) + bfield(1, bfield(4, b"#1") + bfield(3, bytes(100))))
    write(t, "put_commit_bad_advice.bin", bytes([2]) + bfield(1, bfield(4, b"#0")) + vfield(3, 7))
    write(t, "put_abort.bin", bytes([3]) + bfield(2, b"#0") + bfield(2, b"#1") + bfield(2, b"stranger"))
    write(t, "put_abort_repeated.bin", bytes([3]) + bfield(2, b"#0") + bfield(2, b"#0"))
    write(t, "put_inline.bin", bytes([4]) + bfield(1, bfield(1, key(7)) + bfield(2, key(2)) + bfield(3, b"x" * 300))
          + vfield(3, 2))
    write(t, "put_inline_bad_parent.bin", bytes([4]) + bfield(1, bfield(1, key(7)) + bfield(2, b"short")
                                                              + bfield(3, b"x")))
    write(t, "put_inline_checksum.bin", bytes([4]) + bfield(1, bfield(1, key(8)) + bfield(3, b"abc") + vfield(4, 99)))
    write(t, "get.bin", bytes([5]) + bfield(1, key(1)) + bfield(1, key(2)) + bfield(1, key(9)))
    write(t, "get_locate.bin", bytes([5]) + bfield(1, key(1)) + vfield(2, 1) + vfield(3, 100))
    write(t, "release.bin", bytes([6]) + bfield(1, bfield(1, key(1)) + vfield(2, 1)))
    write(t, "remove.bin", bytes([7]) + bfield(1, key(2)) + bfield(1, key(9)))
    write(t, "remove_empty.bin", bytes([7]))
    write(t, "stat.bin", bytes([8]) + bfield(1, key(1)) + bfield(1, key(3)))
    write(t, "list.bin", bytes([9]) + vfield(2, 1))
    write(t, "list_after.bin", bytes([9]) + bfield(1, key(1)) + vfield(2, 1000))
    write(t, "list_over_limit.bin", bytes([9]) + vfield(2, 1001))


if __name__ == "__main__":
    ssd_seeds()
    wire_seeds()
    conductor_seeds()
    store_seeds()
