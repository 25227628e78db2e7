#!/usr/bin/env bash
# Builds the optional native kernels (epserve_kernels.c, see io.epserve.tensor.NativeKernels) into
# the directory $1, which the module's jar then carries. Where they cannot be built (not Linux on
# x86-64, or no C compiler: CC, default cc) it says so and succeeds: the Java code then runs the
# Vector API kernels, which compute the same bits. A compiler that rejects the source fails the
# build, so a broken kernel file is never shipped silently.
set -euo pipefail
dir=$1
src="$(cd "$(dirname "$0")" && pwd)/epserve_kernels.c"
out="$dir/libepserve_kernels.so"
cc=${CC:-cc}
if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
  echo "epserve-tensor: native kernels are built for Linux x86-64 only, not $(uname -s) $(uname -m); the Vector API kernels will run"
  exit 0
fi
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "epserve-tensor: no C compiler ($cc): native kernels not built; the Vector API kernels will run"
  exit 0
fi
if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$0" ]; then
  exit 0
fi
mkdir -p "$dir"
# No fast-math and no fp contraction: every rounding must be one the Java kernels make too.
# The AVX2/FMA/F16C code is enabled per function (target attributes), so the library loads on any
# x86-64 CPU and answers epserve_native_cpu_ok() there.
"$cc" -std=c11 -O2 -fPIC -shared -ffp-contract=off -fno-fast-math -Wall -Wextra -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
