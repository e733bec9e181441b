# Cache: miss ratio of S3-FIFO and LRU against cache size, one pair per trace.
load plotdir."/common.gp"
set output outdir."/cache.png"
set title "Cache miss ratio against cache size (lower is better)"
set logscale x
set xlabel "cache size, % of the bytes of all objects (log scale)"
set ylabel "miss ratio"
set yrange [0:1]
set key outside right
# Same colour per trace; LRU (even columns) dashed, S3-FIFO (odd) solid.
plot for [c=2:*:2] "cache.dat" using 1:c with linespoints lw 2 pt 6 dashtype 2 \
         linecolor (c / 2) title columnhead(c), \
     for [c=3:*:2] "cache.dat" using 1:c with linespoints lw 2 pt 7 dashtype 1 \
         linecolor ((c - 1) / 2) title columnhead(c)
