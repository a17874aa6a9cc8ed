# Issue 24: interclass seeds 3 and 4 for rem and rem-full at 70 and 100 % discovery (the two cells where
# rem fell most on seeds 0-2), the memorising profile's recipe (benchmarks/sweep_cpu.sh), run on
# commit 9045f83 with OMP_NUM_THREADS=1 beside other jobs. Rate 0.1 (both methods) and 0.3 (rem) of
# seed 3 also finished before the run was narrowed to 0.7 and 1.0 for time.
remcli sweep --data imagefolder:$HOME/.cache/remcli/cifar10-1500 --arch resnet9 --width 0.5 --count 30 --train-epochs 60 --train-batch-size 128 --kinds interclass --discovery 1.0,0.7 --seeds 3,4 --methods rem,rem-full --set rem.batch_size=128 --set rem-full.batch_size=128 --set rem.epochs=15 --set rem-full.epochs=15 --device cpu --out runs/sweep-cpu-s34
# 2026-12-06 (4d84673): rem's default became keep=latest-tied; these rem cells ran with keep=best and are now rem@best
# 2026-12-06 (e59f0ee): rem's default became repair_fraction=0.35, bn_recalibration=256, diagnostic_samples=64
# (docs/rem.md, "Healing"). The cells run as rem@c2 (those settings; code 67d8176, landed in e59f0ee) are now named rem; the earlier
# rem cells (repair_fraction 0.4, bn_recalibration 512, diagnostic_samples 256, the defaults then) are rem@frac0.4, and
# rem@c1 (bn_recalibration 256, diagnostic_samples 64, repair_fraction 0.4) is rem@recal256; the renamed cells record
# those settings in their overrides. Cells of other REM variants that ran before this commit ran with the old three
# defaults unless their overrides say otherwise. The runs (memorising; the fine-tuned folder ran the first line
# with --train-epochs 40 --train-lr 0.005 --init benchmarks/results/finetuned/pretrained.safetensors and rem@c2.epochs=10):
remcli sweep --data imagefolder:$HOME/.cache/remcli/cifar10-1500 --arch resnet9 --width 0.5 --count 30 --train-epochs 60 --train-batch-size 128 --kinds interclass,poison,label-noise --discovery 1.0,0.7,0.5,0.3,0.1 --seeds 0,1,2 --methods rem@c2 --set rem@c2.batch_size=128 --set rem@c2.epochs=15 --set rem@c2.diagnostic_samples=64 --set rem@c2.bn_recalibration=256 --set rem@c2.repair_fraction=0.35 --device cpu --out runs/q24 --workers 2
remcli sweep --data imagefolder:$HOME/.cache/remcli/cifar10-1500 --arch resnet9 --width 0.5 --count 30 --train-epochs 60 --train-batch-size 128 --kinds interclass,poison,label-noise --discovery 1.0,0.7,0.5,0.3,0.1 --seeds 0,1,2 --methods rem@c1 --set rem@c1.batch_size=128 --set rem@c1.epochs=15 --set rem@c1.diagnostic_samples=64 --set rem@c1.bn_recalibration=256 --device cpu --out runs/q24 --workers 2
# (seeds 3,4 with --kinds interclass --discovery 1.0,0.7, also rem itself, in benchmarks/results/sweep-cpu-interclass-s34)
# issue 27's loop with block-similarity (code c70fb07, landed in e59f0ee), poison at 10 %: --kinds poison --discovery 0.1 --methods query-detect+rem
