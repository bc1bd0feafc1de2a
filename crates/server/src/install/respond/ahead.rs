//! Work done ahead of the response's writer on a small pool of threads,
//! handed back in job order (RFC 0008 §6): the partial groups' members are
//! compressed here, so a response uses every core instead of the writer's
//! one while the stored members are copied.
//!
//! Invariants guarded here:
//! - order: the writer receives job `i`'s output whole, before any of job
//!   `i + 1`'s (a gzip member is never interleaved with another);
//! - bounded memory: at most `lookahead` jobs are started and not yet
//!   consumed, each with at most `per_job` items buffered, whatever the
//!   number of jobs; a worker whose buffer is full waits for the writer;
//! - no deadlock: workers take jobs in job order, so the job the writer
//!   waits for is always running or done, never queued behind a blocked one;
//! - no work for nobody: once the writer drops its [`Ahead`] (the client went
//!   away, or the body is done), workers stop at their next item and start
//!   no further job; the threads are scoped, so they end with the response.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

/// How far the pool may run ahead of the writer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Threads compressing at once.
    pub workers: usize,
    /// Jobs started but not yet consumed by the writer.
    pub lookahead: usize,
    /// Items buffered per job.
    pub per_job: usize,
}

/// Where a worker puts a job's items; `false` from [`Emit::send`] means the
/// writer no longer wants them (stop the job).
pub(super) struct Emit<T> {
    tx: SyncSender<T>,
}

impl<T> Emit<T> {
    pub(super) fn send(&self, item: T) -> bool {
        self.tx.send(item).is_ok()
    }
}

type Queue<J, T> = Arc<Mutex<Receiver<(J, Emit<T>)>>>;

/// The writer's end: jobs fed in order, outputs taken in the same order.
pub(super) struct Ahead<J, T> {
    jobs: std::vec::IntoIter<J>,
    feed: Option<mpsc::Sender<(J, Emit<T>)>>,
    /// Outputs of the started jobs, oldest first.
    started: VecDeque<Receiver<T>>,
    stopped: Arc<AtomicBool>,
    bounds: Bounds,
}

/// One job's output, taken by the writer: its items in order, ending when
/// the job is done.
pub(super) struct Output<T> {
    first: Option<T>,
    rx: Receiver<T>,
}

impl<T> Iterator for Output<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.first.take().or_else(|| self.rx.recv().ok())
    }
}

impl<J: Send, T: Send> Ahead<J, T> {
    /// Starts `bounds.workers` threads in `scope` running `work` over `jobs`.
    pub(super) fn start<'scope, 'env, W>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        jobs: Vec<J>,
        bounds: Bounds,
        work: &'scope W,
    ) -> Self
    where
        J: 'scope,
        T: 'scope,
        W: Fn(J, &Emit<T>) + Sync,
    {
        let bounds = Bounds {
            workers: bounds.workers.max(1),
            lookahead: bounds.lookahead.max(1),
            per_job: bounds.per_job.max(1),
        };
        let (feed, queue) = mpsc::channel();
        let queue: Queue<J, T> = Arc::new(Mutex::new(queue));
        let stopped = Arc::new(AtomicBool::new(false));
        for _ in 0..bounds.workers.min(jobs.len()) {
            let queue = Arc::clone(&queue);
            let stopped = Arc::clone(&stopped);
            scope.spawn(move || worker(&queue, &stopped, work));
        }
        let mut ahead = Self {
            jobs: jobs.into_iter(),
            feed: Some(feed),
            started: VecDeque::new(),
            stopped,
            bounds,
        };
        ahead.top_up();
        ahead
    }

    /// Starts jobs until `lookahead` are outstanding (or none are left).
    fn top_up(&mut self) {
        while self.started.len() < self.bounds.lookahead {
            let Some(job) = self.jobs.next() else {
                self.feed = None; // no more jobs: idle workers end
                return;
            };
            let (tx, rx) = mpsc::sync_channel(self.bounds.per_job);
            let Some(feed) = &self.feed else { return };
            if feed.send((job, Emit { tx })).is_err() {
                return;
            }
            self.started.push_back(rx);
        }
    }

    /// The next job's output if it has begun (its first item is there),
    /// without waiting; `None` when it has not, or no job is left.
    pub(super) fn ready(&mut self) -> Option<Output<T>> {
        let head = self.started.front()?;
        match head.try_recv() {
            Ok(first) => Some(self.take(Some(first))),
            Err(TryRecvError::Disconnected) => Some(self.take(None)),
            Err(TryRecvError::Empty) => None,
        }
    }

    /// The next job's output, waiting for it to begin; `None` when no job
    /// is left.
    pub(super) fn next_output(&mut self) -> Option<Output<T>> {
        let head = self.started.front()?;
        let first = head.recv().ok();
        Some(self.take(first))
    }

    fn take(&mut self, first: Option<T>) -> Output<T> {
        let rx = self
            .started
            .pop_front()
            .unwrap_or_else(|| mpsc::sync_channel(0).1);
        // The job now being consumed no longer counts against the bound
        // (its items still do: at most `per_job` of them wait).
        self.top_up();
        Output { first, rx }
    }
}

