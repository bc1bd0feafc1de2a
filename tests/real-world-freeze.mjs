// Freezes a Verdaccio storage folder at a cutoff instant, so the real-world
// corpus serves the same answer whatever day the tests run.
//
// Why: pnpm 11 defaults to `minimumReleaseAge: 1440` (minutes). A version
// published within the day before the corpus build was invisible to the
// build's installs (so its tarball was never stored), but becomes eligible a
// day later and would then be picked offline and fail with a missing tarball.
// So every stored packument loses the versions (and their `time` entries)
// published after the cutoff, and a dist-tag that pointed at a dropped
// version is re-pointed the way pnpm's own publish-date filter re-points it:
// the highest kept version with the same prerelease-ness (and, for tags other
// than `latest`, the same major), non-deprecated versions first; a tag with
// no such version is removed. The result is a fixed point of pnpm's filter
// for any later `publishedBy`, so direct pnpm, pnpr and every future run see
// exactly the view the build saw.
//
// Usage: node real-world-freeze.mjs <storage-dir> <cutoff-ISO-8601>
import fs from "node:fs";
import path from "node:path";

const [storage, cutoffText] = process.argv.slice(2);
const cutoff = new Date(cutoffText);
if (!storage || Number.isNaN(cutoff.getTime())) {
  console.error("usage: real-world-freeze.mjs <storage-dir> <cutoff-ISO-8601>");
  process.exit(2);
}

// Numeric major/prerelease split of a semver string; null when it is not one.
function parse(version) {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/.exec(version);
  if (!m) return null;
  const pre = m[4] ? m[4].split(".") : [];
  return { nums: [Number(m[1]), Number(m[2]), Number(m[3])], pre };
}

// Semver precedence (a > b => positive).
function compare(a, b) {
  for (let i = 0; i < 3; i++) if (a.nums[i] !== b.nums[i]) return a.nums[i] - b.nums[i];
  if (!a.pre.length || !b.pre.length) return b.pre.length - a.pre.length;
  for (let i = 0; i < Math.max(a.pre.length, b.pre.length); i++) {
    if (a.pre[i] === undefined) return -1;
    if (b.pre[i] === undefined) return 1;
    const na = /^\d+$/.test(a.pre[i]), nb = /^\d+$/.test(b.pre[i]);
    if (na && nb && Number(a.pre[i]) !== Number(b.pre[i])) return Number(a.pre[i]) - Number(b.pre[i]);
    if (na !== nb) return na ? -1 : 1;
    if (a.pre[i] !== b.pre[i]) return a.pre[i] < b.pre[i] ? -1 : 1;
  }
  return 0;
}

function repoint(doc, tag, old) {
  const original = parse(old);
  if (!original) return undefined;
  let best;
  for (const candidate of Object.keys(doc.versions)) {
    const c = parse(candidate);
    if (!c || (c.pre.length > 0) !== (original.pre.length > 0)) continue;
    if (tag !== "latest" && c.nums[0] !== original.nums[0]) continue;
    if (!best) { best = candidate; continue; }
    const cDep = doc.versions[candidate].deprecated != null;
    const bDep = doc.versions[best].deprecated != null;
    if ((compare(c, parse(best)) > 0 && cDep === bDep) || (bDep && !cDep)) best = candidate;
  }
  return best;
}

function freeze(file) {
  const doc = JSON.parse(fs.readFileSync(file, "utf8"));
  if (!doc.versions || typeof doc.versions !== "object") return 0;
  const time = doc.time ?? {};
  let dropped = 0;
  for (const version of Object.keys(doc.versions)) {
    const published = time[version] ? new Date(time[version]) : null;
    if (published && published > cutoff) {
      delete doc.versions[version];
      delete time[version];
      dropped++;
    }
  }
  if (dropped === 0) return 0;
  const tags = doc["dist-tags"] ?? {};
  for (const [tag, version] of Object.entries(tags)) {
    if (doc.versions[version]) continue;
    const best = repoint(doc, tag, version);
    if (best) tags[tag] = best; else delete tags[tag];
  }
  fs.writeFileSync(file, JSON.stringify(doc));
  return dropped;
}

function* packuments(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const sub = path.join(dir, entry.name);
    if (entry.name.startsWith("@")) yield* packuments(sub);
    else if (fs.existsSync(path.join(sub, "package.json"))) yield path.join(sub, "package.json");
  }
}

let files = 0, versions = 0, touched = 0;
for (const file of packuments(storage)) {
  files++;
  const n = freeze(file);
  versions += n;
  if (n) touched++;
}
console.log(`froze ${files} packuments at ${cutoff.toISOString()}: dropped ${versions} versions from ${touched}`);
