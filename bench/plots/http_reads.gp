# HTTP reads: requests per second by server and scenario (higher is better, log scale).
load plotdir."/common.gp"
set output outdir."/http_reads.png"
set title "HTTP GET throughput, wrk on 127.0.0.1 (median, bars: min-max of the runs)"
set style data histogram
set style histogram errorbars gap 1 lw 1
set logscale y
set yrange [1:*]
set ylabel "requests/s (log scale, higher is better)"
set xtics rotate by -35 scale 0
set bmargin 10
set rmargin 10
unset key
plot "http_reads.dat" using 2:3:4:xtic(1) lc rgb "#4477aa"
