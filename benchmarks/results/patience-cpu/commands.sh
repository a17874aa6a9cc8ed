# 2026-12-07: does patience=3 save REM's compute without losing healing? Report-only, stated before the run in the commit
# "REM's patience counts from the iterate the keep rule last kept". On the memorising profile's committed nine models
# (benchmarks/results/sweep-cpu/models; the folder was a copy of benchmarks/results/sweep-cpu, models included), rem at
# today's defaults (as rem@fp32) and with patience=3 (rem@pat3), both in fp32 (precision auto on a 2-core AMD EPYC with
# AVX2 only), two single-thread workers, nothing else running; only the new cells are kept here:
remcli sweep --data imagefolder:$HOME/.cache/remcli/cifar10-1500 --arch resnet9 --width 0.5 --count 30 --train-epochs 60 --train-batch-size 128 --kinds interclass,poison,label-noise --discovery 1.0,0.1 --seeds 0,1,2 --methods rem@fp32,rem@pat3 --set rem@fp32.batch_size=128 --set rem@fp32.epochs=15 --set rem@pat3.batch_size=128 --set rem@pat3.epochs=15 --set rem@pat3.patience=3 --device cpu --out runs/pat --workers 2
# table: python benchmarks/rem_ablation.py benchmarks/results/patience-cpu --base rem@fp32 --variants rem@pat3 --rates 0.1,1.0
# the committed bf16 rem cells of the same 18 (from benchmarks/results/sweep-cpu, AVX512-BF16 CPU) are copied beside them: python benchmarks/rem_ablation.py benchmarks/results/patience-cpu --base rem --variants rem@fp32,rem@pat3 --rates 0.1,1.0
