#!/usr/bin/python3
"""Writes the hostile inputs of tests/unit/test_image.c into this folder.

Every file is small and built here byte by byte (or cut or patched from the
test images in ../images), together with EXPECTED.tsv: file name, the error
code fb_convert must return (OK for the few that are harmless and must
convert), and why. Decompression bombs declare huge sizes
in their headers but carry almost no data: they must be rejected from the
header, before any pixel is allocated.

    /usr/bin/python3 tests/data/hostile/make-hostile.py

Needs Pillow (Debian's python3-pil). Deterministic: re-running gives the
same bytes.
"""
import io
import os
import random
import struct
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "..", "images")
expected = []


def write(name, data, code, why):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    expected.append((name, code, why))


def image_bytes(name):
    with open(os.path.join(IMAGES, name), "rb") as f:
        return f.read()


def png_chunk(kind, payload):
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png(width, height, rows_bytes, bad_ihdr_crc=False):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = png_chunk(b"IHDR", ihdr)
    if bad_ihdr_crc:
        chunk = chunk[:-1] + bytes([chunk[-1] ^ 0xFF])
    return (b"\x89PNG\r\n\x1a\n" + chunk + png_chunk(b"IDAT", zlib.compress(rows_bytes))
            + png_chunk(b"IEND", b""))


# ---- decompression bombs and oversized headers -> ELIMIT --------------------
write("bomb-png-100000x100000.png", png(100000, 100000, b"\0" * 301),
      "ELIMIT", "PNG header declares 100000x100000 (10 GP) with 300 bytes of data")


def tiny_jpeg():
    b = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(b, "JPEG", quality=90)
    return bytearray(b.getvalue())


def patch_sof(jpeg, width, height):
    i = 2
    while i + 9 < len(jpeg):
        marker, seglen = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            jpeg[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(jpeg)
        i += 2 + seglen
    raise SystemExit("no SOF marker")


write("bomb-jpeg-65000x65000.jpg", patch_sof(tiny_jpeg(), 65000, 65000),
      "ELIMIT", "JPEG SOF declares 65000x65000 (4.2 GP); the scan holds 8x8 pixels")
write("bomb-jpeg-16384x1.jpg", patch_sof(tiny_jpeg(), 16384, 1),
      "ELIMIT", "one side over WebP's 16383 although the pixel count is small")


def gif(width, height, frames, loop=True, delay=True, frame_size=(1, 1)):
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0))
    out += b"\x00\x00\x00\xff\xff\xff"  # 2-colour global table
    if loop:
        out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for i in range(frames):
        if delay:
            out += b"\x21\xf9\x04\x04\x02\x00\x00\x00"  # 20 ms, no transparency
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, frame_size[0], frame_size[1], 0)
        out += b"\x02\x02" + (b"\x4c\x01" if i % 2 else b"\x44\x01") + b"\x00"
    out += b"\x3b"
    return bytes(out)


write("bomb-gif-10000-frames.gif", gif(1, 1, 10000, delay=False),
      "ELIMIT", "10,000 frames of 1x1 (more than the 1000-frame limit)")
write("gif-screen-65535x65535.gif", gif(65535, 65535, 1),
      "OK", "a screen of 65535x65535 with one 1x1 frame: libnsgif sizes the canvas from "
      "the frames, so the declared screen allocates nothing; converts to 1x1")
write("bomb-gif-frame-65535x65535.gif", gif(65535, 65535, 1, frame_size=(65535, 65535)),
      "ELIMIT", "one frame declaring 65535x65535 with 2 bytes of LZW data")


def tiff(width, height, strip=b"\0" * 16):
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, len(strip))]
    ifd_off = 8
    data_off = ifd_off + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_off) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_off
        if typ == 3:
            out += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, typ, count, value)
    out += struct.pack("<I", 0) + strip
    return bytes(out)


write("bomb-tiff-100000x100000.tif", tiff(100000, 100000),
      "ELIMIT", "TIFF IFD declares 100000x100000 grey with a 16-byte strip")


def bmp(width, height, pixels=b"\0" * 64):
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    head = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return head + info + pixels


write("bomb-bmp-50000x50000.bmp", bmp(50000, 50000),
      "ELIMIT", "BMP header declares 50000x50000 with 64 bytes of pixels")
write("bomb-bmp-topdown-30000x-30000.bmp", bmp(30000, -30000),
      "ELIMIT", "top-down BMP (negative height) declaring 900 MP")


def webp_lossless_1x1():
    b = io.BytesIO()
    Image.new("RGB", (1, 1), (10, 20, 30)).save(b, "WEBP", lossless=True)
    return bytearray(b.getvalue())


def patch_vp8l(webp, width, height):
    i = webp.find(b"VP8L")
    bits = (width - 1) | (height - 1) << 14 | (webp[i + 12] & 0xF0) << 24
    webp[i + 9:i + 13] = struct.pack("<I", bits)
    return bytes(webp)


write("bomb-webp-16383x16383.webp", patch_vp8l(webp_lossless_1x1(), 16383, 16383),
      "ELIMIT", "VP8L header declares 16383x16383 (268 MP); the data is one pixel")


