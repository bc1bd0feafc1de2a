//! Packument look-ahead: while the breadth-first expansion waits for one
//! level's packuments, the dependencies of each arriving document's
//! `latest` version are requested ahead through
//! [`MetadataSource::prefetch`], so later levels find their documents
//! already fetched instead of paying one slowest-document wait per level
//! (on a cold server a level waits for its largest packument upstream).
//!
//! Invariants: look-ahead never changes what the resolution reads or picks.
//! It only warms the source; the resolver still asks
//! [`MetadataSource::packument`] for every name it uses, so access checks
//! and recorded reads are those of a resolution without it, and a failed
//! look-ahead is dropped (the real read fails or succeeds on its own).
//! Look-ahead requests per resolution are bounded linearly by the names the
//! resolution itself requests ([`BASE_BUDGET`] + [`PER_REQUESTED`] each),
//! at most `width` at a time, and nothing outlives the resolution.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;

use crate::pick::{parse_spec, Wanted};
use crate::MetadataSource;

/// Look-ahead requests allowed before the resolution requested anything.
const BASE_BUDGET: usize = 256;
/// Further look-ahead requests allowed per name the resolution requests.
const PER_REQUESTED: usize = 2;

/// The version of `doc` a `spec` most likely resolves to: `latest` when it
/// satisfies the range (pnpm prefers it), else the highest version in the
/// range; a dist-tag names its version; anything else falls back to `latest`.
/// A guess only: a wrong one costs a wasted fetch, never a different tree.
fn likely_version<'d>(doc: &'d Value, spec: Option<&str>) -> Option<&'d Value> {
    let versions = doc.get("versions")?.as_object()?;
    let tag = |t: &str| {
        doc.get("dist-tags")?
            .get(t)?
            .as_str()
            .and_then(|v| versions.get(v))
    };
    let latest = tag("latest");
    let Some(spec) = spec.filter(|s| !s.is_empty()) else {
        return latest;
    };
    let Ok(range) = nodejs_semver::Range::parse(spec) else {
        return tag(spec).or(latest);
    };
    let satisfies = |v: &str| nodejs_semver::Version::parse(v).is_ok_and(|v| range.satisfies(&v));
    if let Some(l) = doc.pointer("/dist-tags/latest").and_then(Value::as_str) {
        if satisfies(l) {
            return versions.get(l);
        }
    }
    versions
        .keys()
        .filter_map(|v| Some((nodejs_semver::Version::parse(v).ok()?, v)))
        .filter(|(parsed, _)| range.satisfies(parsed))
        .max_by(|a, b| a.0.cmp(&b.0))
        .and_then(|(_, v)| versions.get(v))
        .or(latest)
}

/// The registry dependencies (name, spec) of the version of `doc` that
/// `spec` most likely picks; git, file, link, workspace and URL specs are
/// not registry reads and are skipped.
pub(crate) fn likely_dependencies(doc: &Value, spec: Option<&str>) -> Vec<(String, String)> {
    let Some(manifest) = likely_version(doc, spec) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in ["dependencies", "optionalDependencies", "peerDependencies"] {
        let Some(deps) = manifest.get(field).and_then(Value::as_object) else {
            continue;
        };
        for (alias, spec) in deps {
            let spec = spec.as_str().unwrap_or_default();
            if spec.contains('/') && !spec.starts_with("npm:") {
                continue; // GitHub shorthand, URL or path
            }
            if let Some(Wanted::Registry { name, spec }) = parse_spec(alias, spec) {
                out.push((name, spec));
            }
        }
    }
    out
}

/// Documents being fetched ahead of the resolution, and what is queued.
pub(crate) struct Lookahead<'a> {
    source: &'a dyn MetadataSource,
    inflight: FuturesUnordered<BoxFuture<'a, Option<Arc<Value>>>>,
    queued: VecDeque<String>,
    /// Every name queued, started or requested by the resolution itself.
    seen: HashSet<String>,
    /// Names the resolution requested itself: dropped from the queue.
    requested: HashSet<String>,
    /// The first spec each name was wanted with (by the resolution or by a
    /// document's dependencies): which version's dependencies to look up.
    specs: HashMap<String, String>,
    started: usize,
    budget: usize,
    width: usize,
}

impl<'a> Lookahead<'a> {
    pub(crate) fn new(source: &'a dyn MetadataSource, width: usize) -> Self {
        Lookahead {
            source,
            inflight: FuturesUnordered::new(),
            queued: VecDeque::new(),
            seen: HashSet::new(),
            requested: HashSet::new(),
            specs: HashMap::new(),
            started: 0,
            budget: BASE_BUDGET,
            width: width.max(1),
        }
    }

