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

# 4. the varied renderer (issue 12): classifier fine-tuned on it, then the base continued
#    on it as an autoencoder with its 32px and 64px layers widened (the widened network
#    starts out drawing the same images) and an adversarial term on the reconstructions,
#    then the encoder again
train classifier --run "$RUNS/classifier-v2" --init "$OUT/classifier.pt" --iters 3200 --lr 1e-3
ship --run "$RUNS/classifier-v2" --out "$OUT/classifier.pt"
train autoencoder --run "$RUNS/ae-v2" --classifier "$OUT/classifier.pt" --init "$OUT/base.pt" \
    --widen 32:64,64:32 --adv-weight 0.02 --lr 1e-3 --kimg 64
ship --run "$RUNS/ae-v2" --out "$OUT/base.pt"
train encoder --run "$RUNS/encoder-v2" --base "$OUT/base.pt" --classifier "$OUT/classifier.pt" \
    --iters "${ENCODER_ITERS:-1400}" --adv-weight 0.01
ship --run "$RUNS/encoder-v2" --out "$OUT/base.pt"

# 5. (issue 12, second leg) the base continued on the varied renderer with a stronger
#    adversarial term on the reconstructions and new images (another seed); then the encoder
#    continued from stage 4's W+ encoder (the autoencoder ships its encoder collapsed to W)
train autoencoder --run "$RUNS/ae-v3" --classifier "$OUT/classifier.pt" --init "$OUT/base.pt" \
    --adv-weight 0.05 --lr 7e-4 --seed 11 --kimg 130
[ -f "$RUNS/base-stage4.pt" ] || cp "$OUT/base.pt" "$RUNS/base-stage4.pt"
ship --run "$RUNS/ae-v3" --out "$OUT/base.pt"
train encoder --run "$RUNS/encoder-v3" --base "$OUT/base.pt" --classifier "$OUT/classifier.pt" \
    --init-encoder "$RUNS/base-stage4.pt" --iters "${ENCODER_ITERS:-5000}" --adv-weight 0.01
ship --run "$RUNS/encoder-v3" --out "$OUT/base.pt"

# 6. (issue 12, third leg) the base continued again, now with generated samples beside the
#    reconstructions in a 3x stronger adversarial term; its encoder is stage 5's autoencoder
#    encoder (the shipped one is the W+ inversion encoder, far from the mean codes this
#    recipe reconstructs from); then the W+ encoder continued from stage 5's
[ -f "$RUNS/base-stage5.pt" ] || cp "$OUT/base.pt" "$RUNS/base-stage5.pt"
[ -f "$RUNS/base-stage5-ae.pt" ] || ship --run "$RUNS/ae-v3" --out "$RUNS/base-stage5-ae.pt"
train autoencoder --run "$RUNS/ae-v4" --classifier "$OUT/classifier.pt" --init "$RUNS/base-stage5.pt" \
    --init-encoder "$RUNS/base-stage5-ae.pt" --adv-weight 0.15 --adv-samples 16 --lr 5e-4 \
    --seed 13 --kimg 110
ship --run "$RUNS/ae-v4" --out "$OUT/base.pt"
train encoder --run "$RUNS/encoder-v4" --base "$OUT/base.pt" --classifier "$OUT/classifier.pt" \
    --init-encoder "$RUNS/base-stage5.pt" --iters "${ENCODER_ITERS:-4000}" --adv-weight 0.01
ship --run "$RUNS/encoder-v4" --out "$OUT/base.pt"

# 7. woodblock transfer model: the final base's synthesis fine-tuned on paired renders (a run
#    directory per base: an older base's finished run would resume as done)
train transfer --run "$RUNS/transfer-v4" --base "$OUT/base.pt" --classifier "$OUT/classifier.pt" \
    --kimg "${TRANSFER_KIMG:-14}"
ship --run "$RUNS/transfer-v4" --out "$OUT/transfer.pt"
