#!/usr/bin/env bash
# JAX benchmark on one GPU: our Inception-ResNet-v2 (plain and with BatchNorm
# folded) and Inception-v4 against keras.applications.InceptionResNetV2, bf16,
# 299x299, batch 256 for inference and 128 for training (+ keras.RematScope).
#
# Run from the repository root. Where Keras is not installed (a JAX-only GPU
# machine), put the wheels of keras, namex and optree in .whl/ first.
# Results: $OUT/gpu_*.json and $OUT/RESULTS_gpu.md (append the latter to
# benchmarks/RESULTS.md). Sizes can be shrunk to try the script on a CPU:
#   SIZE=75 INF_BATCH=2 TRAIN_BATCH=2 ROUNDS=1 STEPS=1 bash benchmarks/gpu_jax.sh
set -euo pipefail
OUT=${OUT:-/tmp/gpu_jax_out}
SIZE=${SIZE:-299}
INF_BATCH=${INF_BATCH:-256}
TRAIN_BATCH=${TRAIN_BATCH:-128}
ROUNDS=${ROUNDS:-5}
STEPS=${STEPS:-5}
MODELS=${MODELS:-"inception_resnet_v2 inception_v4"}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import keras" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null || true
common=(--models $MODELS --image-size "$SIZE" --policies mixed_bfloat16 --rounds "$ROUNDS"
        --steps "$STEPS" --results "$OUT/RESULTS_gpu.md")
# Inference first: its results come back even if training runs out of time.
python3 benchmarks/throughput.py "${common[@]}" --modes inference --batch-sizes "$INF_BATCH" \
  --fold-bn --bound 30000 --json "$OUT/gpu_inference.json" \
  --title "GPU, JAX, inference, bf16, ${SIZE}x${SIZE}, batch ${INF_BATCH}"
python3 benchmarks/throughput.py "${common[@]}" --modes training --batch-sizes "$TRAIN_BATCH" \
  --remat --json "$OUT/gpu_training.json" \
  --title "GPU, JAX, training, bf16, ${SIZE}x${SIZE}, batch ${TRAIN_BATCH}"
