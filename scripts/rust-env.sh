# Sourced by the dev scripts: puts a Rust toolchain on PATH or says how to get one.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "mugge: no Rust toolchain (cargo) found. Install one with rustup (https://rustup.rs)," >&2
  echo "       Debian's rustc is too old for the pipewire and zbus crates." >&2
  exit 1
fi
