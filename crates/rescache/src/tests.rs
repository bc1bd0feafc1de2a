use super::*;

fn alias(u: &str, c: &str) -> Descriptor {
    Descriptor::Alias {
        uplink: u.into(),
        credential_digest: c.into(),
    }
}

#[test]
fn public_candidates_serve_everyone_private_only_gated_callers() {
    let mut cache = CandidateCache::new(b"0123456789abcdef".to_vec(), Duration::from_secs(60));
    cache.store("k", Footprint::new(), "public", 1);
    assert_eq!(cache.lookup("k", |_| false), Some("public"));

    let mut cache = CandidateCache::new(b"0123456789abcdef".to_vec(), Duration::from_secs(60));
    let fp: Footprint = [alias("corp", "d1")].into_iter().collect();
    cache.store("k", fp, "private", 1);
    assert_eq!(cache.lookup("k", |_| false), None);
    assert_eq!(
        cache.lookup("k", |d| d == &alias("corp", "d1")),
        Some("private")
    );
    // Rotated credential: the gate sees a different digest and fails.
    assert_eq!(cache.lookup("k", |d| d == &alias("corp", "d2")), None);
}

#[test]
fn same_footprint_replaces_and_bounds_evict_private_first() {
    let mut cache = CandidateCache::new(b"0123456789abcdef".to_vec(), Duration::from_secs(60));
    cache.store("k", Footprint::new(), 0, 1);
    for i in 0..20 {
        let fp: Footprint = [alias("corp", &format!("d{i}"))].into_iter().collect();
        cache.store("k", fp, i + 1, 1);
    }
    assert_eq!(cache.len(), PER_KEY);
    // The public candidate survived the private churn.
    assert_eq!(cache.lookup("k", |_| false), Some(0));
    let fp: Footprint = [alias("corp", "d19")].into_iter().collect();
    cache.store("k", fp, 99, 1);
    assert_eq!(cache.len(), PER_KEY);
    // Same footprint replaced in place.
    let mut only_private =
        CandidateCache::new(b"0123456789abcdef".to_vec(), Duration::from_secs(60));
    let fp: Footprint = [alias("corp", "d")].into_iter().collect();
    only_private.store("p", fp.clone(), 1, 1);
    only_private.store("p", fp, 2, 1);
    assert_eq!(only_private.len(), 1);
    assert_eq!(only_private.lookup("p", |_| true), Some(2));
}

#[test]
fn total_bound_and_ttl() {
    let mut cache = CandidateCache::new(b"0123456789abcdef".to_vec(), Duration::from_secs(60));
    for i in 0..(TOTAL + 10) {
        cache.store(&format!("k{i}"), Footprint::new(), i, 1);
    }
    assert_eq!(cache.len(), TOTAL);
    let mut cache = CandidateCache::new(b"s".repeat(16), Duration::from_millis(10));
    cache.store("k", Footprint::new(), 1, 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(cache.lookup("k", |_| true), None);
    assert!(cache.is_empty());
}

#[test]
fn digests_are_stable_and_keyed() {
    let fp: Footprint = [
        alias("corp", "d"),
        Descriptor::Package {
            name: "@a/b".into(),
        },
    ]
    .into_iter()
    .collect();
    let a = footprint_digest(b"0123456789abcdef", &fp).unwrap();
    assert_eq!(a, footprint_digest(b"0123456789abcdef", &fp).unwrap());
    assert_ne!(a, footprint_digest(b"fedcba9876543210", &fp).unwrap());
    assert_eq!(
        footprint_digest(b"0123456789abcdef", &Footprint::new()),
        None
    );
    let k1 = base_key(&serde_json::json!({"b": 1, "a": {"y": 2, "x": 1}}));
    let k2 = base_key(&serde_json::json!({"a": {"x": 1, "y": 2}, "b": 1}));
    assert_eq!(k1, k2);
    assert_ne!(k1, base_key(&serde_json::json!({"a": 1})));
}

#[test]
fn hmac_matches_rfc4231_case_1() {
    assert_eq!(
        hmac_hex(&[0x0bu8; 20], b"Hi There"),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
}

#[test]
fn descriptor_ids_depend_on_secret_and_credential() {
    let a = descriptor_id(b"0123456789abcdef", &alias("corp", "one"));
    let b = descriptor_id(b"0123456789abcdef", &alias("corp", "two"));
    let c = descriptor_id(b"fedcba9876543210", &alias("corp", "one"));
    assert_eq!(a.len(), 64);
    assert_ne!(a, b);
    assert_ne!(a, c);
}

#[test]
fn byte_budget_evicts_private_first_and_refuses_oversized_values() {
    let mut cache = CandidateCache::new(b"0123456789abcdef".to_vec(), Duration::from_secs(60))
        .with_max_bytes(100);
    cache.store("public", Footprint::new(), 0, 40);
    let mut fp = Footprint::new();
    fp.insert(Descriptor::Package { name: "p".into() });
    cache.store("private", fp, 1, 40);
    assert_eq!(cache.bytes(), 80);
    // Over budget: the private candidate goes, the public one stays.
    cache.store("other", Footprint::new(), 2, 40);
    assert!(cache.bytes() <= 100, "{}", cache.bytes());
    assert_eq!(cache.lookup("public", |_| true), Some(0));
    assert_eq!(cache.lookup("private", |_| true), None);
    // Heavier than the whole budget: never kept.
    cache.store("huge", Footprint::new(), 3, 101);
    assert_eq!(cache.lookup("huge", |_| true), None);
    assert!(cache.bytes() <= 100);
}

#[test]
fn clear_drops_every_candidate_and_its_weight() {
    let mut cache = CandidateCache::new(b"0123456789abcdef".to_vec(), Duration::from_secs(60));
    cache.store("k", Footprint::new(), 1, 10);
    let fp: Footprint = [alias("corp", "d")].into_iter().collect();
    cache.store("p", fp, 2, 20);
    assert_eq!((cache.len(), cache.bytes()), (2, 30));
    cache.clear();
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
    assert_eq!(cache.lookup("k", |_| true), None);
    // Still usable afterwards.
    cache.store("k", Footprint::new(), 3, 5);
    assert_eq!(cache.lookup("k", |_| false), Some(3));
}
