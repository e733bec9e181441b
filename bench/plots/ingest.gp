# Ingest: milliseconds per image of FastBlocks, cwebp and the original (lower is better).
load plotdir."/common.gp"
set output outdir."/ingest.png"
set title "Conversion to WebP, one image at a time: ms per image (median, bars: min-max of the runs)"
set style data histogram
set style histogram errorbars gap 2 lw 1
set ylabel "ms per image (lower is better)"
set yrange [0:*]
set key top left
plot "ingest.dat" using 2:3:4:xtic(1) title "FastBlocks", \
     "" using 5:6:7 title "cwebp -q 80 -m 4", \
     "" using 8:9:10 title "original (Pillow), plain config"
