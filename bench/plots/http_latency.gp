# HTTP read latency percentiles by server and scenario (lower is better, log scale).
load plotdir."/common.gp"
set output outdir."/http_latency.png"
set title "HTTP GET latency under wrk load (median of the runs)"
set style data histogram
set style histogram clustered gap 1
set logscale y
set ylabel "ms (log scale, lower is better)"
set xtics rotate by -35 scale 0
set bmargin 10
set rmargin 10
set key top left
plot "http_latency.dat" using 2:xtic(1) title "p50", "" using 3 title "p99"
