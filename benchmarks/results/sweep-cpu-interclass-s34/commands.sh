# Issue 24: interclass seeds 3 and 4 for rem and rem-full at 70 and 100 % discovery (the two cells where
# rem fell most on seeds 0-2), the memorising profile's recipe (benchmarks/sweep_cpu.sh), run on
# commit 9045f83 with OMP_NUM_THREADS=1 beside other jobs. Rate 0.1 (both methods) and 0.3 (rem) of
# seed 3 also finished before the run was narrowed to 0.7 and 1.0 for time.
remcli sweep --data imagefolder:$HOME/.cache/remcli/cifar10-1500 --arch resnet9 --width 0.5 --count 30 --train-epochs 60 --train-batch-size 128 --kinds interclass --discovery 1.0,0.7 --seeds 3,4 --methods rem,rem-full --set rem.batch_size=128 --set rem-full.batch_size=128 --set rem.epochs=15 --set rem-full.epochs=15 --device cpu --out runs/sweep-cpu-s34
# 2026-12-06 (session 12): rem's default became keep=latest-tied; these rem cells ran with keep=best and are now rem@best
