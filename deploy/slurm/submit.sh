#!/usr/bin/env bash
# Submits a sharded `boomerang anonymize` to Slurm: the array job (anonymize.sbatch, SHARDS tasks,
# one GPU each) and the merge (merge.sbatch) with --dependency=afterok on it, so the merged report
# is written once every part succeeded (if one fails, the merge is cancelled: resubmit that part as
# anonymize.sbatch says, then merge.sbatch with --dependency=afterok on it).
#
# usage: IN=DIR OUT=DIR SEED_FILE=FILE [SHARDS=16] [BOOMERANG=boomerang] \
#            deploy/slurm/submit.sh [SBATCH OPTION...] [-- ANONYMIZE OPTION...]
# SBATCH OPTIONs (--partition, --account, --time...) go to both jobs. Prints the two job ids.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${IN:?set IN}" "${OUT:?set OUT}" "${SEED_FILE:?set SEED_FILE}"
SHARDS=${SHARDS:-16}
export IN OUT SEED_FILE SHARDS
options=()
while (($#)) && [[ $1 != -- ]]; do
    options+=("$1")
    shift
done
if (($#)); then shift; fi
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" "${options[@]}" "$here/anonymize.sbatch" "$@")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "${options[@]}" \
    "$here/merge.sbatch")
echo "$array ${merge%%;*}"
