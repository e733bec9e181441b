#!/usr/bin/env bash
# Makes the small test images of tests/unit/test_image.c from two real
# photos of the test corpus (python3-skimage's rocket.jpg, ImageMagick's
# bluebells_clipped.jpg). The outputs are checked in; re-run only to change
# them, then re-run the image tests.
#
#   usage: tests/data/images/make-images.sh [CORPUS_DIR]   (default $FB_CORPUS_DIR or /tmp/fbc-small)
#
# Needs vips (libvips-tools), exiftool (libimage-exiftool-perl) and Pillow for
# /usr/bin/python3 (python3-pil).
set -euo pipefail
corpus=${1:-${FB_CORPUS_DIR:-/tmp/fbc-small}}
out=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export VIPS_WARNING=0
rocket=$corpus/all/jpeg/python3__rocket.jpg
bluebells=$corpus/all/jpeg/imagemagick__bluebells_clipped.jpg
cd "$tmp"

# The upright reference photo, 192x128, and its eight EXIF-tagged copies:
# orient-K.jpg stores the pixels so that applying orientation K shows the
# reference again (the inverse of each EXIF transform), tagged K by exiftool.
vips thumbnail "$rocket" up.v 192 --height 128 --size force
vips jpegsave up.v "$out/photo.jpg" --Q 95 --strip
vips copy up.v s1.v
vips flip up.v s2.v horizontal
vips rot up.v s3.v d180
vips flip up.v s4.v vertical
vips rot up.v r90.v d90
vips flip r90.v s5.v horizontal # transpose
vips rot up.v s6.v d270
vips flip r90.v s7.v vertical # transverse
vips rot up.v s8.v d90
for k in 1 2 3 4 5 6 7 8; do
    vips jpegsave s$k.v "$out/orient-$k.jpg" --Q 95 --strip
    exiftool -q -overwrite_original -n -Orientation=$k "$out/orient-$k.jpg"
done

# EXIF with a GPS position and XMP with a creator: all of it must go by default.
cp "$out/photo.jpg" "$out/gps.jpg"
exiftool -q -overwrite_original -GPSLatitude=48.858370 -GPSLatitudeRef=N \
    -GPSLongitude=2.294481 -GPSLongitudeRef=E -Make=FastBlocksTestCam \
    -XMP-dc:Creator=FastBlocksTestCreator "$out/gps.jpg"

# Colour: the same bluebells in sRGB, in Display P3 (profile embedded), and
# in CMYK without a profile (libvips' CMYK profile is ~1 MB, too big to check
# in; an embedded profile takes the same path as P3).
vips thumbnail "$bluebells" bb.v 192 --height 144 --size force
vips jpegsave bb.v "$out/colour-srgb.jpg" --Q 95 --strip
vips icc_transform bb.v p3.v p3 --input-profile srgb
vips jpegsave p3.v "$out/colour-p3.jpg" --Q 95
vips icc_transform bb.v cmyk.v cmyk --input-profile srgb
vips jpegsave cmyk.v "$out/colour-cmyk-noprofile.jpg" --Q 95 --strip

# A chart of saturated patches, where sRGB and P3 numbers differ most:
# sRGB as is, and converted to P3 with the profile embedded (PNG, lossless).
/usr/bin/python3 - chart.png <<'PY'
import sys
from PIL import Image, ImageDraw
colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
           (255, 128, 0), (128, 0, 255), (40, 160, 60), (200, 40, 90), (128, 128, 128), (250, 220, 180)]
im = Image.new("RGB", (96, 64))
d = ImageDraw.Draw(im)
for i, c in enumerate(colours):
    x, y = (i % 6) * 16, (i // 6) * 32
    d.rectangle([x, y, x + 15, y + 31], fill=c)
im.save(sys.argv[1])
PY
vips pngsave chart.png "$out/chart-srgb.png" --strip
vips icc_transform chart.png chart-p3.v p3 --input-profile srgb
vips pngsave chart-p3.v "$out/chart-p3.png"

# Bit depths, grey, alpha, palette, other containers (all from the photo).
vips pngsave up.v "$out/photo.png" --strip
vips colourspace up.v rgb16.v rgb16
vips pngsave rgb16.v "$out/rgb16.png" --strip
vips colourspace up.v grey.v b-w
vips pngsave grey.v "$out/grey.png" --strip
vips colourspace up.v grey16.v grey16
vips pngsave grey16.v "$out/grey16.png" --strip
vips jpegsave up.v "$out/progressive.jpg" --Q 90 --interlace --strip
vips tiffsave up.v "$out/photo.tif" --compression deflate --strip
vips heifsave up.v "$out/photo.heic" --compression hevc --Q 60 --strip
vips heifsave up.v "$out/photo.avif" --compression av1 --Q 60 --strip
/usr/bin/python3 - "$out" <<'PY'
import sys
from PIL import Image
out = sys.argv[1]
up = Image.open(out + "/photo.jpg").convert("RGB")
w, h = up.size
# Alpha: transparent left edge fading to an opaque right edge.
a = Image.linear_gradient("L").rotate(90).resize((w, h))
rgba = up.copy(); rgba.putalpha(a)
rgba.save(out + "/alpha.png")
up.quantize(64).save(out + "/palette.png")
up.save(out + "/photo.bmp")
# Animated GIF: three crops, delays 100/250/400 ms, played 3 times.
frames = [up.crop((i * 40, 0, i * 40 + 96, 64)) for i in range(3)]
frames[0].save(out + "/anim.gif", save_all=True, append_images=frames[1:],
               duration=[100, 250, 400], loop=3)
# Animated WebP: two frames, 120/80 ms, looping forever.
frames[0].save(out + "/anim.webp", save_all=True, append_images=frames[1:2],
               duration=[120, 80], loop=0, quality=80, method=4)
# A still WebP carrying EXIF: passthrough must drop the EXIF chunk.
ex = Image.Exif(); ex[0x010F] = "FastBlocksTestCam"
up.save(out + "/exif.webp", quality=80, method=4, exif=ex.tobytes())
up.save(out + "/clean.webp", quality=80, method=4)
PY
ls -l "$out"
