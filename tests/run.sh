#!/usr/bin/env bash
# The one command that runs every test: installs what the end-to-end tests
# need (Debian's cloud-init, a Python venv with boto3 and moto), builds the
# WebAssembly plugins, then runs the Rust unit and end-to-end tests with
# cargo-nextest (cargo test without it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n== %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# cloud-init for its EC2 crawler; iproute2 and iptables for `ersatz net` in
# network namespaces; openssl to verify identity signatures as users do;
# util-linux's setpriv to run a command without root.
if ! /usr/bin/python3 -c 'import cloudinit' 2>/dev/null || ! command -v iptables >/dev/null \
  || ! command -v ip >/dev/null || ! command -v openssl >/dev/null || ! command -v setpriv >/dev/null; then
  say "installing Debian's cloud-init, iproute2, iptables, openssl and util-linux"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    cloud-init iproute2 iptables openssl util-linux >/dev/null
fi

venv="$root/.venv"
# Every package the tests import, so a .venv made before one was added
# gets it too.
if ! "$venv/bin/python" -c 'import boto3, moto, google.auth, azure.identity, jwt' 2>/dev/null; then
  say "creating (or completing) the Python test environment in .venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/py/requirements.txt
fi
export ERSATZ_TEST_PYTHON="$venv/bin/python"

say "building the WebAssembly plugins: shipped (wasm32-unknown-unknown, no WASI) and test-only (wasm32-wasip2)"
for target in wasm32-unknown-unknown wasm32-wasip2; do
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
done
# One target dir for both workspaces, so shared dependencies build once.
plugin_target="$root/plugins/target"
# In plugins/, whose .cargo/config.toml names the component linker.
(cd plugins && cargo build --quiet --release --target wasm32-unknown-unknown)
cargo build --quiet --release --target wasm32-wasip2 --manifest-path tests/plugins/Cargo.toml --target-dir "$plugin_target"
say "the shipped plugins' own unit tests (native)"
(cd plugins && cargo test --quiet)

if [ "$(id -u)" = 0 ]; then
  say "building the image (a static musl binary FROM scratch, with the shipped plugins)"
  # Debian's podman builds it (the image runs no commands, so no registry or
  # container runtime is needed); musl-tools compiles the C in ring for musl.
  if ! command -v podman >/dev/null || ! command -v musl-gcc >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      podman musl-tools >/dev/null
  fi
  musl="$(uname -m)-unknown-linux-musl"
  if ! rustup target list --installed | grep -qx "$musl"; then
    rustup target add "$musl"
  fi
  core/build-image.sh --with-plugins --tag localhost/ersatz:test
  export ERSATZ_TEST_IMAGE=localhost/ersatz:test
else
  # Its test enters the mounted image with chroot, which needs root.
  say "skipped: the image build and its test need root (podman image mount, chroot)"
fi

say "Rust tests (unit + end to end)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  # nextest does not run doctests; the library's examples are tests too.
  say "documentation examples"
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast "$@"
fi
