#!/usr/bin/env bash
# The bit-identity checks of a refactor: trains the default model, a hybrid (mixer, attention and
# conv blocks with the CNN stem), a segmentation run and a 2-rank ZeRO-1 run, each in fp32 and bf16,
# for a few steps with a fixed seed, and prints the SHA-256 of each run's final parameters. Run it
# with the binary before and after a change and compare the two outputs (`diff`): a refactor that
# keeps behaviour keeps every line.
#
#   tools/bit_identity.sh [BINARY] [WORKDIR]      (default .build/release/mixer-dist, a temp folder)
set -euo pipefail
bin=$(realpath "${1:-.build/release/mixer-dist}")
work=${2:-$(mktemp -d)}
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--seed 7 --steps 12 --batch 16 --log-every 6 --eval-every 0 --save-every 0 --threads 1)
run() {  # name, ranks, flags...
  local name=$1 ranks=$2; shift 2
  local dir="$work/$name"
  rm -rf "$dir"
  if [[ $ranks == 1 ]]; then
    "$bin" train "${common[@]}" --run-dir "$dir" "$@" > "$dir.log" 2>&1 || { echo "$name: failed (see $dir.log)"; return 1; }
  else
    timeout 600 mpirun -n "$ranks" --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1 \
      "$bin" train "${common[@]}" --run-dir "$dir" "$@" > "$dir.log" 2>&1 || { echo "$name: failed (see $dir.log)"; return 1; }
  fi
  local params
  params=$(find "$dir" -maxdepth 1 -name 'final-parameters*' -type f | sort | head -1)
  [[ -n $params ]] || { echo "$name: no final parameters (see $dir.log)"; return 1; }
  printf '%-22s %s\n' "$name" "$(sha256sum < "$params" | cut -c1-64)"
}
for precision in fp32 bf16; do
  run "default-$precision" 1 --precision "$precision"
  run "hybrid-$precision" 1 --precision "$precision" --block-pattern alternate:mixer,attention,conv --heads 2 \
    --stem cnn --blocks 3 --hidden 32
  run "segmentation-$precision" 1 --precision "$precision" --task segmentation
  run "zero1-2ranks-$precision" 2 --precision "$precision" --zero 1
done
