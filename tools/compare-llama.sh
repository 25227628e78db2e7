#!/usr/bin/env bash
# epserve against llama.cpp's llama-bench on the same machine, alternately, in one run: the ratios
# that BENCHMARKS.md records. llama.cpp is not a dependency: give the path of a llama-bench you built.
#
#   tools/compare-llama.sh --llama-bench PATH --gguf FILE [options] [-- epserve bench options]
#
#   --llama-bench PATH   llama.cpp's llama-bench binary
#   --gguf FILE          the model file llama-bench reads
#   --model M            what epserve reads (a model directory or a .gguf file; default: the same FILE)
#   --label TEXT         names the row (default: the file name and any epserve options)
#   --rounds N           alternations, each one llama-bench run then one epserve run (default 3)
#   --threads T          threads for both (default: the processor count)
#   --prompt P --gen G   benchmark shape: P prompt tokens, then G decoded tokens (default 128, 32)
#   --no-limits          skip the machine-limits measurement (STREAM triad) at the start
#   after --              options passed to `epserve bench` (e.g. --expert-dtype q8_0)
#
# Each epserve run is a fresh `epserve bench --runs 1 --warmup 1` (one unmeasured run first, as
# llama-bench warms up too); each llama-bench run is `-r 1`. Prints every round, the medians and
# epserve / llama.cpp for prefill and decode. Exit 2 on usage errors, 1 when a run fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
epserve=${EPSERVE:-$root/bin/epserve}
llama_bench="" gguf="" model="" label="" rounds=3 threads=$(nproc) prompt=128 gen=32 limits=1
extra=()
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --llama-bench|--gguf|--model|--label|--rounds|--threads|--prompt|--gen)
      [ $# -ge 2 ] || { echo "compare-llama: $1 needs a value" >&2; exit 2; } ;;&
    --llama-bench) llama_bench=$2; shift 2 ;;
    --gguf) gguf=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --label) label=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    --gen) gen=$2; shift 2 ;;
    --no-limits) limits=0; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "compare-llama: unknown option $1" >&2; usage ;;
  esac
done
[ -n "$llama_bench" ] && [ -n "$gguf" ] || { echo "compare-llama: --llama-bench and --gguf are required" >&2; usage; }
[ -x "$llama_bench" ] || { echo "compare-llama: $llama_bench is not an executable llama-bench" >&2; exit 2; }
[ -f "$gguf" ] || { echo "compare-llama: $gguf is not a file" >&2; exit 2; }
for n in "$rounds" "$threads" "$prompt" "$gen"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "compare-llama: $n is not a positive integer" >&2; exit 2; }
done
model=${model:-$gguf}
label=${label:-$(basename "$gguf")${extra[*]:+ ${extra[*]}}}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "# compare-llama $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) processors, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# epserve commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown); llama-bench: $llama_bench"
echo "# shape: prompt $prompt, decode $gen, $threads threads; epserve reads $model; llama-bench reads $gguf"
if [ "$limits" = 1 ]; then
  jar="$root/epserve-bench/target/benchmarks.jar"
  if [ -f "$jar" ]; then
    "$("$root/bin/jdk25")/bin/java" --add-modules jdk.incubator.vector -cp "$jar" io.epserve.bench.MachineLimits 1024 "$threads" 2>/dev/null | sed 's/^/# limits: /'
  else
    echo "# limits: not measured ($jar is missing: bin/mvn -pl epserve-bench -am package -DskipTests)"
  fi
fi

# one llama-bench run: prints "prefill decode" tokens/s
llama_round() {
  "$llama_bench" -m "$gguf" -p "$prompt" -n "$gen" -t "$threads" -r 1 -o json > "$work/llama.json" 2> "$work/llama.err" || {
    echo "compare-llama: llama-bench failed:" >&2; tail -5 "$work/llama.err" >&2; return 1; }
  python3 - "$work/llama.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
pp = [r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0]
tg = [r["avg_ts"] for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0]
if not pp or not tg:
    sys.exit("compare-llama: llama-bench printed no prompt or no generation test")
print(f"{pp[0]:.2f} {tg[0]:.2f} {rows[0].get('build_commit', 'unknown')}")
EOF
}

# one epserve run: prints "prefill decode" tokens/s
epserve_round() {
  "$epserve" bench --model "$model" --prompt-tokens "$prompt" --gen-tokens "$gen" --runs 1 --warmup 1 ${extra[@]+"${extra[@]}"} \
      > "$work/epserve.out" 2> "$work/epserve.err" || {
    echo "compare-llama: epserve bench failed:" >&2; tail -5 "$work/epserve.err" >&2; return 1; }
  awk '/^prefill:/ {p = $2} /^decode:/ {d = $2} END {if (p == "" || d == "") exit 1; print p, d}' "$work/epserve.out" || {
    echo "compare-llama: epserve bench printed no prefill/decode line" >&2; return 1; }
}

: > "$work/rounds"
echo "| round | llama.cpp prefill | llama.cpp decode | epserve prefill | epserve decode |"
echo "| --- | ---: | ---: | ---: | ---: |"
export EPSERVE_JAVA_OPTS="-Depserve.threads=$threads ${EPSERVE_JAVA_OPTS:-}"
for r in $(seq 1 "$rounds"); do
  l=$(llama_round) || exit 1
  e=$(epserve_round) || exit 1
  read -r lp ld build ep ed <<< "$l $e"
  echo "$lp $ld $ep $ed" >> "$work/rounds"
  echo "| $r | $lp | $ld | $ep | $ed |"
done
echo "# llama.cpp build_commit $build"
python3 - "$work/rounds" "$label" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
lp, ld, ep, ed = (statistics.median(c) for c in zip(*rows))
print(f"\nmedians: llama.cpp prefill {lp:.1f}, decode {ld:.1f}; epserve prefill {ep:.1f}, decode {ed:.1f} tokens/s")
print(f"| {sys.argv[2]} | prefill {ep:.1f} / {lp:.1f} = {ep / lp:.2f}x | decode {ed:.1f} / {ld:.1f} = {ed / ld:.2f}x |")
EOF
