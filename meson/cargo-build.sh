#!/bin/sh
# Builds mugge's Rust crates with cargo for meson and hands meson the two artifacts it installs.
#   cargo-build.sh <cargo> <workspace> <target-dir> <profile: debug|release> <outdir>
# Cargo tracks its own inputs, so meson runs this on every build and cargo decides what to do.
# The plugin is copied under the name PipeWire loads (libspa-mugge.so; cargo says libspa_mugge.so).
set -eu
cargo=$1 workspace=$2 target=$3 profile=$4 outdir=$5

if [ "$profile" = release ]; then
    set -- --release
else
    set --
fi
"$cargo" build "$@" --manifest-path "$workspace/Cargo.toml" --target-dir "$target" \
    -p mugge-controller -p mugge-spa

cp "$target/$profile/mugge" "$outdir/mugge.tmp"
mv "$outdir/mugge.tmp" "$outdir/mugge"
cp "$target/$profile/libspa_mugge.so" "$outdir/libspa-mugge.so.tmp"
mv "$outdir/libspa-mugge.so.tmp" "$outdir/libspa-mugge.so"
