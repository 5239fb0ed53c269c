set terminal pngcairo size 900,560 font 'sans,10'
set output 'littles.png'
set grid
set key outside right top
set title "Little's law: measured / ideal (connections / delay)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.7 border -1
set xtics rotate by -35
set yrange [0:1.1]
plot 'data/littles.dat' using 2:xtic(1) title 'io-bound', 'data/littles.dat' using 3:xtic(1) title 'c10k'
