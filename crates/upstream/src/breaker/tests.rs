use super::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn opens_after_max_fails_and_recovers_through_one_trial() {
    let b = Breaker::new(2, T);
    let t0 = Instant::now();
    b.try_acquire(t0)
        .expect("closed")
        .finish(Outcome::Failure, t0);
    assert!(b.available(t0));
    b.try_acquire(t0)
        .expect("closed")
        .finish(Outcome::Failure, t0);
    assert!(!b.available(t0));
    assert!(b.try_acquire(t0 + T / 2).is_none());

    let t1 = t0 + T;
    assert!(b.available(t1));
    let trial = b.try_acquire(t1).expect("half-open trial");
    assert!(b.try_acquire(t1).is_none(), "only one trial at a time");
    trial.finish(Outcome::Success, t1);
    assert!(b.available(t1));
    assert!(b.try_acquire(t1).is_some());
}

#[test]
fn failed_trial_reopens() {
    let b = Breaker::new(1, T);
    let t0 = Instant::now();
    b.try_acquire(t0)
        .expect("closed")
        .finish(Outcome::Failure, t0);
    let t1 = t0 + T;
    b.try_acquire(t1)
        .expect("trial")
        .finish(Outcome::Failure, t1);
    assert!(b.try_acquire(t1 + T / 2).is_none());
    assert!(b.try_acquire(t1 + T).is_some());
}

#[test]
fn dropped_or_neutral_trial_frees_the_slot() {
    let b = Breaker::new(1, T);
    let t0 = Instant::now();
    b.try_acquire(t0)
        .expect("closed")
        .finish(Outcome::Failure, t0);
    let t1 = t0 + T;
    drop(b.try_acquire(t1).expect("trial"));
    b.try_acquire(t1)
        .expect("slot freed")
        .finish(Outcome::Neutral, t1);
    assert!(b.try_acquire(t1).is_some(), "still half-open, slot free");
}

#[test]
fn success_resets_the_count_and_zero_disables() {
    let b = Breaker::new(2, T);
    let t0 = Instant::now();
    b.try_acquire(t0).expect("c").finish(Outcome::Failure, t0);
    b.try_acquire(t0).expect("c").finish(Outcome::Success, t0);
    b.try_acquire(t0).expect("c").finish(Outcome::Failure, t0);
    assert!(b.available(t0));

    let off = Breaker::new(0, T);
    for _ in 0..5 {
        off.try_acquire(t0)
            .expect("disabled")
            .finish(Outcome::Failure, t0);
    }
    assert!(off.available(t0));
}
