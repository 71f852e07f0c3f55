# common.sh — sourced by the scripts in this folder: where the repository is,
# and how to configure a meson build directory the same way each time.

NB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# nb_setup DIR [wipe|keep] [meson options...]
# Configures DIR: a fresh `meson setup` when DIR is not a build directory yet;
# otherwise --wipe (build from scratch) or --reconfigure (keep objects).
# CI=true adds -Dwerror_ci=true; otherwise werror_ci is set back to false, so
# a directory once configured for CI does not keep -Werror by surprise.
nb_setup() {
    local dir="$1" mode="$2"
    shift 2
    local opts=("$@")
    if [ "${CI:-}" = "true" ]; then
        opts+=(-Dwerror_ci=true)
    else
        opts+=(-Dwerror_ci=false)
    fi
    if [ -f "$dir/meson-private/coredata.dat" ]; then
        if [ "$mode" = wipe ]; then
            meson setup --wipe "$dir" "${opts[@]}"
        else
            meson setup --reconfigure "$dir" "${opts[@]}"
        fi
    else
        rm -rf "$dir"
        meson setup "$dir" "${opts[@]}"
    fi
}
