#!/usr/bin/env bash
# The calibration table of BENCHMARKS.md in one command: measures the configurations this machine
# can run for real, then prints what `epserve simulate` predicts for each beside what was measured.
#
#   tools/calibrate.sh [OUT_DIR]             (default target/calibration; needs root for the namespace hosts): measures
#                                            EPSERVE_CALIBRATE_REPEATS runs, prints each run's table and the pooled one
#   tools/calibrate.sh --relayout OUT_DIR    lays out OUT_DIR's measurements again and re-runs the
#                                            prediction, measuring nothing (the model or the layout changed)
#   tools/calibrate.sh --pool DIR DIR...     several finished runs of the same shape, each laid out again: each
#                                            run's table, then the pooled one (mean measured against mean predicted)
#
# Measured (the demo model, `epserve bench ep`: the decode column is batch 1, one sequence; the
# batched-decode column is B sequences per step):
#   - the single process at batch 1 and batch B                  -> fit the frontend's per-layer/per-token work
#   - 2 workers (contiguous) on loopback at batch 1, and at batch B with overlap on
#                                                                 -> fit a message's software cost, per message and per byte
#   - everything else, predicted: the single process with overlap; 1 worker, 4 workers (contiguous)
#     and 2 workers (replicated) on loopback at batch 1 and at batch B with overlap off and on;
#     2 workers (contiguous) at batch B with overlap off; 2 workers on namespace hosts at 50 µs /
#     10 Gbit and 500 µs / 1 Gbit (the delay only where the kernel has sch_netem), batch 1 and
#     batch B with overlap off and on; skewed against balanced placement (`bench balance`: a Zipf load through one
#     OLMoE-shaped expert layer on 2 workers, contiguous and balanced, the load it routed replayed) -> within 15%?
# The expert kernel's cost is measured first (`epserve simulate --fit-cost`). Everything runs on
# this machine's cores at once, as the simulator is told (--cpu machine:N). Each configuration is
# the median of its runs; `bench ep` also prints every run's batched figure (the spread) and the
# per-call split of the batched decode. Environment:
# EPSERVE_CALIBRATE_BATCH (default 16), EPSERVE_CALIBRATE_RUNS (runs per configuration, default 5), EPSERVE_CALIBRATE_WARMUP
# (seconds, default 60: fresh worker JVMs are still compiling their per-call path 17–35 s after start), EPSERVE_CALIBRATE_TOKENS
# (decode steps per run, default 32), EPSERVE_CALIBRATE_REPEATS (default 2: the whole calibration measured that many times, into
# OUT_DIR/run-1, run-2, ..., each fitted and predicted on its own, then pooled as --pool does; about 50 minutes a repeat on 2 cores).
# Repeats of one configuration on a 2-vCPU guest spread by about ±10%, so a 15% test needs the mean of independent runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
measure=1
pool=()
if [ "${1:-}" = --pool ]; then
  shift
  [ $# -ge 2 ] || { echo "--pool needs two or more directories calibration runs wrote" >&2; exit 2; }
  for d in "$@"; do
    [ -f "$d/w1.txt" ] && [ -f "$d/cost.json" ] || { echo "--pool: '$d' is not a finished calibration run (no w1.txt or cost.json)" >&2; exit 2; }
    pool+=("$(cd "$d" && pwd)")
  done
  measure=0
  set -- "${pool[0]}"
elif [ "${1:-}" = --relayout ]; then
  measure=0
  shift
  [ -f "${1:-}/w1.txt" ] || { echo "--relayout needs a directory a calibration run wrote (no w1.txt in '${1:-}')" >&2; exit 2; }
fi
out=$(mkdir -p "${1:-$root/target/calibration}" && cd "${1:-$root/target/calibration}" && pwd)
epserve="${EPSERVE:-$root/bin/epserve}"   # EPSERVE: another launcher (tests)
repeats=${EPSERVE_CALIBRATE_REPEATS:-2}
if [ "$measure" = 1 ] && [ "$repeats" -gt 1 ]; then
  run_dirs=()
  for i in $(seq 1 "$repeats"); do
    echo "calibration run $i of $repeats" >&2
    run_dirs+=("$out/run-$i")
    EPSERVE_CALIBRATE_REPEATS=1 bash "$0" "$out/run-$i" >/dev/null
  done
  bash "$0" --pool "${run_dirs[@]}" | tee "$out/table.md"
  exit "${PIPESTATUS[0]}"
fi
batch=${EPSERVE_CALIBRATE_BATCH:-16}
runs=${EPSERVE_CALIBRATE_RUNS:-5}
warmup=${EPSERVE_CALIBRATE_WARMUP:-60}
cores=$(nproc)
tokens=${EPSERVE_CALIBRATE_TOKENS:-32}
# --transport grpc: the model's message cost is gRPC's, and namespace "hosts" share this kernel and
# /dev/shm, so the default (auto) would hand their steps over shared memory, past the shaped network
shape=(--no-validate --runs "$runs" --prompt-tokens 32 --gen-tokens "$tokens" --batch "$batch" --warmup-seconds "$warmup" --transport grpc)
points="$out/points.tsv"
name="cal$$"
name=${name:0:8}
workers=()

cleanup() {
  for p in "${workers[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${workers[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$(id -u)" = 0 ]; then bash "$root/tools/netns-hosts.sh" down "$name" >/dev/null 2>&1 || true; fi
  rm -f "$out/secret"
}
trap cleanup EXIT

