set terminal pngcairo size 900,560 font 'sans,10'
set output 'idle-fds.png'
set grid
set key outside right top
set terminal pngcairo size 1100,520 font 'sans,10'
set output 'idle-fds.png'
set multiplot layout 1,2 title '50 active clients while K keep-alive connections sit idle'
set key inside top left
set xlabel 'idle keep-alive connections'
set yrange [0:*]
set title 'p99 of the active clients (ms)'
plot 'data/idle-switchboard.dat' using 1:2 with linespoints lw 2 title 'switchboard', 'data/idle-switchboard-poll.dat' using 1:2 with linespoints lw 2 title 'switchboard-poll', 'data/idle-switchboard-select.dat' using 1:2 with linespoints lw 2 title 'switchboard-select (3 points not shown: not held or crashed)'
set title 'requests/s of the active clients'
plot 'data/idle-switchboard.dat' using 1:3 with linespoints lw 2 title 'switchboard', 'data/idle-switchboard-poll.dat' using 1:3 with linespoints lw 2 title 'switchboard-poll', 'data/idle-switchboard-select.dat' using 1:3 with linespoints lw 2 title 'switchboard-select (3 points not shown: not held or crashed)'
unset multiplot
