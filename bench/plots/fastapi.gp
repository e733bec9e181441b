# FastAPI: GET requests per second of the original app and the FastBlocks variants.
load plotdir."/common.gp"
set output outdir."/fastapi.png"
set title "FastAPI GET, uvicorn with one worker, wrk (median, bars: min-max)"
set style data histogram
set style histogram errorbars gap 1 lw 1
set logscale y
set yrange [1:*]
set ylabel "requests/s (log scale)"
unset key
plot "fastapi.dat" using 2:3:4:xtic(1) lc rgb "#ee7733"
