#!/usr/bin/env bash
# tools/exact_cost.sh: what `train --exact` costs on namespace hosts, side by side with today's
# reduction (issue 27, item 3).
#
#   tools/exact_cost.sh [--hosts "2 4"] [--presets "cifar S/16"] [--rate 1gbit] [--batch 32]
#                       [--micro-batch 16] [--steps 4] [--warmup 1] [--pairs 2] [--binary PATH]
#
# For every host count, a local cluster (launch/local-cluster, one rank per host, links shaped
# to --rate) is brought up (a count of 1 is one process on this machine, without MPI: the cost
# of the micro-batches and the integer sum alone); for every preset, `bench` runs --pairs times as an interleaved pair:
# plain, then `--exact-micro-batch M`, so a drifting machine slows both alike. Prints one line per
# run and a Markdown table (images/s plain / exact, the exact run's extra time per step) whose
# header names the machine, the OpenBLAS kernel, the date and this command. The cluster is
# removed on exit, also on failure. Needs root (namespaces) and the release binary (--binary, else
# $MIXER_DIST_BIN, else .build/release/mixer-dist). Run it alone: the hosts share this machine's
# cores, so any other load slows every figure.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "tools/exact_cost.sh: $*" >&2; exit 2; }
invocation="tools/exact_cost.sh${1:+$(printf " %q" "$@")}"
hosts_list="2 4" presets="cifar S/16" rate=1gbit batch=32 micro=16 steps=4 warmup=1 pairs=2
binary=${MIXER_DIST_BIN:-.build/release/mixer-dist}
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case "$1" in
    --hosts) hosts_list=$2 ;; --presets) presets=$2 ;; --rate) rate=$2 ;; --batch) batch=$2 ;;
    --micro-batch) micro=$2 ;; --steps) steps=$2 ;; --warmup) warmup=$2 ;; --pairs) pairs=$2 ;;
    --binary) binary=$2 ;;
    *) die "unknown argument '$1'" ;;
  esac
  shift 2
done
[ -x "$binary" ] || die "no binary at $binary (swift build -c release --product mixer-dist)"
[ "$(id -u)" = 0 ] || die "needs root for the network namespaces"
export MIXER_DIST_BIN=$binary

name=xc$$
name=${name:0:8}
cleanup() { launch/local-cluster list 2>/dev/null | grep -q -w "$name" && launch/local-cluster down "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

rows=()
run_bench() { # hostfile hosts preset extra... -> images/s
  local hostfile=$1 n=$2 preset=$3; shift 3
  local out
  local launcher=(launch/mpirun -n "$n" --hostfile "$hostfile" --)
  [ "$n" = 1 ] && launcher=("$binary")  # one process on this machine: no cluster, no MPI
  out=$(timeout 900 "${launcher[@]}" bench --preset "$preset" --batch "$batch" --steps "$steps" \
        --warmup "$warmup" "$@" 2>/dev/null | grep '^{' | tail -1) \
    || die "bench failed: $n hosts, $preset $*"
  python3 -c 'import json,sys; print("%.2f" % json.loads(sys.argv[1])["images_per_second"])' "$out"
}

for n in $hosts_list; do
  hostfile=""
  [ "$n" = 1 ] || hostfile=$(launch/local-cluster up "$n" --rate "$rate" --name "$name")
  for preset in $presets; do
    plain=() exact=()
    for ((i = 1; i <= pairs; i++)); do
      p=$(run_bench "$hostfile" "$n" "$preset")
      e=$(run_bench "$hostfile" "$n" "$preset" --exact-micro-batch "$micro")
      echo "$n hosts, $preset, pair $i: plain $p img/s, exact $e img/s" >&2
      plain+=("$p") exact+=("$e")
    done
    rows+=("$(python3 - "$n" "$preset" "${plain[*]}" "${exact[*]}" <<'EOF'
import sys
n, preset, plain, exact = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
extra = [float(p) / float(e) - 1 for p, e in zip(plain, exact)]
print(f"| {n} | `{preset}` | {' / '.join(plain)} | {' / '.join(exact)} | "
      + " / ".join(f"{100 * x:+.0f}%" for x in extra) + " |")
EOF
)")
  done
  [ "$n" = 1 ] || launch/local-cluster down "$name" >/dev/null
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
isa=none
for f in avx2 avx512f avx512_bf16 amx_tile; do grep -q -w "$f" /proc/cpuinfo && isa=$f; done
core=$("$binary" bench --preset tiny --steps 1 --warmup 0 2>/dev/null | grep '^{' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["blas_core"])')
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $cpu (best ISA: $isa), $(nproc) cores, OpenBLAS \`$core\`" \
  "(OPENBLAS_CORETYPE ${OPENBLAS_CORETYPE:-unset}), links $rate, one rank per host, batch $batch per rank, micro-batch $micro; \`$invocation\`"
echo
echo "| hosts | preset | images/s plain | images/s \`--exact\` | extra time per step |"
echo "|---:|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
