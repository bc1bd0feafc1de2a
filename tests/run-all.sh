#!/usr/bin/env bash
# The one test command: installs the e2e peers (fast when already there),
# then format check, clippy with warnings denied, builds every binary (the
# e2e tests spawn target/debug/pnpr, which `cargo test` alone does not build)
# and runs every test. Extra arguments are appended to `cargo test --workspace`,
# e.g. a name filter and test-binary flags:
#   tests/run-all.sh private_packages -- --nocapture
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }

# A first build (a clean clone, as in CI) gains nothing from incremental
# state and pays for writing it: every workspace crate is built three ways
# (clippy, lib, tests). Later runs keep cargo's default.
if [ ! -d "${CARGO_TARGET_DIR:-target}/debug" ] && [ -z "${CARGO_INCREMENTAL:-}" ]; then
  export CARGO_INCREMENTAL=0
fi

step "tests/setup.sh --no-corpus"
tests/setup.sh --no-corpus

# The real-world corpus build waits on the network and Verdaccio, the build
# below on the CPU: run them side by side (minutes saved on a clean clone).
# It runs in its own session so a failed step can stop all of it.
mkdir -p target
corpus_log="$ROOT/target/build-real-world.log"
step "tests/build-real-world.sh (in the background, log: $corpus_log)"
setsid tests/build-real-world.sh > "$corpus_log" 2>&1 < /dev/null &
corpus_pid=$!
trap 'kill -- -"$corpus_pid" 2>/dev/null || true' EXIT

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace --bins"
cargo build --workspace --bins

step "waiting for tests/build-real-world.sh"
corpus_rc=0
wait "$corpus_pid" || corpus_rc=$?
trap - EXIT
cat "$corpus_log" >&2
if [ "$corpus_rc" != 0 ]; then
  echo "tests/build-real-world.sh failed (exit $corpus_rc)" >&2
  exit "$corpus_rc"
fi

step "cargo test --workspace $*"
cargo test --workspace "$@"
