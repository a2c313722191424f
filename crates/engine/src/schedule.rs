//! The scheduling loop the background refresher and the health checks share, apart from what
//! they schedule: it lists what is due, queues it per connector, and runs a few jobs at a time,
//! each in a task of its own.
//!
//! - **Bounded and fair.** At most [`Shape::concurrency`] jobs run at once, one connector holds
//!   at most [`Shape::per_connector`] of them, and the queue takes connectors in turn, so one
//!   provider's outage (failing or hanging endpoints) does not delay another's jobs.
//! - **Paced.** A connector may be given a pace (the least time between two of its jobs'
//!   starts), and a job may ask to hold its connector back ([`Done::SlowDown`], after a 429).
//! - **Keeps up.** The loop lists on every tick and, between ticks, as soon as the queue runs
//!   low while the last listing was full; a connector with [`Shape::queue_per_connector`] jobs
//!   queued is left out of the listing (`skip`), so a paced provider's backlog never takes the
//!   places of other providers' due jobs.
//!
//! A job that fails, hangs until its timeout or panics holds one slot and delays only itself;
//! `failed` records a failure (a panic counts as one) so that the listing leaves the job out
//! for a while.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

/// A connection to work on, and its connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) id: String,
    pub(crate) connector: String,
}

impl Due {
    pub(crate) fn new(id: impl Into<String>, connector: impl Into<String>) -> Self {
        Self { id: id.into(), connector: connector.into() }
    }
}

/// What a listing found: the due jobs, whether it was cut at its limit (more may be due), and
/// how many rows it dealt with itself instead of returning them (the next listing sees others).
#[derive(Debug, Default)]
pub(crate) struct Listed {
    pub(crate) due: Vec<Due>,
    pub(crate) full: bool,
    pub(crate) rescheduled: usize,
}

/// What one job came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// It worked, or there was nothing to do.
    Ok,
    /// It failed: `failed` records it.
    Failed,
    /// The provider asked to slow down: no job of this connector starts for this long.
    SlowDown(Duration),
}

/// The loop's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Jobs running at once.
    pub(crate) concurrency: usize,
    /// Jobs one connector may run at once.
    pub(crate) per_connector: usize,
    /// Jobs a listing asks for.
    pub(crate) batch: u32,
    /// Queued jobs of one connector past which the listing leaves it out.
    pub(crate) queue_per_connector: usize,
}

/// The jobs waiting for a slot, one queue per connector, taken in turn.
#[derive(Debug, Default)]
pub(crate) struct FairQueue {
    by_connector: HashMap<String, VecDeque<String>>,
    /// Connectors with something queued, in the order they get their next turn.
    turns: VecDeque<String>,
    queued: HashSet<String>,
}

impl FairQueue {
    /// Queues a job unless it is queued already; `true` when it was not.
    pub(crate) fn push(&mut self, due: Due) -> bool {
        if !self.queued.insert(due.id.clone()) {
            return false;
        }
        let queue = self.by_connector.entry(due.connector.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(due.connector);
        }
        queue.push_back(due.id);
        true
    }

    /// The next job of the next connector in turn that `may_start` allows.
    pub(crate) fn pop(&mut self, may_start: impl Fn(&str) -> bool) -> Option<Due> {
        for _ in 0..self.turns.len() {
            let connector = self.turns.pop_front()?;
            if !may_start(&connector) {
                self.turns.push_back(connector);
                continue;
            }
            let queue = self.by_connector.get_mut(&connector)?;
            let id = queue.pop_front()?;
            if queue.is_empty() {
                self.by_connector.remove(&connector);
            } else {
                self.turns.push_back(connector.clone());
            }
            self.queued.remove(&id);
            return Some(Due { id, connector });
        }
        None
    }

    /// How many jobs of `connector` are queued.
    fn len_of(&self, connector: &str) -> usize {
        self.by_connector.get(connector).map_or(0, VecDeque::len)
    }

    /// The connectors with at least `cap` jobs queued.
    fn full(&self, cap: usize) -> Vec<String> {
        let mut full: Vec<String> = self
            .by_connector
            .iter()
            .filter(|(_, q)| q.len() >= cap)
            .map(|(c, _)| c.clone())
            .collect();
        full.sort();
        full
    }

    /// How many jobs are queued, leaving out those of the connectors in `skip`.
    fn len_without(&self, skip: &HashSet<String>) -> usize {
        self.by_connector.iter().filter(|(c, _)| !skip.contains(*c)).map(|(_, q)| q.len()).sum()
    }

