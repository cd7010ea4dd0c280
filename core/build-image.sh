#!/usr/bin/env bash
# Builds the ersatz image: a static musl binary FROM scratch (core/Containerfile).
#
#   core/build-image.sh [--with-plugins] [--tag NAME]   (default tag: ersatz:latest)
#
# Needs the musl Rust target for this machine (e.g. x86_64-unknown-linux-musl) and Debian's musl-tools
# (for the C in ring), and podman or docker. With --with-plugins, the
# shipped plugins (plugins/, for wasm32-unknown-unknown) are built and put in /plugins.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=ersatz:latest
with_plugins=false
while [ $# -gt 0 ]; do
  case "$1" in
    --with-plugins) with_plugins=true ;;
    --tag) tag="$2"; shift ;;
    *) echo "usage: $0 [--with-plugins] [--tag NAME]" >&2; exit 2 ;;
  esac
  shift
done

# This machine's architecture; the image is for it.
target="$(uname -m)-unknown-linux-musl"
cargo build --release --locked --target "$target" -p ersatz-imds --bin ersatz
target_dir=${CARGO_TARGET_DIR:-target}

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$target_dir/$target/release/ersatz" "$context/ersatz"
mkdir "$context/plugins"
if $with_plugins; then
  # In plugins/, whose .cargo/config.toml names the component linker.
  (cd plugins && cargo build --release --locked --target wasm32-unknown-unknown)
  # The shipped plugins, not the template or the helper crates (nor the
  # test plugins that share this target directory).
  for dir in plugins/*/; do
    name=$(basename "$dir")
    case "$name" in template | target | bump-alloc | query) continue ;; esac
    cp "plugins/target/wasm32-unknown-unknown/release/${name//-/_}.wasm" "$context/plugins/"
  done
fi
cp core/Containerfile "$context/Containerfile"

engine=$(command -v podman || command -v docker || true)
if [ -z "$engine" ]; then
  echo "neither podman nor docker is installed" >&2
  exit 1
fi
"$engine" build --quiet --tag "$tag" "$context"
