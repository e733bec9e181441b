# bench/plots/common.gp - the look shared by every plot (loaded by each
# script; bench/run-all calls each script with outdir set, in the results'
# plots/ directory, where summarize.py wrote the .dat files).
if (!exists("outdir")) outdir = "."
set terminal pngcairo size 1040,540 font ",10" noenhanced
set datafile columnheaders
set grid ytics lc rgb "#dddddd"
set style fill solid 0.75 border -1
set key noenhanced
