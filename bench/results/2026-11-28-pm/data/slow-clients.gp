set terminal pngcairo size 900,560 font 'sans,10'
set output 'slow-clients.png'
set grid
set key outside right top
set multiplot layout 1,2 title 'slow clients + 50 normal clients'
set style data histograms
set style fill solid 0.7 border -1
set boxwidth 0.8
unset key
set yrange [0:*]
set title 'normal clients p99 (ms; missing = none served)'
plot 'data/slow-clients.dat' using 2:xtic(1) lc rgb '#3070b0'
set title 'proxy RSS max (MiB)'
plot 'data/slow-clients.dat' using 3:xtic(1) lc rgb '#b05030'
unset multiplot
