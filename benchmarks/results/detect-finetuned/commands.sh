# 2026-12-07: what `detect --features-from init` buys REM on the fine-tuned profile at 10 % discovery
# (docs/detection.md, "A fine-tuned model"). This folder started as a copy of the fine-tuned sweep's sweep.json and
# models (runs/sweep-finetuned3, the same nine models as benchmarks/results/sweep-finetuned) and its rem cells at 0.1,
# the paired baseline; code at 87d8991 (landed in e59f0ee), one single-thread worker beside two others. Detection keeps the top K - identified
# (27; 30 for --confused, which starts from no identified sample): the true count, the same in both arms.
S="--data imagefolder:$HOME/.cache/remcli/cifar10-1500 --arch resnet9 --width 0.5 --count 30 --train-epochs 40 --train-batch-size 128 --train-lr 0.005 --init benchmarks/results/finetuned/pretrained.safetensors --seeds 0,1,2 --device cpu --discovery 0.1"
remcli sweep $S --kinds interclass --methods confused-detect+rem@top,confused-detect+rem@init \
  --set confused-detect+rem@top.epochs=10 --set confused-detect+rem@top.batch_size=128 --set confused-detect+rem@init.epochs=10 --set confused-detect+rem@init.batch_size=128 \
  --set confused-detect+rem@top.detect_top=30 --set confused-detect+rem@init.detect_top=30 --set confused-detect+rem@init.detect_features=init --out OUT
remcli sweep $S --kinds poison,interclass,label-noise --methods detect+rem@top,detect+rem@init \
  --set detect+rem@top.epochs=10 --set detect+rem@top.batch_size=128 --set detect+rem@init.epochs=10 --set detect+rem@init.batch_size=128 \
  --set detect+rem@top.detect_top=27 --set detect+rem@init.detect_top=27 --set detect+rem@init.detect_features=init \
  --set detect+rem@top.detect_signal=auto --set detect+rem@init.detect_signal=auto --out OUT