# column of a bench ep row: batch decode is the second-to-last field, decode the third-to-last
field() { grep -E "^$1 +$2 " "$3" | awk -v back="$4" '{print $(NF - back)}'; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) exit 1; m = int((NR + 1) / 2); printf "%.1f\n", NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2}'; }
# Every `bench ep` run measures the single process again: a single-process point is the median of
# all of them (batch 1: overlap off and on, one sequence has nothing to overlap, so both rows are
# the same configuration; batch B: the rows with that overlap setting).
single() { # overlap(off|on|any) back
  local ov=$1 back=$2 f
  [ "$ov" = any ] && ov='(off|on)'
  for f in "$out"/w*.txt "$out"/ns-*.txt; do [ -f "$f" ] && field 'single process' "$ov" "$f" "$back"; done | median
}
# A batch-1 point with workers: its overlap-off and overlap-on rows are the same configuration
# measured twice (one sequence), so the point is their median (the mean of the two).
batch1() { { field "$1" off "$2" 2; field "$1" on "$2" 2; } | median; }

measure_loopback() {
  echo "measuring the expert kernel..." >&2
  "$epserve" simulate --fit-cost "$out/cost.json" | tee "$out/fit-cost.txt" >&2
  "$epserve" bench ep --help >/dev/null   # builds once, if needed, before anything is timed

  bench() { # label file args...
    local label=$1 file=$2
    shift 2
    echo "bench ep: $label" >&2
    "$epserve" bench ep "${shape[@]}" "$@" > "$file"
    cat "$file" >&2
  }

  bench "1 worker" "$out/w1.txt" --ep-workers 1
  bench "2 workers, contiguous" "$out/w2.txt" --ep-workers 2
  bench "4 workers, contiguous" "$out/w4.txt" --ep-workers 4
  bench "2 workers, replicated" "$out/w2r.txt" --ep-workers 2 --policy replicated

  # skewed against balanced placement: `bench balance` replays a Zipf load through one OLMoE-shaped
  # expert layer on 2 worker processes, contiguous then balanced; it writes the load its measured
  # contiguous steps routed, which the simulator replays. --cost pairs: the balanced placement
  # packs pairs, as the simulator's (and serve's) balanced policy does.
  echo "bench balance: skewed load, contiguous then balanced placement" >&2
  "$epserve" bench balance --cost pairs --load-out "$out/balance-load.json" > "$out/balance.txt"
  cat "$out/balance.txt" >&2
}

measure_namespaces() {
  if [ "$(id -u)" != 0 ] || ! ip netns add "$name-probe" 2>/dev/null; then
    echo "not root or no network namespaces here: the namespace points are left out" >&2
    return
  fi
  ip netns del "$name-probe"
  local demo="${EPSERVE_CACHE:-$HOME/.cache/epserve}/demo-mixtral-640m-v1" i setting shaped latency file
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$out/secret"
  bash "$root/tools/netns-hosts.sh" up "$name" 3 >&2
  for i in 1 2; do
    EPSERVE_JAVA_OPTS="-Depserve.threads=1" ip netns exec "$name-$i" "$epserve" worker --listen "10.213.0.1$i:7070" --model "$demo" \
      --auth-secret-file "$out/secret" --lease-timeout 5 > "$out/worker$i.log" 2>&1 &
    workers+=($!)
  done
  for i in 1 2; do
    for _ in $(seq 1 240); do grep -q "listening on" "$out/worker$i.log" && break; sleep 0.5; done
    grep -q "listening on" "$out/worker$i.log" || { echo "worker $i did not start: $(cat "$out/worker$i.log")" >&2; exit 1; }
  done
  for setting in "50 10000" "500 1000"; do
    set -- $setting
    shaped=$(bash "$root/tools/netns-hosts.sh" shape "$name" "$1" "$2")
    echo "$shaped" >&2
    latency=$1
    grep -q "delay=applied" <<<"$shaped" || latency=0
    file="$out/ns-$1us-$2mbit.txt"
    echo "bench ep: 2 workers on namespace hosts, $1 µs (applied: $latency) / $2 Mbit" >&2
    ip netns exec "$name-0" "$epserve" bench ep "${shape[@]}" --model "$demo" --workers 10.213.0.11:7070,10.213.0.12:7070 \
      --worker-secret-file "$out/secret" > "$file"
    echo "$latency" > "${file%.txt}.applied"
    cat "$file" >&2
  done
}