def anim_webp(frames):
    imgs = [Image.new("RGB", (2, 2), (255 * (i % 2), 0, 0)) for i in range(frames)]
    b = io.BytesIO()
    imgs[0].save(b, "WEBP", save_all=True, append_images=imgs[1:], duration=10, lossless=True,
                 minimize_size=False, allow_mixed=False)
    return b.getvalue()


write("bomb-webp-1500-frames.webp", anim_webp(1500),
      "ELIMIT", "animated WebP with 1500 frames (more than 1000)")

# ---- corrupt and truncated data -> EIMAGE -----------------------------------
photo = image_bytes("photo.jpg")
write("jpeg-truncated-half.jpg", photo[: len(photo) // 2],
      "EIMAGE", "baseline JPEG cut in the middle of the scan")
write("jpeg-header-only.jpg", photo[:600],
      "EIMAGE", "JPEG cut inside its headers")
write("jpeg-soi-only.jpg", b"\xff\xd8\xff", "EIMAGE", "just the start-of-image marker")
garbled = bytearray(photo)
rng = random.Random(4)
start = len(photo) // 3
for k in range(start, start + 400):
    garbled[k] = rng.randrange(256)
write("jpeg-garbled-scan.jpg", bytes(garbled), "EIMAGE", "400 random bytes inside the scan")

small_png = png(16, 16, b"".join(b"\0" + bytes(range(48)) for _ in range(16)))
write("png-truncated.png", small_png[: len(small_png) - 30],
      "EIMAGE", "PNG cut inside IDAT (no IEND)")
write("png-bad-ihdr-crc.png", png(16, 16, b"\0" * 49 * 16, bad_ihdr_crc=True),
      "EIMAGE", "IHDR checksum wrong")
write("png-zero-width.png", png(0, 16, b"\0" * 16), "EIMAGE", "IHDR width 0")
write("png-short-data.png", png(64, 64, b"\0" * 10),
      "EIMAGE", "IDAT holds 10 bytes for 64 rows")

anim = image_bytes("anim.gif")
write("gif-truncated.gif", anim[: len(anim) // 2], "EIMAGE", "animated GIF cut mid-frame")
write("gif-header-only.gif", gif(1, 1, 0)[:-1], "EIMAGE", "GIF header with no frame")
lzw = bytearray(gif(4, 4, 1, loop=False))
lzw[-4:-1] = b"\xff\xff\xff"
write("gif-bad-lzw.gif", bytes(lzw), "EIMAGE", "LZW codes out of range")

clean = image_bytes("clean.webp")
write("webp-truncated.webp", clean[: len(clean) // 2], "EIMAGE", "lossy WebP cut in half")
write("webp-riff-only.webp", b"RIFF\x04\x00\x00\x00WEBP", "EIMAGE", "RIFF header, no chunk")
lying = bytearray(clean)
lying[4:8] = struct.pack("<I", 0x7FFFFFF0)
write("webp-riff-size-lies.webp", bytes(lying), "EIMAGE", "RIFF size larger than the file")

tif = image_bytes("photo.tif")
write("tiff-truncated.tif", tif[: len(tif) // 2], "EIMAGE", "deflate TIFF cut in half")
write("tiff-ifd-out-of-file.tif", b"II*\0" + struct.pack("<I", 0x10000000),
      "EIMAGE", "first IFD offset points past the end")

bmpdata = image_bytes("photo.bmp")
write("bmp-truncated.bmp", bmpdata[:2000], "EIMAGE", "24-bit BMP cut after a few rows")
write("bmp-zero-height.bmp", bmp(16, 0), "EIMAGE", "BMP height 0")

write("heif-ftyp-only.heic", struct.pack(">I", 24) + b"ftypheic\0\0\0\0mif1heic",
      "EIMAGE", "HEIF file type box and nothing else")
avif = image_bytes("photo.avif")
write("avif-truncated.avif", avif[: len(avif) // 2], "EIMAGE", "AVIF cut in half")

# ---- not an image we take -> EUNSUPPORTED -----------------------------------
write("empty.bin", b"", "EUNSUPPORTED", "zero bytes")
write("one-byte.bin", b"\xff", "EUNSUPPORTED", "one byte")
write("random-4k.bin", bytes(random.Random(1).randrange(256) for _ in range(4096)),
      "EUNSUPPORTED", "random bytes")
write("riff-wave.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 28,
      "EUNSUPPORTED", "a RIFF file that is not WebP")
write("svg.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
      "EUNSUPPORTED", "SVG is not taken (libvips marks its loader untrusted)")
write("pdf.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "EUNSUPPORTED", "PDF is not taken")
write("ppm.ppm", b"P6\n1 1\n255\n\0\0\0", "EUNSUPPORTED", "PPM is not on the list")
write("bm-unknown-dib.bmp", b"BM" + b"\0" * 12 + struct.pack("<I", 7) + b"\0" * 40,
      "EUNSUPPORTED", "'BM' with a DIB header size no BMP version has")

with open(os.path.join(HERE, "EXPECTED.tsv"), "w") as f:
    f.write("# file\texpected error\twhy (written by make-hostile.py)\n")
    for name, code, why in expected:
        f.write(f"{name}\t{code}\t{why}\n")
print(f"wrote {len(expected)} files")
