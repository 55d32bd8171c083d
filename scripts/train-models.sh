#!/usr/bin/env bash
# The recipe of the shipped checkpoints, stage by stage (see checkpoints/README.md for what
# each stage took and measured). Every stage resumes from its run directory, so rerunning
# this script after an interruption continues where it stopped; a finished stage returns
# at once. Pass RUNS=DIR to keep run directories elsewhere, THREADS=N for torch threads.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs}
THREADS=${THREADS:-2}
OUT=${OUT:-checkpoints}
train() { "$PY" -m stylegate.gan.train "$@" --threads "$THREADS"; }
ship() { "$PY" -m stylegate.gan.train ship "$@"; }

# 1. attribute classifier (its trunk is also the perceptual feature network)
train classifier --run "$RUNS/classifier" --iters 7000
ship --run "$RUNS/classifier" --out "$OUT/classifier.pt"

# 2. base generator: synthesis + encoder as an autoencoder through W, mapping as a latent GAN
train autoencoder --run "$RUNS/ae" --classifier "$OUT/classifier.pt" --kimg 125
ship --run "$RUNS/ae" --out "$OUT/base.pt"

# 3. domain-guided encoder: IDInvert's objective (pixel + perceptual + adversarial on real
#    renders, latent regression on samples), starting from the autoencoder's encoder
train encoder --run "$RUNS/encoder" --base "$OUT/base.pt" --classifier "$OUT/classifier.pt" \
    --iters "${ENCODER_ITERS:-2000}"
ship --run "$RUNS/encoder" --out "$OUT/base.pt"

# 4. woodblock transfer model: the base synthesis fine-tuned on paired renders
train transfer --run "$RUNS/transfer" --base "$OUT/base.pt" --classifier "$OUT/classifier.pt" \
    --kimg "${TRANSFER_KIMG:-20}"
ship --run "$RUNS/transfer" --out "$OUT/transfer.pt"
