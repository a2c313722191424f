//! The proactive refresher: every tick, queue the tokens that expire within the margin and
//! refresh them a few at a time, each in a task of its own. A refresh that fails, hangs until
//! its timeout or panics holds one slot and delays only its own connection: the others keep
//! going, and a failure (a panic counts as one, and is logged) backs off with a growing,
//! jittered delay per connection. Failures never touch the stored tokens (see
//! `oauth2::refresh`).
//!
//! Fairness: the back-off is kept in the store (`refresh_failures`, `refresh_retry_at`), whose
//! query leaves out the connections that wait, so they never hold the window of the next
//! [`BATCH`] due; the queue takes connectors in turn, and one connector holds at most
//! [`PER_CONNECTOR`] of the [`CONCURRENCY`] slots, so one provider's outage (failing or hanging
//! token endpoints) does not delay another provider's refreshes.
//!
//! On start, connections whose refresh a crash interrupted are checked at once; later, every
//! tick also checks the connections whose refresh lease ran out unreleased (a refresh cancelled
//! or panicking mid-exchange).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use latchkey_store::ExpiringConnection;
use tokio::task::JoinSet;

use crate::{Engine, RefreshReason, Renewal};

/// Connections refreshed at once.
const CONCURRENCY: usize = 4;
/// Slots one connector may hold at once: the others stay free for other providers.
const PER_CONNECTOR: usize = CONCURRENCY / 2;
/// Connections looked at per tick (those backing off are not among them).
const BATCH: u32 = 100;
/// The first delay after a failure; doubled on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// The longest delay after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The delay before the next scheduled refresh after `failures` consecutive failures (1 for
/// the first): [`FIRST_BACKOFF`] doubled per further failure up to [`MAX_BACKOFF`], scaled by
/// `jitter` (drawn from 0.5..=1.0, "equal jitter"), so that connections which failed together
/// do not all come back together.
fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let delay = FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
    delay.mul_f64(jitter.clamp(0.5, 1.0))
}

impl Renewal<'_> {
    /// The background refresher, to spawn: every `tick` it refreshes the tokens that expire
    /// within the margin, a few at a time, and runs until the task is dropped. It starts by
    /// checking, in a task of its own, the connections whose refresh a crash interrupted
    /// ([`Renewal::check_interrupted`]). The future holds the engine's `Arc`, so it is
    /// `'static`; while the engine is being dropped it finishes at once.
    pub fn run_scheduler(&self, tick: Duration) -> impl Future<Output = ()> + Send + 'static {
        let engine = self.engine.me.upgrade();
        async move {
            if let Some(engine) = engine {
                engine.run_scheduler(tick).await;
            }
        }
    }
}

impl Engine {
    async fn run_scheduler(self: Arc<Self>, tick: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            match engine.renewal().check_interrupted().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(connections = n, "checked interrupted refreshes"),
                Err(e) => tracing::warn!(error = %e, "cannot check interrupted refreshes"),
            }
        });
        let engine = self.clone();
        let due = move || {
            let engine = engine.clone();
            async move {
                let now = engine.clock.now();
                let before = now + engine.refresh_margin;
                let abandoned = engine.abandoned_refreshes().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "scheduler cannot list abandoned refreshes");
                    Vec::new()
                });
                // Which connector an abandoned refresh belongs to does not matter: there are few.
                let mut due: Vec<ExpiringConnection> = abandoned
                    .into_iter()
                    .map(|id| ExpiringConnection { id, connector: String::new() })
                    .collect();
                let expiring = engine.store.connections_expiring(before, now, BATCH).await;
                due.extend(expiring.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "scheduler cannot list expiring connections");
                    Vec::new()
                }));
                due
            }
        };
        let engine = self.clone();
        let refresh = move |id: String| {
            let engine = engine.clone();
            async move {
                if engine.abandoned_refreshes().await.is_ok_and(|ids| ids.contains(&id)) {
                    return engine.check_interrupted_refresh(&id).await.unwrap_or(false);
                }
                engine
                    .refresh_record(&id, RefreshReason::Expiring(engine.refresh_margin))
                    .await
                    .is_ok()
            }
        };
        let failed = move |id: String| {
            let engine = self.clone();
            async move { engine.back_off_refresh(&id).await }
        };
        run_schedule(tick, due, refresh, failed).await;
    }

    /// Records a failed scheduled refresh in the store: the scheduler leaves the connection
    /// alone until its jittered retry time.
    async fn back_off_refresh(&self, id: &str) {
        let now = self.clock.now();
        let jitter = rand::random_range(0.5..=1.0);
        let retry_at = move |failures: u32| now + backoff_delay(failures, jitter);
        match self.store.record_refresh_failure(id, now, &retry_at).await {
            Ok(Some(backoff)) => {
                tracing::info!(
                    connection = %id,
                    failures = backoff.failures,
                    retry_at = ?backoff.retry_at,
                    "scheduled refresh failed; backing off"
                );
                if let Some(since) = backoff.failing_since {
                    self.refresh_exhausted(id, since).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "cannot record a refresh back-off")
            }
        }
    }
}

