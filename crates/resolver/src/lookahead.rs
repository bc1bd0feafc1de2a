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

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;

use crate::MetadataSource;

/// Look-ahead requests allowed before the resolution requested anything.
const BASE_BUDGET: usize = 256;
/// Further look-ahead requests allowed per name the resolution requests.
const PER_REQUESTED: usize = 2;

/// The names a document's `latest` version depends on, as registry names.
pub(crate) fn latest_dependency_names(doc: &Value) -> Vec<String> {
    let Some(latest) = doc
        .pointer("/dist-tags/latest")
        .and_then(Value::as_str)
        .and_then(|v| doc.get("versions")?.get(v))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in ["dependencies", "optionalDependencies", "peerDependencies"] {
        let Some(deps) = latest.get(field).and_then(Value::as_object) else {
            continue;
        };
        for (alias, spec) in deps {
            if let Some(name) = registry_name(alias, spec.as_str().unwrap_or_default()) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The registry name a dependency entry fetches, when it names one: an
/// `npm:` alias's target, or the key for a range or tag; `None` for git,
/// file, link, workspace, URL and other non-registry specs.
fn registry_name<'s>(alias: &'s str, spec: &'s str) -> Option<&'s str> {
    if let Some(rest) = spec.strip_prefix("npm:") {
        let at = rest.get(1..)?.find('@').map(|i| i + 1);
        return Some(at.map_or(rest, |i| &rest[..i])).filter(|n| !n.is_empty());
    }
    (!spec.contains(':') && !spec.contains('/')).then_some(alias)
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

    /// Queues the dependencies of `doc`'s `latest` version not seen yet.
    pub(crate) fn offer(&mut self, doc: &Value) {
        for name in latest_dependency_names(doc) {
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
    fn names_come_from_the_latest_version_only_for_registry_specs() {
        let doc = json!({
            "dist-tags": {"latest": "2.0.0"},
            "versions": {
                "1.0.0": {"dependencies": {"old": "^1"}},
                "2.0.0": {
                    "dependencies": {"a": "^1", "alias": "npm:@s/real@^2", "git": "github:x/y",
                                     "short": "x/y", "file": "file:../z", "bare": "npm:plain"},
                    "optionalDependencies": {"b": "latest"},
                    "peerDependencies": {"c": "*", "w": "workspace:*"}
                }
            }
        });
        let mut names = latest_dependency_names(&doc);
        names.sort();
        assert_eq!(names, ["@s/real", "a", "b", "c", "plain"]);
        assert!(latest_dependency_names(&json!({"versions": {}})).is_empty());
        assert!(latest_dependency_names(
            &json!({"dist-tags": {"latest": "9.9.9"}, "versions": {}})
        )
        .is_empty());
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
