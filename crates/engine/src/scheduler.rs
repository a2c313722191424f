//! The proactive refresher: every tick, queue the tokens that expire within the margin and
//! refresh them a few at a time, each in a task of its own. A refresh that fails, hangs until
//! its timeout or panics holds one slot and delays only its own connection: the others keep
//! going, and a failure (a panic counts as one, and is logged) is retried on a later tick with a
//! growing delay per connection. Failures never touch the stored tokens (see `oauth2::refresh`).
//! On start, connections whose refresh a crash interrupted are checked at once; later, every
//! tick also checks the connections whose refresh lease ran out unreleased (a refresh cancelled
//! or panicking mid-exchange).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::{Engine, RefreshReason, Renewal};

/// Connections refreshed at once.
const CONCURRENCY: usize = 4;
/// Connections looked at per tick.
const BATCH: u32 = 100;
/// The first delay after a failure; doubled on each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// The longest delay after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

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
                let before = engine.clock.now() + engine.refresh_margin;
                let mut due = engine.abandoned_refreshes().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "scheduler cannot list abandoned refreshes");
                    Vec::new()
                });
                let expiring = engine.store.connections_expiring(before, BATCH).await;
                due.extend(expiring.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "scheduler cannot list expiring connections");
                    Vec::new()
                }));
                due
            }
        };
        let refresh = move |id: String| {
            let engine = self.clone();
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
        run_schedule(tick, FIRST_BACKOFF, due, refresh).await;
    }
}

/// The scheduling loop, apart from what it schedules: `due` lists the connections to renew,
/// `refresh` renews one and says whether it worked. Each refresh runs in its own task.
async fn run_schedule<D, DF, R, RF>(tick: Duration, first_backoff: Duration, due: D, refresh: R)
where
    D: Fn() -> DF,
    DF: Future<Output = Vec<String>>,
    R: Fn(String) -> RF,
    RF: Future<Output = bool> + Send + 'static,
{
    let mut backoff: HashMap<String, (Instant, Duration)> = HashMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut queued: HashSet<String> = HashSet::new();
    let mut running: JoinSet<bool> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let now = Instant::now();
                for id in due().await {
                    let waiting = backoff.get(&id).is_some_and(|(until, _)| *until > now);
                    let busy = in_flight.values().any(|running| *running == id);
                    if !waiting && !busy && queued.insert(id.clone()) {
                        queue.push_back(id);
                    }
                }
            }
            Some(done) = running.join_next_with_id() => {
                let (task, ok) = match done {
                    Ok((task, ok)) => (task, ok),
                    Err(e) => {
                        let id = in_flight.get(&e.id()).cloned().unwrap_or_default();
                        if e.is_panic() {
                            tracing::error!(connection = %id, "a refresh panicked; counted as a failure");
                        }
                        (e.id(), false)
                    }
                };
                let Some(id) = in_flight.remove(&task) else { continue };
                if ok {
                    backoff.remove(&id);
                } else {
                    let delay = backoff
                        .get(&id)
                        .map_or(first_backoff, |(_, d)| (*d * 2).min(MAX_BACKOFF));
                    backoff.insert(id, (Instant::now() + delay, delay));
                }
            }
        }
        while running.len() < CONCURRENCY
            && let Some(id) = queue.pop_front()
        {
            queued.remove(&id);
            let handle = running.spawn(refresh(id.clone()));
            in_flight.insert(handle.id(), id);
        }
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;

    /// A refresh that panics, and one that never ends, leave the others renewed on every tick.
    #[tokio::test]
    async fn a_panicking_or_hanging_refresh_does_not_stop_the_others() {
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let log = calls.clone();
        let due =
            || async { ["panics", "hangs", "a", "b", "c", "d", "e"].map(String::from).to_vec() };
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
        let scheduler = tokio::spawn(run_schedule(
            Duration::from_millis(5),
            Duration::from_secs(3600),
            due,
            refresh,
        ));
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
    }
}
