use super::*;

fn limiter(per_user: u32, per_address: u32) -> LoginLimiter {
    LoginLimiter::new(LoginLimits {
        per_user,
        per_address,
        window: Duration::from_secs(60),
    })
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("ip"))
}

#[test]
fn per_user_budget_then_retry_after() {
    let l = limiter(3, 100);
    let t0 = Instant::now();
    for i in 0..3 {
        let _ = l
            .begin_at(Some("alice"), ip("192.0.2.1"), t0 + Duration::from_secs(i))
            .expect("within budget");
    }
    let refused = l
        .begin_at(Some("alice"), ip("192.0.2.9"), t0 + Duration::from_secs(10))
        .expect_err("over budget from any address");
    assert_eq!(refused.retry_after, Duration::from_secs(50));
    assert_eq!(refused.retry_after_secs(), 50);
    // Other users are unaffected.
    let _ = l
        .begin_at(Some("bob"), ip("192.0.2.9"), t0 + Duration::from_secs(10))
        .expect("bob has his own budget");
    // The window closes.
    let _ = l
        .begin_at(Some("alice"), ip("192.0.2.1"), t0 + Duration::from_secs(60))
        .expect("new window");
}

#[test]
fn per_address_budget_across_user_names() {
    let l = limiter(100, 4);
    let t0 = Instant::now();
    for i in 0..4 {
        let _ = l
            .begin_at(Some(&format!("u{i}")), ip("198.51.100.7"), t0)
            .expect("within budget");
    }
    assert!(l.begin_at(Some("fresh"), ip("198.51.100.7"), t0).is_err());
    // Same address written as IPv4-mapped IPv6 is the same key.
    assert!(l
        .begin_at(Some("fresh"), ip("::ffff:198.51.100.7"), t0)
        .is_err());
    // Another address is fine.
    let _ = l
        .begin_at(Some("fresh"), ip("198.51.100.8"), t0)
        .expect("other address");
}

#[test]
fn ipv6_counts_per_slash_64() {
    let l = limiter(100, 2);
    let t0 = Instant::now();
    let _ = l.begin_at(None, ip("2001:db8:1:2::1"), t0).expect("1");
    let _ = l.begin_at(None, ip("2001:db8:1:2::ffff"), t0).expect("2");
    assert!(
        l.begin_at(None, ip("2001:db8:1:2:dead:beef::"), t0)
            .is_err(),
        "rotating inside one /64 gains nothing"
    );
    let _ = l
        .begin_at(None, ip("2001:db8:1:3::1"), t0)
        .expect("other /64");
}

#[test]
fn success_gives_the_attempt_back() {
    let l = limiter(2, 2);
    let t0 = Instant::now();
    for _ in 0..10 {
        let a = l
            .begin_at(Some("alice"), ip("192.0.2.1"), t0)
            .expect("successes never exhaust the budget");
        l.succeeded(a);
    }
    let _failed = l.begin_at(Some("alice"), ip("192.0.2.1"), t0).expect("1");
    let _failed = l.begin_at(Some("alice"), ip("192.0.2.1"), t0).expect("2");
    assert!(l.begin_at(Some("alice"), ip("192.0.2.1"), t0).is_err());
}

#[test]
fn concurrent_attempts_count_before_their_outcome() {
    // Three checks in flight at once, none settled yet: the fourth is refused.
    let l = limiter(3, 100);
    let t0 = Instant::now();
    let in_flight: Vec<Attempt> = (0..3)
        .map(|_| l.begin_at(Some("alice"), None, t0).expect("admitted"))
        .collect();
    assert!(l.begin_at(Some("alice"), None, t0).is_err());
    drop(in_flight);
}

#[test]
fn refund_after_window_change_does_not_credit_the_new_window() {
    let l = limiter(1, 100);
    let t0 = Instant::now();
    let old = l.begin_at(Some("alice"), None, t0).expect("1");
    let _new = l
        .begin_at(Some("alice"), None, t0 + Duration::from_secs(61))
        .expect("new window");
    l.succeeded(old);
    assert!(l
        .begin_at(Some("alice"), None, t0 + Duration::from_secs(62))
        .is_err());
}

#[test]
fn unknown_user_and_address_are_not_limited_by_absent_keys() {
    let l = limiter(1, 1);
    let t0 = Instant::now();
    for _ in 0..5 {
        let a = l.begin_at(None, None, t0).expect("nothing to count");
        drop(a);
    }
}

#[test]
fn tables_are_bounded_and_fail_closed_when_full() {
    let l = limiter(5, u32::MAX);
    let t0 = Instant::now();
    {
        let mut t = l.tables.lock().expect("lock");
        for i in 0..MAX_TRACKED {
            let _ = t.users.count(user_key(&format!("u{i}")), t0);
        }
    }
    assert!(
        l.begin_at(Some("newcomer"), None, t0).is_err(),
        "full of live entries: refuse"
    );
    // Known keys still work.
    let _ = l.begin_at(Some("u1"), None, t0).expect("known key");
    // Once the windows close the table is pruned.
    let _ = l
        .begin_at(Some("newcomer"), None, t0 + Duration::from_secs(61))
        .expect("pruned");
    assert!(l.tables.lock().expect("lock").users.slots.len() <= 2);
}

#[test]
fn zero_budgets_are_raised_to_one() {
    let l = LoginLimiter::new(LoginLimits {
        per_user: 0,
        per_address: 0,
        window: Duration::ZERO,
    });
    assert_eq!(l.limits().per_user, 1);
    assert_eq!(l.limits().window, Duration::from_secs(1));
    let _ = l.begin(Some("a"), None).expect("one attempt allowed");
}

#[test]
fn retry_after_rounds_up_and_is_at_least_one_second() {
    let t = Throttled {
        retry_after: Duration::from_millis(1500),
    };
    assert_eq!(t.retry_after_secs(), 2);
    let t = Throttled {
        retry_after: Duration::ZERO,
    };
    assert_eq!(t.retry_after_secs(), 1);
}
