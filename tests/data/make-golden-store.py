#!/usr/bin/python3
"""Writes the golden version-1 stores in tests/data/ straight from the byte
tables of docs/FORMAT.md (an implementation independent of src/record.c),
so that a format change that breaks old stores fails test_golden.

    tests/data/make-golden-store.py tests/data

Stores written (each a complete data directory):
  store-v1            block 1 sealed (with .idx), block 2 active; one image
                      deleted (tombstone in block 2, deleted bit in place)
  store-v1-truncated  block 2 cut in the middle of its last record
  store-v1-corrupt    one stored byte of image C flipped
  store-v1-badidx     block 1's index file is garbage (rebuilt at open)
  golden-v1.tsv       what each store must contain

Run once; the outputs are checked in and must never be regenerated to make
a failing test pass.
"""
import os
import shutil
import struct
import sys

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


STORE_ID = bytes(range(0xA0, 0xB0))
CREATED = 1767225600  # 2026-01-01T00:00:00Z
ZSTD, FERNET, TOMBSTONE, MOVED, PAD, DELETED = 0x1, 0x2, 0x4, 0x8, 0x10, 0x100


def hdr64(magic, field32, field64):
    b = magic + struct.pack("<II", 1, field32) + STORE_ID + struct.pack("<Q", field64)
    b += bytes(20)
    return b + struct.pack("<I", crc32c(b))


def payload(gen, n):
    return bytes((gen * 31 + j * 7 + (j >> 5)) & 0xFF for j in range(n))


def record(flags, key, cookie, w, h, data, plain_len):
    def encode(fl):
        b = b"FBRC" + struct.pack("<IQIIII", fl, key, cookie, w, h, crc32c(data))
        b += struct.pack("<QQqI", len(data), plain_len, CREATED, 0)
        return b

    crc = crc32c(encode(flags & ~DELETED))  # the deleted bit is outside the CRC
    hdr = encode(flags) + struct.pack("<I", crc)
    pad = (-len(data)) % 8
    return hdr + data + bytes(pad)


class Block:
    def __init__(self, number):
        self.number = number
        self.buf = bytearray(hdr64(b"FBBLOCK\0", number, CREATED))
        self.entries = []

    def add(self, flags, cookie, w, h, data, plain_len=None, key=None):
        at = len(self.buf)
        off = at + 64
        if key is None:
            key = (self.number << 40) | off
        self.buf += record(flags, key, cookie, w, h, data,
                           len(data) if plain_len is None else plain_len)
        self.entries.append((key, off, len(data), cookie, flags, crc32c(data)))
        return key, off

    def index(self):
        ents = b"".join(struct.pack("<QQIIII", *e) for e in self.entries)
        b = b"FBINDEX\0" + struct.pack("<II", 1, self.number) + STORE_ID
        b += struct.pack("<QQI", len(self.entries), len(self.buf), crc32c(ents)) + bytes(8)
        return b + struct.pack("<I", crc32c(b)) + ents


def write_store(path, blocks, sealed):
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(os.path.join(path, "blocks"))
    with open(os.path.join(path, "fastblocks.store"), "wb") as f:
        f.write(hdr64(b"FBSTORE\0", 0, CREATED))
    for b in blocks:
        name = os.path.join(path, "blocks", "block_%08d" % b.number)
        with open(name + ".fbk", "wb") as f:
            f.write(b.buf)
        if b.number in sealed:
            with open(name + ".idx", "wb") as f:
                f.write(b.index())


def main(out):
    images = []  # name, gen, len, key, off, cookie, w, h
    b1, b2 = Block(1), Block(2)
    for name, gen, n, cookie in (("A", 1, 300, 0x11111111), ("B", 2, 1001, 0x22222222),
                                 ("C", 3, 77, 0x33333333)):
        key, off = b1.add(0, cookie, 10 + gen, 20 + gen, payload(gen, n))
        images.append([name, gen, n, key, off, cookie])
    key, off = b2.add(0, 0x44444444, 14, 24, payload(4, 2048))
    images.append(["D", 4, 2048, key, off, 0x44444444])
    # Delete B: tombstone in block 2, deleted bit set in place in block 1.
    kb, ob = images[1][3], images[1][4]
    b2.add(TOMBSTONE, 0x22222222, 0, 0, struct.pack("<IIQ", 1, 0, ob), key=kb)
    at = ob - 64 + 4
    b1.buf[at:at + 4] = struct.pack("<I", struct.unpack("<I", b1.buf[at:at + 4])[0] | DELETED)
    key, off = b2.add(0, 0x55555555, 15, 25, payload(5, 500))
    images.append(["E", 5, 500, key, off, 0x55555555])
    # The index of block 1 was written at seal time, before the delete.
    b1.entries = [(e[0], e[1], e[2], e[3], e[4] & ~DELETED, e[5]) for e in b1.entries]

    write_store(os.path.join(out, "store-v1"), [b1, b2], {1})

    tb2 = Block(2)
    tb2.buf = bytearray(b2.buf[: images[4][4] + 100])  # E cut after 100 of 500 bytes
    write_store(os.path.join(out, "store-v1-truncated"), [b1, tb2], {1})

    cb1 = Block(1)
    cb1.buf = bytearray(b1.buf)
    cb1.entries = b1.entries
    cb1.buf[images[2][4] + 10] ^= 0x40  # a stored byte of C
    write_store(os.path.join(out, "store-v1-corrupt"), [cb1, b2], {1})

    write_store(os.path.join(out, "store-v1-badidx"), [b1, b2], {1})
    with open(os.path.join(out, "store-v1-badidx", "blocks", "block_00000001.idx"), "wb") as f:
        f.write(b"FBINDEX\0" + bytes(range(200)))

    states = {"store-v1": {"B": "deleted"},
              "store-v1-truncated": {"B": "deleted", "E": "missing"},
              "store-v1-corrupt": {"B": "deleted", "C": "corrupt"},
              "store-v1-badidx": {"B": "deleted"}}
    with open(os.path.join(out, "golden-v1.tsv"), "w") as f:
        f.write("# store\tname\tid\tblock\toffset\tsize\tgen\twidth\theight\tstate\n")
        for store, st in states.items():
            for name, gen, n, key, off, cookie in images:
                f.write("%s\t%s\t%016x%08x\tblock_%08d.fbk\t%d\t%d\t%d\t%d\t%d\t%s\n" % (
                    store, name, key, cookie, key >> 40, off, n, gen, 10 + gen, 20 + gen,
                    st.get(name, "live")))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
