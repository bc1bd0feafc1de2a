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

step "tests/setup.sh"
tests/setup.sh

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace --bins"
cargo build --workspace --bins

step "cargo test --workspace $*"
cargo test --workspace "$@"
