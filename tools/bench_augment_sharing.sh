#!/bin/bash
# Stage-timer comparison for augment's shared VAE encoding (issue: "N samples cost less than N
# separate runs"). Runs, REPS times each, on the two example images in class folders:
#   augment  : boomerang augment -n N        (one VAE encode per image, N samples in one UNet batch)
#   batch1   : boomerang sample -n N --batch 1 (N separate runs: N encodes, N UNet batches of 1)
#   batchN   : boomerang sample -n N --batch N (N encodes, one UNet batch)
# and checks that augment's samples are byte-identical to the separate runs'.
# Usage: tools/bench_augment_sharing.sh [MODEL] [STRENGTH] [N] [REPS]   (from the repository root,
# after `cargo build --release`; ONNX Runtime found as usual, e.g. ORT_DYLIB_PATH)
set -euo pipefail
B=${BOOMERANG:-target/release/boomerang}
M=${1:-models/tiny-sd}
S=${2:-0.5}
N=${3:-8}
REPS=${4:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in/a" "$work/in/b"
cp examples/astronaut.png "$work/in/a/"
cp examples/coffee.png "$work/in/b/"
common=(--model "$M" --steps 20 --strength "$S" --seed 1 --threads 1)
for rep in $(seq "$REPS"); do
  rm -rf "$work/out" "$work/s1" "$work/sN"
  echo "== augment (rep $rep)"
  "$B" augment "${common[@]}" -n "$N" --no-originals --quiet --timings "$work/in" "$work/out"
  echo "== batch1 (rep $rep)"
  "$B" sample "${common[@]}" -n "$N" --batch 1 --timings -o "$work/s1" \
    "$work/in/a/astronaut.png" "$work/in/b/coffee.png" | grep -v "(sample"
  echo "== batchN (rep $rep)"
  "$B" sample "${common[@]}" -n "$N" --batch "$N" --timings -o "$work/sN" \
    "$work/in/a/astronaut.png" "$work/in/b/coffee.png" | grep -v "(sample"
  for k in $(seq 0 $((N - 1))); do
    cmp -s "$work/out/a/astronaut_aug$k.png" "$work/s1/astronaut_$k.png" \
      || echo "MISMATCH astronaut sample $k"
    cmp -s "$work/out/b/coffee_aug$k.png" "$work/s1/coffee_$k.png" \
      || echo "MISMATCH coffee sample $k"
  done
done
