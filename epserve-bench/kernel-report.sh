#!/usr/bin/env bash
# Machine limits + kernel JMH benchmarks in one session, with ratios (see BENCHMARKS.md).
# Usage: epserve-bench/kernel-report.sh [jmh-include-regex]
# Build first: bin/mvn -q -pl epserve-tensor,epserve-bench -am install -DskipTests
# Waits (up to 10 min) until no Maven build has run for 20 s, since the CPUs are shared.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
java_home=$("$root/bin/jdk25")
quiet=0
for _ in $(seq 1 300); do
  if pgrep -f plexus-classworlds >/dev/null 2>&1; then quiet=0; else quiet=$((quiet + 2)); fi
  [ "$quiet" -ge 20 ] && break
  sleep 2
done
echo "commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- epserve-tensor epserve-bench || echo ' + uncommitted epserve-tensor/epserve-bench changes')"
echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')), $(nproc) vCPU"
echo "start $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg), maven running: $(pgrep -fc plexus-classworlds || true)"
"$java_home/bin/java" --add-modules jdk.incubator.vector -cp "$root/epserve-bench/target/benchmarks.jar" \
  io.epserve.bench.KernelReport "$@"
echo "end $(date -u +%FT%TZ) loadavg $(cut -d' ' -f1-3 /proc/loadavg), maven running: $(pgrep -fc plexus-classworlds || true)"