    /// The resolution itself requests `name`: never look it up ahead again,
    /// and allow [`PER_REQUESTED`] more look-ahead requests.
    pub(crate) fn requested(&mut self, name: &str) {
        self.seen.insert(name.to_string());
        self.requested.insert(name.to_string());
        self.budget = self.budget.saturating_add(PER_REQUESTED);
    }

    /// The resolution wants `name` with `spec` (kept if it is the first).
    pub(crate) fn hint(&mut self, name: &str, spec: &str) {
        if !self.specs.contains_key(name) {
            self.specs.insert(name.to_string(), spec.to_string());
        }
    }

    /// Queues the dependencies, not seen yet, of the version of `doc` its
    /// wanted spec most likely picks.
    pub(crate) fn offer(&mut self, doc: &Value) {
        let spec = doc
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| self.specs.get(n));
        for (name, spec) in likely_dependencies(doc, spec.map(String::as_str)) {
            self.hint(&name, &spec);
            if !self.seen.contains(&name) {
                self.seen.insert(name.clone());
                self.queued.push_back(name);
            }
        }
    }

    /// Runs `fut` to completion while the look-ahead makes progress.
    pub(crate) async fn alongside<F: Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(v);
            }
            self.poll_inflight(cx);
            Poll::Pending
        })
        .await
    }

    fn fill(&mut self) {
        while self.inflight.len() < self.width && self.started < self.budget {
            let Some(name) = self.queued.pop_front() else {
                return;
            };
            if self.requested.contains(&name) {
                continue;
            }
            self.started += 1;
            let source = self.source;
            self.inflight
                .push(Box::pin(async move { source.prefetch(&name).await }));
        }
    }

    fn poll_inflight(&mut self, cx: &mut Context<'_>) {
        loop {
            self.fill();
            match self.inflight.poll_next_unpin(cx) {
                Poll::Ready(Some(Some(doc))) => self.offer(&doc),
                Poll::Ready(Some(None)) => {}
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn started(&self) -> usize {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dependencies_come_from_the_version_the_spec_likely_picks() {
        let doc = json!({
            "name": "x",
            "dist-tags": {"latest": "2.0.0", "next": "3.0.0-rc.1"},
            "versions": {
                "1.0.0": {"dependencies": {"old": "^1"}},
                "1.5.0": {"dependencies": {"mid": "^1"}},
                "2.0.0": {
                    "dependencies": {"a": "^1", "alias": "npm:@s/real@^2", "git": "github:x/y",
                                     "short": "x/y", "file": "file:../z", "bare": "npm:plain"},
                    "optionalDependencies": {"b": "latest"},
                    "peerDependencies": {"c": "*", "w": "workspace:*"}
                },
                "3.0.0-rc.1": {"dependencies": {"rc": "1"}}
            }
        });
        let names = |spec: Option<&str>| {
            let mut n: Vec<String> = likely_dependencies(&doc, spec)
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(None), ["@s/real", "a", "b", "c", "plain"]);
        assert_eq!(names(Some("^2.0.0")), names(None));
        assert_eq!(names(Some("^1.0.0")), ["mid"]);
        assert_eq!(names(Some("1.0.0")), ["old"]);
        assert_eq!(names(Some("next")), ["rc"]);
        assert_eq!(names(Some("^9")), names(None));
        assert!(likely_dependencies(&json!({"versions": {}}), None).is_empty());
    }

    struct Chain;
    impl MetadataSource for Chain {
        fn packument<'a>(
            &'a self,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Arc<Value>, crate::ResolveError>> {
            Box::pin(async move { Err(crate::ResolveError::NotFound(name.to_string())) })
        }
        /// `pN` depends on `pN+1`, without end: only the budget stops it.
        fn prefetch<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<Arc<Value>>> {
            Box::pin(async move {
                let n: usize = name.strip_prefix('p')?.parse().ok()?;
                let next = format!("p{}", n + 1);
                Some(Arc::new(json!({
                    "dist-tags": {"latest": "1.0.0"},
                    "versions": {"1.0.0": {"dependencies": {next: "^1"}}}
                })))
            })
        }
    }

    #[tokio::test]
    async fn an_endless_chain_stops_at_the_budget() {
        let source = Chain;
        let mut ahead = Lookahead::new(&source, 4);
        ahead.requested("p0");
        ahead.offer(&json!({"dist-tags": {"latest": "1"}, "versions": {"1": {"dependencies": {"p1": "1"}}}}));
        // Let the look-ahead run until it has nothing left it may start.
        for _ in 0..1000 {
            ahead.alongside(tokio::task::yield_now()).await;
        }
        assert_eq!(ahead.started(), BASE_BUDGET + PER_REQUESTED);
        assert!(ahead.inflight.is_empty());
    }
}
