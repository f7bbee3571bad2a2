#!/usr/bin/env bash
# kill -9 drill for `anonymize --resume`: DRILLS runs (alternating --batch 1 and --batch 3) are each
# killed at a seeded random moment, then resumed (and killed again while the seeded draw says so)
# until they finish. Every final output tree must be byte-identical to an uninterrupted run's, and
# every report equal to it row for row except the timing column and the hash chain that covers it.
#
#   tools/kill_drill.sh [DRILLS=20] [SEED=1]
#
# Prints one line per drill and a total; exits 1 if any drill differs.
set -euo pipefail
cd "$(dirname "$0")/.."
drills=${1:-20}
RANDOM=${2:-1}
cargo build --quiet --release
bin=$PWD/target/release/boomerang
"$bin" fetch-onnxruntime >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A small dataset with class folders, faces, a non-image and an unreadable file.
mkdir -p "$work/in/people" "$work/in/things"
cp tests/fixtures/faces/obama.jpg tests/fixtures/faces/obama2.jpg tests/fixtures/faces/biden.jpg "$work/in/people/"
cp examples/astronaut.png "$work/in/people/"
cp examples/coffee.png tests/fixtures/faces/coffee.jpg "$work/in/things/"
echo "notes" >"$work/in/things/README.txt"
head -c 300 examples/coffee.png >"$work/in/things/truncated.png"

anonymize() { # OUT BATCH [--resume]; exec, so that `kill -9 $!` hits boomerang itself
  exec "$bin" anonymize --policy policies/demo.toml --level medium --seed 7 --threads 1 --quiet \
    --batch "$2" "${@:3}" "$work/in" "$1"
}

# Rows without the columns that depend on wall time (milliseconds, and the chain that hashes it).
stable_rows() {
  python3 - "$1" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
drop = {rows[0].index(c) for c in ("milliseconds", "chain")}
for row in rows:
    print(",".join(v for i, v in enumerate(row) if i not in drop))
EOF
}

declare -A took
for batch in 1 3; do
  start=$(date +%s%N)
  (anonymize "$work/ref$batch/out" "$batch") >/dev/null || [ $? -eq 3 ]
  took[$batch]=$(( ($(date +%s%N) - start) / 1000000 ))
  stable_rows "$work/ref$batch/out.report.csv" >"$work/ref$batch/rows"
done

failures=0
for drill in $(seq 1 "$drills"); do
  batch=$(( drill % 2 == 1 ? 1 : 3 ))
  dir="$work/drill$drill"
  mkdir -p "$dir"
  kills=0
  resume=()
  while :; do
    (anonymize "$dir/out" "$batch" "${resume[@]}") >"$dir/log" 2>&1 &
    pid=$!
    # Kill within the reference run's duration at a seeded moment; after three kills, let it finish.
    if [ "$kills" -lt 3 ]; then
      delay_ms=$(( RANDOM % took[$batch] ))
      sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
      if kill -9 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        kills=$((kills + 1))
        # A run killed before it created anything starts afresh; otherwise it resumes.
        if [ -e "$dir/out.run.json" ]; then resume=(--resume); else rm -rf "$dir"/out*; resume=(); fi
        continue
      fi
    fi
    status=0
    wait "$pid" || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
      echo "drill $drill (batch $batch, $kills kills): exit $status"; cat "$dir/log"
      failures=$((failures + 1))
      continue 2
    fi
    break
  done
  if diff -r "$work/ref$batch/out" "$dir/out" >/dev/null &&
    diff <(stable_rows "$dir/out.report.csv") "$work/ref$batch/rows" >/dev/null; then
    echo "drill $drill (batch $batch, $kills kills): identical"
  else
    echo "drill $drill (batch $batch, $kills kills): DIFFERS"
    diff -r "$work/ref$batch/out" "$dir/out" || true
    diff <(stable_rows "$dir/out.report.csv") "$work/ref$batch/rows" || true
    failures=$((failures + 1))
  fi
done
echo "$drills drills, $failures failures"
[ "$failures" -eq 0 ]
