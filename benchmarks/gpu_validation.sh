#!/usr/bin/env bash
# One pass over the GPU paths after a change of the library's layout: the official fixtures on
# the GPU, the training job (compiled, CUDA graphs, resume), the evaluation (FID from cached
# real features) and the batched projector against one image at a time.
#   bash benchmarks/gpu_validation.sh FIXTURES_DIR OUT_DIR
set -uo pipefail
fixtures=${1:?folder holding stylegan2_ref/}
out=${2:-.}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
quiet() { grep --line-buffered -v -i -E "warn|deprecat"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torchvision, torch; torch.save(torchvision.models.vgg16().state_dict(), '/tmp/vgg16.pth')"
timeout 150 python3 benchmarks/gpu_checks.py "$fixtures/stylegan2_ref" 2>&1 | quiet | tee "$out/gpu_checks.log"
timeout 200 python3 benchmarks/gpu_training_check.py --faces 256 --steps 40 2>&1 | quiet | tee "$out/training.log"
timeout 150 python3 benchmarks/evaluation_benchmark.py --pairs 200 --real 2048 --faces 256 2>&1 | quiet | tee "$out/evaluation.log"
timeout 150 python3 benchmarks/projection_benchmark.py --random --batches 1 32 128 --steps 1000 --measure-steps 20 \
    --loss lpips --vgg16 /tmp/vgg16.pth 2>&1 | quiet | tee "$out/projection.log"
