#!/usr/bin/env bash
# check_pkgconfig.sh — checks that an installed nabla is usable the way the
# README says: installs the build directory ($1, default ./build) into a
# temporary root with `meson install --destdir`, compiles
# examples/hello_grad.c with the flags from the installed nabla.pc, runs it
# against the installed shared library and expects `tensor(4.)`.
#
# The .pc file says prefix=/usr/local (or whatever the build was configured
# with); pkg-config's --define-variable=prefix=... points it at the copy under
# the temporary root instead, so nothing outside that root is touched.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
builddir="${1:-build}"
case "$builddir" in /*) ;; *) builddir="$root/$builddir" ;; esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

meson install -C "$builddir" --destdir "$tmp/root" --quiet

prefix="$(meson introspect "$builddir" --buildoptions |
    python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))' 2>/dev/null ||
    echo /usr/local)"
staged="$tmp/root$prefix"
pc="$(find "$staged" -name nabla.pc -print -quit)"
if [ -z "$pc" ]; then
    echo "check_pkgconfig: no nabla.pc under $staged" >&2
    exit 1
fi
pcdir="$(dirname "$pc")"
libdir="$(dirname "$pcdir")"

pkgc() { PKG_CONFIG_PATH="$pcdir" pkg-config --define-variable=prefix="$staged" "$@" nabla; }
cflags="$(pkgc --cflags)"
libs="$(pkgc --libs)"
echo "check_pkgconfig: cflags: $cflags"
echo "check_pkgconfig: libs:   $libs"

# The program must see the installed headers, not the source tree's.
cp "$root/examples/hello_grad.c" "$tmp/prog.c"
# shellcheck disable=SC2086  # the flags are meant to split
cc -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$tmp/prog" "$tmp/prog.c" $cflags $libs

run_env=(env LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
# The program must run against the installed library, not the build tree's.
resolved="$("${run_env[@]}" ldd "$tmp/prog" | awk '/libnabla/ { print $3 }')"
echo "check_pkgconfig: libnabla resolved to: ${resolved:-nothing}"
case "$resolved" in
"$libdir"/libnabla*) ;;
*) echo "check_pkgconfig: expected libnabla from $libdir" >&2; exit 1 ;;
esac
out="$(cd "$tmp" && "${run_env[@]}" ./prog)"
echo "check_pkgconfig: prog printed: $out"
if [ "$out" != "tensor(4.)" ]; then
    echo "check_pkgconfig: expected 'tensor(4.)'" >&2
    exit 1
fi
echo "check_pkgconfig: ok"
