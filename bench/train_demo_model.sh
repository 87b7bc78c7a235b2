#!/usr/bin/env bash
# Trains the demo model (v5) on world v2 with the project's own jobs, phase by phase:
#   1. VAE from scratch (8 latent channels: the 4-channel f=4 VAE loses thin poles);
#   2. UNet + structure encoder with reference training from the start (crop and scene pairs);
#   3. the appearance-matching adapter (stage 2) on crop and scene pairs.
#
#   RUNS=~/runs/v5 bash bench/train_demo_model.sh          # CPU, 2 threads
#   RUNS=$OUT/v5 DEVICE=cuda bash bench/train_demo_model.sh  # a GPU, same commands
#   PHASES=vae LATENT_CHANNELS=4 RUNS=~/runs/vae4 bash bench/train_demo_model.sh  # one phase
#
# Every phase keeps its checkpoints in RUNS/<phase> and resumes from the latest one, so
# rerunning the script after an interruption continues where it stopped (a finished phase
# finds its last checkpoint and only saves its model again). Logs: RUNS/<phase>.log.
# The final model is RUNS/adapter/model (float16); compare it with the bundled one on val
# pairs (python -m bench.appearance --world-version 2) before it replaces it.
set -euo pipefail

RUNS=${RUNS:-$HOME/runs/v5}
PYTHON=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-2}
VAE_STEPS=${VAE_STEPS:-5000}
UNET_STEPS=${UNET_STEPS:-3500}
ADAPTER_STEPS=${ADAPTER_STEPS:-1500}
CHANNELS=${LATENT_CHANNELS:-8}
PHASES=${PHASES:-vae unet adapter}
mkdir -p "$RUNS"
export PYTHONUNBUFFERED=1  # the logs follow the steps as they happen

common=(--data world --world-version 2 --size 64x128 --device "$DEVICE" --threads "$THREADS"
        --log-every 20 --checkpoint-every 250)

phase() {  # phase NAME MODULE ARGS...: one training job, its log appended to RUNS/NAME.log
  local name=$1 module=$2
  shift 2
  [[ " $PHASES " == *" $name "* ]] || return 0
  echo "== $name: $module $* ($(date -u +%FT%TZ))" | tee -a "$RUNS/$name.log"
  "$PYTHON" -m "$module" "${common[@]}" "$@" --run-dir "$RUNS/$name" --output "$RUNS/$name/model" \
    2>&1 | tee -a "$RUNS/$name.log"
}

phase vae jobs.train_structure --model demo \
  --preset-overrides "{\"vae\": {\"latent_channels\": $CHANNELS}, \"unet\": {\"in_channels\": $CHANNELS, \"out_channels\": $CHANNELS}}" \
  --batch-size 8 --vae-steps "$VAE_STEPS" --vae-lr 2e-4 --vae-warmup-steps 50 --vae-schedule constant \
  --vae-crop 32x64 --vae-mse-weight 1.0 --steps 0

phase unet jobs.train_structure --model "$RUNS/vae/model" --world-pairs mixed --reference-prob 0.8 \
  --batch-size 4 --steps "$UNET_STEPS" --lr 3e-4 --warmup-steps 100 --schedule cosine

phase adapter jobs.train_adapter --model "$RUNS/unet/model" --world-pairs mixed \
  --batch-size 4 --steps "$ADAPTER_STEPS" --lr 3e-3 --warmup-steps 50 --schedule cosine --save-fp16