impl<J, T> Drop for Ahead<J, T> {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

fn worker<J, T, W: Fn(J, &Emit<T>)>(queue: &Queue<J, T>, stopped: &AtomicBool, work: &W) {
    loop {
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((job, emit)) = next else { return };
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        work(job, &emit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    const BOUNDS: Bounds = Bounds {
        workers: 3,
        lookahead: 4,
        per_job: 2,
    };

    /// Every job's items arrive whole and in job order, whatever order the
    /// workers finish in.
    #[test]
    fn outputs_keep_job_order() {
        let work = |job: usize, emit: &Emit<(usize, usize)>| {
            // Later jobs are faster, so workers finish out of order.
            std::thread::sleep(Duration::from_millis(((40 - job) % 7) as u64));
            for part in 0..(job % 5 + 1) {
                if !emit.send((job, part)) {
                    return;
                }
            }
        };
        let got: Vec<(usize, usize)> = std::thread::scope(|s| {
            let mut ahead = Ahead::start(s, (0..40).collect(), BOUNDS, &work);
            let mut got = Vec::new();
            while let Some(out) = ahead.next_output() {
                got.extend(out);
            }
            got
        });
        let want: Vec<(usize, usize)> = (0..40)
            .flat_map(|j| (0..(j % 5 + 1)).map(move |p| (j, p)))
            .collect();
        assert_eq!(got, want);
    }

    /// However slow the writer, no more than `lookahead` jobs start ahead
    /// of it, and no job buffers more than `per_job` items.
    #[test]
    fn never_runs_further_ahead_than_its_bounds() {
        let begun = AtomicUsize::new(0);
        let emitted = AtomicUsize::new(0);
        let work = |_: usize, emit: &Emit<usize>| {
            begun.fetch_add(1, Ordering::SeqCst);
            for i in 0..10 {
                emitted.fetch_add(1, Ordering::SeqCst);
                if !emit.send(i) {
                    return;
                }
            }
        };
        std::thread::scope(|s| {
            let mut ahead = Ahead::start(s, (0..100).collect(), BOUNDS, &work);
            // The writer takes nothing: the pool fills its bounds and stops.
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(begun.load(Ordering::SeqCst), BOUNDS.workers);
            // Each started worker blocks once `per_job` items wait (it has
            // counted the item it is blocked sending).
            assert!(emitted.load(Ordering::SeqCst) <= BOUNDS.workers * (BOUNDS.per_job + 1));
            // Consuming one job lets exactly one more start.
            let first: Vec<usize> = ahead.next_output().into_iter().flatten().collect();
            assert_eq!(first, (0..10).collect::<Vec<_>>());
            std::thread::sleep(Duration::from_millis(200));
            let begun_now = begun.load(Ordering::SeqCst);
            assert!(
                begun_now <= BOUNDS.lookahead + 1,
                "{begun_now} jobs begun with lookahead {}",
                BOUNDS.lookahead
            );
        });
    }

    /// A writer that goes away stops the pool: no job starts after it, and
    /// the scope (the response) ends.
    #[test]
    fn dropping_the_writer_stops_the_workers() {
        let begun = AtomicUsize::new(0);
        let work = |_: usize, emit: &Emit<usize>| {
            begun.fetch_add(1, Ordering::SeqCst);
            while emit.send(0) {}
        };
        std::thread::scope(|s| {
            let mut ahead = Ahead::start(s, (0..1000).collect(), BOUNDS, &work);
            let mut first = ahead.next_output().expect("a job");
            assert_eq!(first.next(), Some(0));
            drop(first);
            drop(ahead);
        });
        assert!(begun.load(Ordering::SeqCst) <= BOUNDS.lookahead + 1);
    }

    /// `ready` never waits: it answers `None` while the next job has
    /// produced nothing, then hands its output over.
    #[test]
    fn ready_does_not_wait() {
        let gate = Mutex::new(());
        let held = gate.lock().unwrap_or_else(|p| p.into_inner());
        let work = |job: usize, emit: &Emit<usize>| {
            drop(gate.lock().unwrap_or_else(|p| p.into_inner()));
            emit.send(job);
        };
        std::thread::scope(|s| {
            let mut ahead = Ahead::start(s, vec![7], BOUNDS, &work);
            assert!(ahead.ready().is_none());
            drop(held);
            let out: Vec<usize> = ahead.next_output().into_iter().flatten().collect();
            assert_eq!(out, vec![7]);
            assert!(ahead.next_output().is_none());
        });
    }
}
