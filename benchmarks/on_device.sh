#!/usr/bin/env bash
# The GPU engine's acceptance benchmark (issue #13) on a lent GPU machine, in one `run` call.
#
# Here, once:  ../shared/tools/device-dlc-wheels.sh download     (DeepLabCut 3's wheels into the ignored .whl/)
# Then:        run  command="bash benchmarks/on_device.sh"  carry=[".whl"]  timeout_s=<device seconds left - 60>
# Arguments after the script's name go to the benchmark and override its settings. `make device-dry-run`
# rehearses it on this machine's CPU, small, without the packages the GPU machine lacks.
#
# There (Python 3.12 with torch, no TensorFlow, no Airflow, no network) it installs DeepLabCut from .whl/, names
# the GPU, and runs benchmarks/training_throughput.py at 1920x1080 once per backbone (DeepLabCut 3's GroupNorm
# resnet_50 first: the default engine's numbers matter most), batch 8 then batch 1, DeepLabCut's train_network
# with 12 loader workers at batch 8 (0 workers there is issue #13's slowest setting and would cost minutes) and
# with 0 and 12 at batch 1, and at batch 1 a trial of the step compiled inside its CUDA graph (resnet_50 only: a
# study compiles resnet_50_bn's graphed step already); at each batch size the rows the ratios need come first,
# the step without its graph and the trial last. Each backbone
# gets an equal share of the time left (POSESWEEP_DEVICE_SECONDS, default 500), so a slow first one cannot eat
# the second's. Every measurement is written to $OUT the moment it is made
# (throughput-<backbone>.json, and the logs), so a call cut off by its limit still brings back what it measured;
# a failure of posesweep's own step ends the call at once, so a fix can follow in the same lease. The projects get
# enough frames for DeepLabCut's workers to see 2 batches an epoch (193 at batch 8): it restarts them every epoch,
# and fewer frames would measure their start-up. One backbone per call (POSESWEEP_DEVICE_BACKBONES=resnet_50) when
# the lease is 15 minutes: resnet_50 took 416 s on an H200 (benchmarks/results/2026-12-04-nvidia-h200/).
set -uo pipefail
: "${OUT:?set OUT to the folder for the results (the device machine sets it)}"
seconds=${POSESWEEP_DEVICE_SECONDS:-500}
deadline=$((SECONDS + seconds))

if python3 -c "import deeplabcut" > /dev/null 2>&1; then
  echo "DeepLabCut is installed already"
else
  # shellcheck source=/dev/null
  source .whl/device-dlc-wheels.sh install > "$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
  tail -1 "$OUT/install.log"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__,
                                      'cuda', torch.version.cuda)"
} | tee "$OUT/device.txt"

read -ra backbones <<< "${POSESWEEP_DEVICE_BACKBONES:-resnet_50 resnet_50_bn}"
status=0
for i in "${!backbones[@]}"; do
  backbone=${backbones[$i]}
  share=$(( (deadline - SECONDS) / (${#backbones[@]} - i) ))
  echo "== $backbone: $share s"
  timeout --signal=TERM --kill-after=10 "$share" python3 benchmarks/training_throughput.py \
      --width 1920 --height 1080 --batch-sizes 8 1 --backbones "$backbone" --workers 0 12 --workers-at 8=12 \
      --steps 60 --try-compiled-graph \
      --out "$OUT/throughput-$backbone.json" "$@" > "$OUT/throughput-$backbone.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    grep -E '^(  measured|  posesweep /|  \(|[a-z_0-9]+ \(|\(benchmark)' "$OUT/throughput-$backbone.log"
  else
    tail -25 "$OUT/throughput-$backbone.log"
    echo "== $backbone: exit $rc (124: out of its share of time; what it measured is in throughput-$backbone.json)"
    [ $rc -eq 124 ] || exit $rc  # posesweep's step failed: the next backbone would only spend the lease
    status=$rc
  fi
done
exit $status
