set terminal pngcairo size 900,560 font 'sans,10'
set output 'sweep.png'
set grid
set key outside right top
set title 'Throughput against concurrency, origin 100 ms (the C10K picture)'
set logscale xy
set xlabel 'concurrent connections'
set ylabel 'requests/s'
set format y '%.0s%c'
plot 'data/sweep-direct.dat' using 1:2 with linespoints lw 2 title 'direct', 'data/sweep-switchboard.dat' using 1:2 with linespoints lw 2 title 'switchboard', 'data/sweep-switchboard-poll.dat' using 1:2 with linespoints lw 2 title 'switchboard-poll', 'data/sweep-switchboard-select.dat' using 1:2 with linespoints lw 2 title 'switchboard-select', 'data/sweep-nginx.dat' using 1:2 with linespoints lw 2 title 'nginx', 'data/sweep-haproxy.dat' using 1:2 with linespoints lw 2 title 'haproxy', 'data/sweep-thread-pool.dat' using 1:2 with linespoints lw 2 title 'thread-pool', 'data/sweep-blocking.dat' using 1:2 with linespoints lw 2 title 'blocking', 'data/sweep-ideal.dat' using 1:2 with lines dt 2 lc rgb 'gray' title 'ideal: c / 0.1 s'
