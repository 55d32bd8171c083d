#!/usr/bin/env bash
# Issue 12's long legs, sized to one call of the device tool on a lent GPU machine (a
# command runs at most 10 minutes there; checkpoints/README.md, "Next"): starting from the
# shipped checkpoints, the base generator fine-tuned adversarially (all its networks, the
# GAN recipe), then its encoder (IDInvert objective, renders redrawn and in front of
# patterned backgrounds among its targets), its mapping network against an image
# discriminator (stage 8), and the woodblock transfer model on the new synthesis. Writes
# base.pt, transfer.pt, quality.json and each leg's progress picture to OUT; the session
# copies the checkpoints into checkpoints/ only when its own figures say they are better.
#
#   device run:  bash scripts/train-on-device.sh          (OUT is set there; python3 has torch)
#   smoke here:  OUT=/tmp/o PY=.venv/bin/python DEVICE=cpu WORKERS=1 SCALE=0.02 \
#                QUALITY_N=16 bash scripts/train-on-device.sh
#
# Every leg stops on its time (minutes x SCALE), not on a count of images: the machine's
# speed decides how far it gets. Leg minutes: GAN_MIN, ENC_MIN, MAP_MIN, TRANSFER_MIN.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT: the folder the checkpoints go to}"
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-12}
SCALE=${SCALE:-1}
QUALITY_N=${QUALITY_N:-1000}
mkdir -p "$OUT"
RUNS=$(mktemp -d)
# The repository root is the package `stylegate` (pyproject.toml); a link names it so where
# nothing is installed.
mkdir -p "$RUNS/pkg" && ln -s "$PWD" "$RUNS/pkg/stylegate"
export PYTHONPATH="$RUNS/pkg${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

minutes() { "$PY" -c "import sys; print(max(0.02, float(sys.argv[1]) * float(sys.argv[2])))" "$1" "$SCALE"; }
train() { "$PY" -m stylegate.gan.train "$@" --device "$DEVICE" --render-workers "$WORKERS" --save-every 60; }
ship() { "$PY" -m stylegate.gan.train ship "$@"; }
picture() { cp "$RUNS/$1/progress.png" "$OUT/progress-$1.png" 2>/dev/null || true; }

cp checkpoints/base.pt "$OUT/base.pt"
cp checkpoints/transfer.pt "$OUT/transfer.pt"
classifier=checkpoints/classifier.pt

# 1. the adversarial fine-tune the autoencoder stages prepared the generator for, anchored to
#    the shipped encoder (real renders redrawn from its codes beside the GAN loss) and with the
#    constant noise the autoencoder trained with: on the CPU, after 600-800 iterations, KID
#    x1000 went from 23 to 109 unanchored and to 34 at weight 10; at weight 30 it was 26 and
#    the encoder 0.3 dB off after 1700 (checkpoints/README.md)
train gan --run "$RUNS/gan" --init "$OUT/base.pt" --anchor "$classifier" --anchor-weight 30 \
    --noise const --lr "${GAN_LR:-2e-4}" --batch "${GAN_BATCH:-64}" --mixing-prob 0.5 \
    --ema-kimg 10 --seed 31 --kimg 1e6 --minutes "$(minutes "${GAN_MIN:-3.5}")"
ship --run "$RUNS/gan" --out "$OUT/base.pt"
picture gan
# 2. the encoder matched to the new synthesis
train encoder --run "$RUNS/encoder" --base "$OUT/base.pt" --classifier "$classifier" \
    --iters 1000000 --batch 32 --synthetic 32 --lr 3e-4 --adv-weight 0.01 --restyle 0.375 \
    --backdrops 0.25 --seed 8 --minutes "$(minutes "${ENC_MIN:-2}")"
ship --run "$RUNS/encoder" --out "$OUT/base.pt"
# 3. the mapping network to the renders' distribution, the synthesis frozen (stage 8)
train gan --run "$RUNS/mapping" --init "$OUT/base.pt" --train mapping --mapping-lr 0.03 \
    --lr 2e-3 --ema-kimg 2 --seed 21 --kimg 1e6 --minutes "$(minutes "${MAP_MIN:-0.75}")"
ship --run "$RUNS/mapping" --out "$OUT/base.pt"
# 4. the woodblock model on the new synthesis (it keeps the base's mapping: one latent space)
train transfer --run "$RUNS/transfer" --base "$OUT/base.pt" --classifier "$classifier" \
    --kimg 1e6 --minutes "$(minutes "${TRANSFER_MIN:-0.75}")"
ship --run "$RUNS/transfer" --out "$OUT/transfer.pt"
picture transfer

"$PY" -m stylegate.gan.quality --n "$QUALITY_N" --base "$OUT/base.pt" --classifier "$classifier" \
    --json "$OUT/quality.json"
