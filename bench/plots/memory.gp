# Memory: resident set of each server after uploads and reads of the same images.
load plotdir."/common.gp"
set output outdir."/memory.png"
set title "Server memory after uploading and reading the same images (RSS, median; peak)"
set style data histogram
set style histogram errorbars gap 2 lw 1
set ylabel "MB"
set yrange [0:*]
set key top left
plot "memory.dat" using 2:3:4:xtic(1) title "RSS after reads", \
     "" using 5:5:5 title "peak RSS"
