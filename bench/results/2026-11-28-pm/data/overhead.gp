set terminal pngcairo size 900,560 font 'sans,10'
set output 'overhead.png'
set grid
set key outside right top
set multiplot layout 1,2 title 'overhead: origin 0 ms, 1 KiB, 50 connections'
set style data histograms
set style fill solid 0.7 border -1
set boxwidth 0.8
set xtics rotate by -35
unset key
set title 'requests/s (higher is better)'
set yrange [0:*]
plot 'data/overhead.dat' using 2:xtic(1) lc rgb '#3070b0'
set title 'proxy CPU µs per request (lower is better)'
plot 'data/overhead.dat' using 3:xtic(1) lc rgb '#b05030'
unset multiplot
