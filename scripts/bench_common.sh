# bench_common.sh — shared steps of the scripts/bench-*.sh table scripts
# (sourced, not run): the release build, the PyTorch peer run and writing a
# section of benchmarks/README.md.

# bench_build BUILDDIR TARGET...: configures BUILDDIR for release (set up if
# missing) and builds the targets, quietly. With NO_BUILD=1 it only checks
# that the targets are there: binaries built elsewhere, run on a machine
# without the dev packages (scripts/bench-scaling.sh on a lent many-core box).
bench_build() {
    local builddir="$1"
    shift
    if [ -n "${NO_BUILD:-}" ]; then
        local t
        for t in "$@"; do
            [ -x "$builddir/$t" ] || { echo "NO_BUILD: $builddir/$t is missing" >&2; return 1; }
        done
        return 0
    fi
    if [ ! -f "$builddir/build.ninja" ]; then
        meson setup "$builddir" --buildtype=release >/dev/null
    else
        meson configure "$builddir" -Dbuildtype=release -Db_ndebug=if-release >/dev/null
    fi
    ninja -C "$builddir" "$@" >/dev/null
}

# bench_peer OUT SCRIPT ARG...: runs the PyTorch peer SCRIPT with
# /usr/bin/python3 (NB_PEER_PYTHON overrides it: Debian's is PyTorch 1.13,
# the peer the issues name), its output shown and kept in OUT; when torch
# cannot be imported, says so and leaves OUT empty.
bench_peer() {
    local out="$1" py="${NB_PEER_PYTHON:-/usr/bin/python3}"
    shift
    if "$py" -c 'import torch' 2>/dev/null; then
        "$py" "$@" | tee "$out"
    else
        echo "peer skipped: $py cannot import torch (apt-get install python3-torch)"
        : >"$out"
    fi
}

# bench_write_section HEADING SECTION_FILE README WRITE: prints the Markdown
# section in SECTION_FILE (after an empty line); with WRITE=1 it replaces the
# "## HEADING" section of README with it (appended where README has none;
# README created if missing).
bench_write_section() {
    python3 - "$@" <<'EOF'
import os, re, sys

heading, section_f, readme, write = sys.argv[1:5]
section = open(section_f).read()
print()
print(section)
if write != "1":
    sys.exit(0)
text = open(readme).read() if os.path.exists(readme) else "# Benchmarks\n\nEach section is written by the command it names.\n"
m = re.search(r"^## " + re.escape(heading) + r"\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
if m:
    text = text[:m.start()] + section + ("\n" if text[m.end():] else "") + text[m.end():]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(readme, "w").write(text)
print(f"written: {readme}")
EOF
}

# bench_probe BUILDDIR OUT: each CPU's FMA rate now (benchmarks/fma_peak:
# "probe cpu=.. gflops=..", then "probe_summary .. slow_cpus=N"), shown and
# kept in OUT. The scripts run it before and after their measurements.
bench_probe() {
    "$1/benchmarks/fma_peak" | tee "$2"
}

# bench_probe_text BEFORE AFTER: one Markdown sentence on the probes in the
# files BEFORE and AFTER (bench_probe's output), with a warning when a CPU
# ran under 0.9 of the fastest in either.
bench_probe_text() {
    awk '
        FNR == 1 { f++ }
        /^probe cpu=/ { sub(/.*gflops=/, ""); v[f] = v[f] (v[f] == "" ? "" : "/") $0 }
        /^probe_summary/ { for (i = 1; i <= NF; i++) if ($i ~ /^slow_cpus=/) { split($i, a, "="); slow += a[2] }
                           for (i = 1; i <= NF; i++) if ($i ~ /^max_gflops=/) { split($i, a, "="); if (a[2] > peak) peak = a[2] } }
        END {
            printf "FMA probe (`benchmarks/fma_peak`, each CPU alone, GFLOP/s): %s before, %s after", \
                   (v[1] == "" ? "–" : v[1]), (v[2] == "" ? "–" : v[2])
            if (slow > 0) printf "; **a CPU ran under 0.9 of the fastest (its core shared with another tenant): this run is no check of the targets, repeat it**"
            printf ".\n"
        }' "$1" "$2"
}

# bench_probe_peak BEFORE AFTER: the fastest CPU's FMA rate (GFLOP/s) in
# either probe, or 0.
bench_probe_peak() {
    awk '/^probe_summary/ { for (i = 1; i <= NF; i++) if ($i ~ /^max_gflops=/) { split($i, a, "="); if (a[2] > p) p = a[2] } }
         END { printf "%.1f\n", p + 0 }' "$1" "$2"
}
