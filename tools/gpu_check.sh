#!/usr/bin/env bash
# CUDA check (< 5 min on one H100/H200): the card, the CUDA-relevant tests, then bench_speed.py at
# paper size (random-init ViT-L/14 at 224 px + BERT-base-shaped text encoder at 512 tokens,
# d=768 head with 32+32 queries and 6 blocks; encoders in bfloat16, head under bf16 autocast).
#   bash tools/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('card:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"

# cache == uncached on CUDA (build on the GPU, fp16 store), plus the CPU cache/arch suites (fast)
timeout 150 python -m pytest -q -x tests/test_feature_cache.py tests/test_mmlq_arch.py -k "not torchrun"

# the demo dataset is built on first use; loader workers and pinned memory as a GPU run would use them
timeout 270 python iaa_bench/bench_speed.py --paper-size --batches 5 \
    --force_yml datasets:train:num_worker_per_gpu=8 datasets:train:pin_memory=true
