# Durability modes: 60 KiB puts per second against raw pwrite(+fdatasync).
load plotdir."/common.gp"
set output outdir."/durability.png"
set title "Puts of 60 KiB by durability mode and writer threads (median, bars: min-max)"
set style data histogram
set style histogram errorbars gap 1 lw 1
set logscale y
set yrange [10:*]
set ylabel "puts/s (log scale)"
set xtics rotate by -25 scale 0
set bmargin 6
unset key
plot "durability.dat" using 2:3:4:xtic(1) lc rgb "#228833"
