use super::Lru;

#[test]
fn evicts_least_recently_used() {
    let mut lru = Lru::new(2);
    lru.put("a", 1);
    lru.put("b", 2);
    assert_eq!(lru.get("a"), Some(1));
    lru.put("c", 3);
    assert_eq!(lru.len(), 2);
    assert_eq!(lru.get("b"), None, "b was the least recently used");
    assert_eq!(lru.get("a"), Some(1));
    assert_eq!(lru.get("c"), Some(3));
}

#[test]
fn replacing_a_key_keeps_one_entry() {
    let mut lru = Lru::new(2);
    lru.put("a", 1);
    lru.put("a", 2);
    lru.put("b", 3);
    assert_eq!(lru.len(), 2);
    assert_eq!(lru.get("a"), Some(2));
    assert_eq!(lru.get("b"), Some(3));
}

#[test]
fn zero_capacity_caches_nothing() {
    let mut lru = Lru::new(0);
    lru.put("a", 1);
    assert_eq!(lru.get("a"), None);
    assert_eq!(lru.len(), 0);
}