    fn connectors(&self) -> impl Iterator<Item = &String> {
        self.by_connector.keys()
    }
}

/// Runs the loop until its task is dropped. Every `tick`, and between ticks when the queue runs
/// low, `due(skip)` lists what is due (leaving out what backs off, and the connectors in
/// `skip`); `job` runs one in a task of its own; `failed` records a failure; `pace(connector)`
/// is the least time between two starts of that connector's jobs (`None`: no pace).
pub(crate) async fn run_schedule<D, DF, J, JF, F, FF, P>(
    tick: Duration,
    shape: Shape,
    due: D,
    job: J,
    failed: F,
    pace: P,
) where
    D: Fn(Vec<String>) -> DF,
    DF: Future<Output = Listed>,
    J: Fn(Due) -> JF,
    JF: Future<Output = Done> + Send + 'static,
    F: Fn(String) -> FF,
    FF: Future<Output = ()>,
    P: Fn(&str) -> Option<Duration>,
{
    let mut queue = FairQueue::default();
    let mut running: JoinSet<Done> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, Due> = HashMap::new();
    // The earliest time each paced (or held back) connector may start its next job.
    let mut next_start: HashMap<String, Instant> = HashMap::new();
    // Whether the last listing was cut at its limit, and which connectors it left out: either
    // may have more due than the queue holds.
    let mut listing_full = false;
    let mut skipped: HashSet<String> = HashSet::new();
    let low_water = (shape.batch as usize / 2).max(1);
    let refill_at = (shape.queue_per_connector / 2).max(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wake: Option<Instant> = None;
    loop {
        let full: HashSet<String> = queue.full(shape.queue_per_connector).into_iter().collect();
        let refill_now = (listing_full && queue.len_without(&full) < low_water)
            || skipped.iter().any(|c| queue.len_of(c) < refill_at);
        let mut refill = false;
        tokio::select! {
            _ = interval.tick() => refill = true,
            () = std::future::ready(()), if refill_now => refill = true,
            Some(done) = running.join_next_with_id() => {
                let (task, done) = match done {
                    Ok((task, done)) => (task, done),
                    Err(e) => {
                        let id = in_flight.get(&e.id()).map(|c| c.id.clone()).unwrap_or_default();
                        if e.is_panic() {
                            tracing::error!(connection = %id, "a scheduled job panicked; counted as a failure");
                        }
                        (e.id(), Done::Failed)
                    }
                };
                if let Some(finished) = in_flight.remove(&task) {
                    match done {
                        Done::Ok => {}
                        Done::Failed => failed(finished.id).await,
                        Done::SlowDown(wait) => {
                            let until = Instant::now() + wait;
                            let at = next_start.entry(finished.connector).or_insert(until);
                            *at = (*at).max(until);
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
        }
        if refill {
            let skip = queue.full(shape.queue_per_connector);
            let listed = due(skip.clone()).await;
            let mut added = 0;
            for found in listed.due {
                if !in_flight.values().any(|running| running.id == found.id) && queue.push(found) {
                    added += 1;
                }
            }
            // A listing that changed nothing waits for the next tick, whatever it found.
            listing_full = listed.full && (added > 0 || listed.rescheduled > 0);
            skipped = skip.into_iter().collect();
        }
        let now = Instant::now();
        while running.len() < shape.concurrency
            && let Some(next) = queue.pop(|connector| {
                in_flight.values().filter(|c| c.connector == connector).count()
                    < shape.per_connector
                    && next_start.get(connector).is_none_or(|at| *at <= now)
            })
        {
            if let Some(spacing) = pace(&next.connector) {
                let at = next_start.get(&next.connector).map_or(now, |at| (*at).max(now));
                next_start.insert(next.connector.clone(), at + spacing);
            }
            let handle = running.spawn(job(next.clone()));
            in_flight.insert(handle.id(), next);
        }
        next_start.retain(|_, at| *at > now);
        // Wake for the first held-back connector that has something queued.
        wake = if running.len() < shape.concurrency {
            queue.connectors().filter_map(|c| next_start.get(c)).min().copied()
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;

    const SHAPE: Shape =
        Shape { concurrency: 4, per_connector: 2, batch: 100, queue_per_connector: 25 };

    fn listed(all: &[Due], skip: &[String], limit: usize) -> Listed {
        let due: Vec<Due> =
            all.iter().filter(|c| !skip.contains(&c.connector)).take(limit).cloned().collect();
        Listed { full: due.len() == limit, due, rescheduled: 0 }
    }

    /// What `failed` records, and `due` then leaves out: the store's back-off, in memory.
    #[derive(Clone, Default)]
    struct Waiting(Arc<Mutex<HashSet<String>>>);

    impl Waiting {
        fn due(&self, all: &[Due]) -> Listed {
            let waiting = self.0.lock();
            let due: Vec<Due> = all.iter().filter(|c| !waiting.contains(&c.id)).cloned().collect();
            Listed { due, full: false, rescheduled: 0 }
        }

        fn failed(&self) -> impl Fn(String) -> std::future::Ready<()> + use<> {
            let waiting = self.0.clone();
            move |id| {
                waiting.lock().insert(id);
                std::future::ready(())
            }
        }
    }

    fn no_pace(_: &str) -> Option<Duration> {
        None
    }

    /// A job that panics, and one that never ends, leave the others run on every tick.
    #[tokio::test]
    async fn a_panicking_or_hanging_job_does_not_stop_the_others() {
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let log = calls.clone();
        let all: Vec<_> = ["panics", "hangs", "a", "b", "c", "d", "e"]
            .into_iter()
            .map(|id| Due::new(id, "prov"))
            .collect();
        let waiting = Waiting::default();
        let listed = waiting.clone();
        let due = move |_| std::future::ready(listed.due(&all));
        let job = move |due: Due| {
            let log = log.clone();
            let tx = tx.clone();
            async move {
                *log.lock().entry(due.id.clone()).or_default() += 1;
                match due.id.as_str() {
                    "panics" => panic!("hostile provider"),
                    "hangs" => std::future::pending::<Done>().await,
                    _ => {
                        let _ = tx.send(due.id);
                        Done::Ok
                    }
                }
            }
        };
        let scheduler = tokio::spawn(run_schedule(
            Duration::from_millis(5),
            SHAPE,
            due,
            job,
            waiting.failed(),
            no_pace,
        ));
        // Every healthy connection is renewed again and again (three rounds each).
        let mut renewed: HashMap<String, usize> = HashMap::new();
        while renewed.len() < 5 || renewed.values().any(|n| *n < 3) {
            let id = rx.recv().await.expect("the scheduler stopped");
            *renewed.entry(id).or_default() += 1;
        }
        assert!(!scheduler.is_finished(), "the scheduler survives a panicking job");
        scheduler.abort();
        let calls = calls.lock();
        assert_eq!(calls["panics"], 1, "a panic backs off like any failure");
        assert_eq!(calls["hangs"], 1, "a hanging job is not started twice");
        assert!(waiting.0.lock().contains("panics"));
    }

    /// A provider whose endpoint hangs holds at most its share of the slots, however many of
    /// its connections come first: another provider's connections are still served.
    #[tokio::test]
    async fn a_hanging_provider_leaves_slots_to_the_others() {
        let mut all: Vec<_> = (0..50).map(|i| Due::new(format!("down-{i}"), "down")).collect();
        all.extend((0..5).map(|i| Due::new(format!("up-{i}"), "up")));
        let started: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let log = started.clone();
        let job = move |due: Due| {
            log.lock().push(due.id.clone());
            let tx = tx.clone();
            async move {
                if due.connector == "down" {
                    std::future::pending::<Done>().await
                } else {
                    let _ = tx.send(due.id);
                    Done::Ok
                }
            }
        };
        let waiting = Waiting::default();
        let due = move |_| std::future::ready(waiting.due(&all));
        let scheduler = tokio::spawn(run_schedule(
            Duration::from_millis(5),
            SHAPE,
            due,
            job,
            |_| std::future::ready(()),
            no_pace,
        ));
        let mut renewed = HashSet::new();
        while renewed.len() < 5 {
            renewed.insert(rx.recv().await.expect("the scheduler stopped"));
        }
        scheduler.abort();
        let started = started.lock();
        let down = started.iter().filter(|id| id.starts_with("down")).count();
        assert_eq!(
            down, SHAPE.per_connector,
            "the hanging provider holds only its share: {started:?}"
        );
    }

    /// A paced connector's jobs start `pace` apart, never closer, while an unpaced connector's
    /// all start at once; a backlog of the paced one far beyond the listing's limit does not
    /// keep the other out of it, and the loop lists again between ticks to keep up.
    #[tokio::test(start_paused = true)]
    async fn a_paced_backlog_keeps_its_pace_and_leaves_room_to_the_others() {
        let mut all: Vec<_> = (0..1000).map(|i| Due::new(format!("slow-{i:04}"), "slow")).collect();
        all.extend((0..30).map(|i| Due::new(format!("fast-{i}"), "fast")));
        let done: Arc<Mutex<HashSet<String>>> = Arc::default();
        let starts: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let listings = Arc::new(Mutex::new(0usize));
        let (seen, log, count) = (done.clone(), starts.clone(), listings.clone());
        let due = move |skip: Vec<String>| {
            *count.lock() += 1;
            let done = seen.lock();
            let left: Vec<Due> = all.iter().filter(|c| !done.contains(&c.id)).cloned().collect();
            std::future::ready(listed(&left, &skip, 100))
        };
        let finished = done.clone();
        let job = move |due: Due| {
            log.lock().push((due.id.clone(), Instant::now()));
            finished.lock().insert(due.id);
            std::future::ready(Done::Ok)
        };
        let pace = |connector: &str| (connector == "slow").then_some(Duration::from_millis(100));
        let start = Instant::now();
        // A tick far longer than the run: every listing after the first is a refill.
        let scheduler = tokio::spawn(run_schedule(
            Duration::from_secs(3600),
            SHAPE,
            due,
            job,
            |_| std::future::ready(()),
            pace,
        ));
        while done.lock().len() < 1030 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        scheduler.abort();
        let starts = starts.lock();
        let fast: Vec<Duration> = starts
            .iter()
            .filter(|(id, _)| id.starts_with("fast"))
            .map(|(_, at)| *at - start)
            .collect();
        assert_eq!(fast.len(), 30);
        assert!(
            fast.iter().all(|at| *at == Duration::ZERO),
            "not held back by the slow backlog: {fast:?}"
        );
        let slow: Vec<Instant> =
            starts.iter().filter(|(id, _)| id.starts_with("slow")).map(|(_, at)| *at).collect();
        assert_eq!(slow.len(), 1000, "each once");
        for pair in slow.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(100), "paced");
        }
        // 1000 at 10 per second: 99.9 s, and no idle gap while listings refill the queue.
        assert_eq!(*slow.last().unwrap() - start, Duration::from_millis(99_900));
        assert!(*listings.lock() >= 10, "refilled between ticks");
    }

    /// A job answered "slow down" holds its connector back for that long; others go on.
    #[tokio::test(start_paused = true)]
    async fn a_slow_down_holds_the_connector_back() {
        let all: Vec<_> = vec![
            Due::new("a-1", "a"),
            Due::new("a-2", "a"),
            Due::new("a-3", "a"),
            Due::new("b-1", "b"),
        ];
        let done: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let (seen, log) = (done.clone(), done.clone());
        let due = move |_| {
            let finished: HashSet<String> = seen.lock().iter().map(|(id, _)| id.clone()).collect();
            let left = all.iter().filter(|c| !finished.contains(&c.id)).cloned().collect();
            std::future::ready(Listed { due: left, full: false, rescheduled: 0 })
        };
        let job = move |due: Due| {
            log.lock().push((due.id.clone(), Instant::now()));
            std::future::ready(if due.id == "a-1" {
                Done::SlowDown(Duration::from_secs(60))
            } else {
                Done::Ok
            })
        };
        let shape = Shape { per_connector: 1, ..SHAPE };
        let start = Instant::now();
        let scheduler = tokio::spawn(run_schedule(
            Duration::from_secs(1),
            shape,
            due,
            job,
            |_| std::future::ready(()),
            no_pace,
        ));
        while done.lock().len() < 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        scheduler.abort();
        let at = |id: &str| done.lock().iter().find(|(i, _)| i == id).unwrap().1 - start;
        assert_eq!(at("a-1"), Duration::ZERO);
        assert_eq!(at("b-1"), Duration::ZERO);
        assert!(at("a-2") >= Duration::from_secs(60), "held back: {:?}", at("a-2"));
    }

    #[test]
    fn the_queue_takes_connectors_in_turn() {
        let mut queue = FairQueue::default();
        for (connector, id) in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("a", "a1")] {
            queue.push(Due::new(id, connector));
        }
        queue.push(Due::new("c1", "c"));
        assert_eq!(queue.full(3), ["a"]);
        assert_eq!(queue.len_without(&HashSet::from(["a".to_string()])), 2);
        let order: Vec<String> = std::iter::from_fn(|| queue.pop(|_| true)).map(|c| c.id).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "a3"]);
        queue.push(Due::new("a4", "a"));
        queue.push(Due::new("b2", "b"));
        assert_eq!(queue.pop(|connector| connector != "a").unwrap().id, "b2");
        assert_eq!(queue.pop(|connector| connector != "a"), None);
        assert_eq!(queue.pop(|_| true).unwrap().id, "a4");
    }
}
