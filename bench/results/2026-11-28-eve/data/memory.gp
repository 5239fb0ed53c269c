set terminal pngcairo size 900,560 font 'sans,10'
set output 'memory.png'
set grid
set key outside right top
set title 'proxy RSS per connection held in flight'
set xlabel 'connections held'
set ylabel 'KiB per connection'
set yrange [0:*]
set arrow from graph 0, first 4 to graph 1, first 4 nohead dt 2 lc rgb 'red'
set label 'goal: 4 KiB' at graph 0.02, first 4.4 tc rgb 'red'
plot 'data/memory-switchboard.dat' using 1:2 with linespoints lw 2 title 'switchboard', 'data/memory-nginx.dat' using 1:2 with linespoints lw 2 title 'nginx', 'data/memory-haproxy.dat' using 1:2 with linespoints lw 2 title 'haproxy'
