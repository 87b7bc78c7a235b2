#!/usr/bin/env bash
# Trains the demo model (v5) on world v2 with the project's own jobs, phase by phase:
#   1. VAE from scratch (8 latent channels: the 4-channel f=4 VAE loses thin poles);
#   2. UNet + structure encoder with reference training from the start (crop and scene pairs);
#   3. the appearance-matching adapter (stage 2) on crop and scene pairs.
#
#   RUNS=~/runs/v5 bash bench/train_demo_model.sh          # CPU, 2 threads
#   RUNS=$OUT/v5 DEVICE=cuda bash bench/train_demo_model.sh  # a GPU, same commands
#   PHASES=vae LATENT_CHANNELS=4 RUNS=~/runs/vae4 bash bench/train_demo_model.sh  # one phase
#   # v6: v5's VAE trained on to 9,000 steps (its run dir copied, cosine from there), then v5's
#   # UNet grown to attention at 16x32 (ATTENTION_LEVELS=3) and trained on, then the adapter
#   cp -r ~/runs/v5/vae/checkpoints ~/runs/v5/vae/loss.jsonl ~/runs/v6/vae/
#   RUNS=~/runs/v6 PHASES=vae VAE_STEPS=9000 VAE_SCHEDULE=cosine bash bench/train_demo_model.sh
#   RUNS=~/runs/v6 PHASES="unet adapter" ATTENTION_LEVELS=3 WARM_START=~/runs/v5/unet/model \
#     UNET_STEPS=2500 ADAPTER_STEPS=1000 bash bench/train_demo_model.sh
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
VAE_SCHEDULE=${VAE_SCHEDULE:-constant}
UNET_STEPS=${UNET_STEPS:-3500}
ADAPTER_STEPS=${ADAPTER_STEPS:-1500}
CHANNELS=${LATENT_CHANNELS:-8}
# UNet self-attention (and exemplar reading) at 8x16 and 4x8 latent tokens (2 levels, v5) or at
# 16x32 as well (3); WARM_START: a trained model directory the UNet phase grows from
ATTENTION_LEVELS=${ATTENTION_LEVELS:-2}
WARM_START=${WARM_START:-}
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

case $ATTENTION_LEVELS in
  2) blocks='' ;;  # the demo preset's own blocks
  3) blocks=', "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
      "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]' ;;
  *) echo "ATTENTION_LEVELS must be 2 or 3" >&2; exit 2 ;;
esac
architecture="{\"vae\": {\"latent_channels\": $CHANNELS},
  \"unet\": {\"in_channels\": $CHANNELS, \"out_channels\": $CHANNELS$blocks}}"

phase vae jobs.train_structure --model demo --preset-overrides "$architecture" \
  --batch-size 8 --vae-steps "$VAE_STEPS" --vae-lr 2e-4 --vae-warmup-steps 50 --vae-schedule "$VAE_SCHEDULE" \
  --vae-crop 32x64 --vae-mse-weight 1.0 --steps 0

# a fresh UNet of the chosen architecture (seeded as the VAE phase's), or grown from WARM_START
phase unet jobs.train_structure --model demo --preset-overrides "$architecture" --vae-from "$RUNS/vae/model" \
  ${WARM_START:+--warm-start "$WARM_START"} --world-pairs mixed --reference-prob 0.8 \
  --batch-size 4 --steps "$UNET_STEPS" --lr 3e-4 --warmup-steps 100 --schedule cosine

phase adapter jobs.train_adapter --model "$RUNS/unet/model" --world-pairs mixed \
  --batch-size 4 --steps "$ADAPTER_STEPS" --lr 3e-3 --warmup-steps 50 --schedule cosine --save-fp16