# The points file from the measurements in $out (each line: name, use, model, workers, layout,
# policy, overlap, batch, latency_us, bandwidth, tokens/s).
layout() {
  local cfg label w policy file row ov us mbit latency extra
  cat "$out/measured.txt"
  point() { printf '%s\tdemo\t%s\tcolocated\t%s\t%s\t%s\t0\tunlimited\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6"; }
  point 'single process, batch 1'$'\t''fit-frontend' 0 contiguous off 1 "$(single any 2)"
  point "single process, batch $batch"$'\t''fit-frontend' 0 contiguous off "$batch" "$(single off 1)"
  point "single process, batch $batch, overlap on"$'\t''predict' 0 contiguous on "$batch" "$(single on 1)"
  point '2 workers, loopback, contiguous, batch 1'$'\t''fit-message' 2 contiguous off 1 "$(batch1 '2 workers, loopback' "$out/w2.txt")"
  point "2 workers, loopback, contiguous, batch $batch, overlap on"$'\t''fit-message' 2 contiguous on "$batch" "$(field '2 workers, loopback' on "$out/w2.txt" 1)"
  point "2 workers, loopback, contiguous, batch $batch, overlap off"$'\t''predict' 2 contiguous off "$batch" "$(field '2 workers, loopback' off "$out/w2.txt" 1)"
  for cfg in "1 worker, loopback|1|contiguous|w1|1 workers" "4 workers, loopback, contiguous|4|contiguous|w4|4 workers" "2 workers, loopback, replicated|2|replicated|w2r|2 workers"; do
    IFS='|' read -r label w policy file row <<<"$cfg"
    point "$label, batch 1"$'\t''predict' "$w" "$policy" off 1 "$(batch1 "$row, loopback" "$out/$file.txt")"
    for ov in off on; do
      point "$label, batch $batch, overlap $ov"$'\t''predict' "$w" "$policy" "$ov" "$batch" "$(field "$row, loopback" $ov "$out/$file.txt" 1)"
    done
  done
  if [ -f "$out/balance.txt" ]; then
    local model step skew tps
    model=$(sed -n 's/^model directory: //p' "$out/balance.txt")
    step=$(grep -o '[0-9]* tokens a step' "$out/balance.txt" | cut -d' ' -f1)
    skew=$(grep -o 'Zipf s = [0-9.]*' "$out/balance.txt" | sed 's/ s = / /' || true)   # none when a load file was replayed
    for policy in contiguous balanced; do
      tps=$(awk -v p="$policy" '$1 == p {print $4}' "$out/balance.txt")
      label="2 workers, loopback, one expert layer, $step tokens a step, ${skew:-replayed} load, $policy"
      extra="load=balance-load.json"$'\t''workload=expert-layers'
      if [ "$policy" = balanced ]; then
        label+=" (1 redundant slot)"
        extra+=$'\t''redundant=1'
      fi
      printf '%s\tpredict\t%s\t2\tcolocated\t%s\toff\t%s\t0\tunlimited\t%s\t%s\n' "$label" "$model" "$policy" "$step" "$tps" "$extra"
    done
  fi
  for file in "$out"/ns-50us-10000mbit.txt "$out"/ns-500us-1000mbit.txt; do
    [ -f "$file" ] || continue
    us=${file##*/ns-}
    us=${us%%us-*}
    mbit=${file##*us-}
    mbit=${mbit%mbit.txt}
    latency=$(cat "${file%.txt}.applied")
    printf '2 workers, namespace hosts, %s µs (%s applied) / %s Mbit, batch 1\tpredict\tdemo\t2\tfrontend-host\tcontiguous\toff\t1\t%s\t%smbit\t%s\n' \
      "$us" "$latency" "$mbit" "$latency" "$mbit" "$(batch1 '2 workers, remote' "$file")"
    for ov in off on; do
      printf '2 workers, namespace hosts, %s µs (%s applied) / %s Mbit, batch %s, overlap %s\tpredict\tdemo\t2\tfrontend-host\tcontiguous\t%s\t%s\t%s\t%smbit\t%s\n' \
        "$us" "$latency" "$mbit" "$batch" "$ov" "$ov" "$batch" "$latency" "$mbit" "$(field '2 workers, remote' $ov "$file" 1)"
    done
  done
}

if [ "$measure" = 1 ]; then
  printf '# measured %s on %s (%s cores), load average at start %s\n' "$(date -u +%FT%TZ)" "$(hostname)" "$cores" "$(cut -d' ' -f1-3 /proc/loadavg)" > "$out/measured.txt"
  measure_loopback
  measure_namespaces
fi
sim=(--cpu "machine:$cores" --frontend-threads "$cores" --worker-threads 1 --steps 20)
if [ ${#pool[@]} -gt 0 ]; then
  for out in "${pool[@]}"; do
    layout > "$out/points.tsv"
  done
  "$epserve" simulate --calibrate-runs "$(IFS=,; echo "${pool[*]}")" "${sim[@]}"
  exit 0
fi
layout > "$points"

"$epserve" simulate --calibrate "$points" --cost "$out/cost.json" "${sim[@]}" | tee "$out/table.md"
