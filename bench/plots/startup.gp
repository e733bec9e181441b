# Start-up: time of fb_open against the number of records in the store.
load plotdir."/common.gp"
set output outdir."/startup.png"
set title "Store open time against store size (median, bars: min-max)"
set logscale xy
set xlabel "records in the store"
set ylabel "seconds (log scale)"
set format x "%.0s%c"
set offsets graph 0.04, graph 0.04, 0, 0
unset key
plot "startup.dat" using 1:2:3:4 with yerrorlines lw 2 pt 7 lc rgb "#aa3377"