/// The connections waiting for a slot, one queue per connector, taken in turn.
#[derive(Debug, Default)]
struct FairQueue {
    by_connector: HashMap<String, VecDeque<String>>,
    /// Connectors with something queued, in the order they get their next turn.
    turns: VecDeque<String>,
    queued: HashSet<String>,
}

impl FairQueue {
    /// Queues a connection unless it is queued already.
    fn push(&mut self, due: ExpiringConnection) {
        if !self.queued.insert(due.id.clone()) {
            return;
        }
        let queue = self.by_connector.entry(due.connector.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(due.connector);
        }
        queue.push_back(due.id);
    }

    /// The next connection of the next connector in turn that `may_start` allows.
    fn pop(&mut self, may_start: impl Fn(&str) -> bool) -> Option<ExpiringConnection> {
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
            return Some(ExpiringConnection { id, connector });
        }
        None
    }
}

/// The scheduling loop, apart from what it schedules: `due` lists the connections to renew
/// (leaving out those backing off), `refresh` renews one and says whether it worked, `failed`
/// records a failure (or a panic) so that `due` leaves the connection out for a while. Each
/// refresh runs in its own task.
async fn run_schedule<D, DF, R, RF, F, FF>(tick: Duration, due: D, refresh: R, failed: F)
where
    D: Fn() -> DF,
    DF: Future<Output = Vec<ExpiringConnection>>,
    R: Fn(String) -> RF,
    RF: Future<Output = bool> + Send + 'static,
    F: Fn(String) -> FF,
    FF: Future<Output = ()>,
{
    let mut queue = FairQueue::default();
    let mut running: JoinSet<bool> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, ExpiringConnection> = HashMap::new();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                for found in due().await {
                    if !in_flight.values().any(|running| running.id == found.id) {
                        queue.push(found);
                    }
                }
            }
            Some(done) = running.join_next_with_id() => {
                let (task, ok) = match done {
                    Ok((task, ok)) => (task, ok),
                    Err(e) => {
                        let id = in_flight.get(&e.id()).map(|c| c.id.clone()).unwrap_or_default();
                        if e.is_panic() {
                            tracing::error!(connection = %id, "a refresh panicked; counted as a failure");
                        }
                        (e.id(), false)
                    }
                };
                let Some(finished) = in_flight.remove(&task) else { continue };
                if !ok {
                    failed(finished.id).await;
                }
            }
        }
        while running.len() < CONCURRENCY
            && let Some(next) = queue.pop(|connector| {
                in_flight.values().filter(|c| c.connector == connector).count() < PER_CONNECTOR
            })
        {
            let handle = running.spawn(refresh(next.id.clone()));
            in_flight.insert(handle.id(), next);
        }
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;

    fn due(connector: &str, id: &str) -> ExpiringConnection {
        ExpiringConnection { id: id.into(), connector: connector.into() }
    }

    /// What `failed` records, and `due` then leaves out: the store's back-off, in memory.
    #[derive(Clone, Default)]
    struct Waiting(Arc<Mutex<HashSet<String>>>);

    impl Waiting {
        fn due(&self, all: &[ExpiringConnection]) -> Vec<ExpiringConnection> {
            let waiting = self.0.lock();
            all.iter().filter(|c| !waiting.contains(&c.id)).cloned().collect()
        }

        fn failed(&self) -> impl Fn(String) -> std::future::Ready<()> + use<> {
            let waiting = self.0.clone();
            move |id| {
                waiting.lock().insert(id);
                std::future::ready(())
            }
        }
    }

    /// A refresh that panics, and one that never ends, leave the others renewed on every tick.
    #[tokio::test]
    async fn a_panicking_or_hanging_refresh_does_not_stop_the_others() {
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let log = calls.clone();
        let all: Vec<_> = ["panics", "hangs", "a", "b", "c", "d", "e"]
            .into_iter()
            .map(|id| due("prov", id))
            .collect();
        let waiting = Waiting::default();
        let listed = waiting.clone();
        let due = move || std::future::ready(listed.due(&all));
        let refresh = move |id: String| {
            let log = log.clone();
            let tx = tx.clone();
            async move {
                *log.lock().entry(id.clone()).or_default() += 1;
                match id.as_str() {
                    "panics" => panic!("hostile provider"),
                    "hangs" => std::future::pending::<bool>().await,
                    _ => {
                        let _ = tx.send(id);
                        true
                    }
                }
            }
        };
        let scheduler =
            tokio::spawn(run_schedule(Duration::from_millis(5), due, refresh, waiting.failed()));
        // Every healthy connection is renewed again and again (three rounds each).
        let mut renewed: HashMap<String, usize> = HashMap::new();
        while renewed.len() < 5 || renewed.values().any(|n| *n < 3) {
            let id = rx.recv().await.expect("the scheduler stopped");
            *renewed.entry(id).or_default() += 1;
        }
        assert!(!scheduler.is_finished(), "the scheduler survives a panicking refresh");
        scheduler.abort();
        let calls = calls.lock();
        assert_eq!(calls["panics"], 1, "a panic backs off like any failure");
        assert_eq!(calls["hangs"], 1, "a hanging refresh is not started twice");
        assert!(waiting.0.lock().contains("panics"));
    }

    /// A provider whose token endpoint hangs holds at most its share of the slots, however many
    /// of its connections come first: another provider's connections are still renewed.
    #[tokio::test]
    async fn a_hanging_provider_leaves_slots_to_the_others() {
        let mut all: Vec<_> = (0..50).map(|i| due("down", &format!("down-{i}"))).collect();
        all.extend((0..5).map(|i| due("up", &format!("up-{i}"))));
        let started: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let log = started.clone();
        let refresh = move |id: String| {
            log.lock().push(id.clone());
            let tx = tx.clone();
            async move {
                if id.starts_with("down") {
                    std::future::pending::<bool>().await
                } else {
                    let _ = tx.send(id);
                    true
                }
            }
        };
        let waiting = Waiting::default();
        let due = move || std::future::ready(waiting.due(&all));
        let scheduler = tokio::spawn(run_schedule(Duration::from_millis(5), due, refresh, |_| {
            std::future::ready(())
        }));
        let mut renewed = HashSet::new();
        while renewed.len() < 5 {
            renewed.insert(rx.recv().await.expect("the scheduler stopped"));
        }
        scheduler.abort();
        let started = started.lock();
        let down = started.iter().filter(|id| id.starts_with("down")).count();
        assert_eq!(down, PER_CONNECTOR, "the hanging provider holds only its share: {started:?}");
    }

    #[test]
    fn the_queue_takes_connectors_in_turn() {
        let mut queue = FairQueue::default();
        for (connector, id) in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("a", "a1")] {
            queue.push(due(connector, id));
        }
        queue.push(due("c", "c1"));
        let order: Vec<String> = std::iter::from_fn(|| queue.pop(|_| true)).map(|c| c.id).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "a3"]);
        queue.push(due("a", "a4"));
        queue.push(due("b", "b2"));
        assert_eq!(queue.pop(|connector| connector != "a").unwrap().id, "b2");
        assert_eq!(queue.pop(|connector| connector != "a"), None);
        assert_eq!(queue.pop(|_| true).unwrap().id, "a4");
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_and_is_jittered_down_to_half() {
        assert_eq!(backoff_delay(1, 1.0), FIRST_BACKOFF);
        assert_eq!(backoff_delay(1, 0.5), FIRST_BACKOFF / 2);
        assert_eq!(backoff_delay(2, 1.0), FIRST_BACKOFF * 2);
        assert_eq!(backoff_delay(3, 0.75), FIRST_BACKOFF * 3);
        assert_eq!(backoff_delay(100, 1.0), MAX_BACKOFF);
        assert_eq!(backoff_delay(u32::MAX, 0.5), MAX_BACKOFF / 2);
        assert_eq!(backoff_delay(1, 7.0), FIRST_BACKOFF, "jitter never lengthens the delay");
    }
}
