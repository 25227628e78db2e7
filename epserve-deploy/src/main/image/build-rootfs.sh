#!/usr/bin/env bash
# Builds the file tree the epserve image adds on top of `scratch`: a jlink runtime of the build's JDK
# at /opt/java, the few shared libraries that runtime links against (found with ldd, copied from this
# machine at the paths the dynamic loader searches), and a minimal /etc with a non-root user.
# Usage: build-rootfs.sh JDK_HOME MODULES OUT_DIR
# Skips the work when OUT_DIR was built by the same JDK, modules and script (a stamp file says so).
set -euo pipefail
jdk=$1 modules=$2 out=$3
stamp="$out.stamp"
want="$("$jdk/bin/java" -version 2>&1 | tr '\n' ' ') | $modules | $(sha256sum "$0" | cut -d' ' -f1)"
if [ -d "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "epserve-image: $out is up to date"
  exit 0
fi
rm -rf "$out" "$stamp"
mkdir -p "$out/opt"

# The desktop module is there for java.beans (template engine and JSON binding); its X11, sound and
# splash-screen libraries are left out, so the runtime needs nothing beyond glibc.
"$jdk/bin/jlink" --add-modules "$modules" --strip-debug --no-man-pages --no-header-files --compress=zip-6 \
  --exclude-files='**/lib/libawt_xawt.so,**/lib/libjawt.so,**/lib/libjsound.so,**/lib/libsplashscreen.so' \
  --output "$out/opt/java" 2>&1 | grep -v 'Using incubator modules' || true
[ -x "$out/opt/java/bin/java" ] || { echo "epserve-image: jlink failed" >&2; exit 1; }
# jlink links the legal notices of one module to another's; layers get plain files.
find "$out/opt/java" -type l | while read -r link; do
  cp --remove-destination "$(readlink -f "$link")" "$link"
done

# Every ELF file's libraries outside the runtime, and the program interpreter itself.
libs=$(find "$out/opt/java" -type f \( -name '*.so' -o -perm -u+x \) -print0 \
  | { xargs -0 ldd 2>/dev/null || true; } | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | sort -u)
# glibc loads libgcc_s on demand (thread cancellation and unwinding); a JVM thread may need it.
gcc_s=$("$(command -v ldconfig || echo /sbin/ldconfig)" -p | awk '/libgcc_s\.so\.1 \(libc6,x86-64\)/ && !found {print $NF; found = 1}')
for lib in $libs $gcc_s; do
  case "$lib" in "$out"/*) continue ;; esac
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done
[ -f "$out/lib64/ld-linux-x86-64.so.2" ] || [ -n "$(ls "$out"/lib*/ld-linux* 2>/dev/null)" ] \
  || { echo "epserve-image: no program interpreter found by ldd" >&2; exit 1; }

mkdir -p "$out/etc" "$out/tmp" "$out/home/epserve" "$out/var/cache/epserve"
printf 'root:x:0:0:root:/root:/sbin/nologin\nepserve:x:65532:65532:epserve:/home/epserve:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nepserve:x:65532:\n' >"$out/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
echo "$want" >"$stamp"
echo "epserve-image: runtime and libraries in $out ($(du -sh "$out" | cut -f1))"
