//! The proactive refresher: every tick, refresh the tokens that expire within the margin, a few
//! at a time. Failures are logged and retried on a later tick with a growing delay per
//! connection; they never touch the stored tokens (see `oauth2::refresh`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use time::OffsetDateTime;

use crate::{Engine, RefreshReason};

/// Connections refreshed at once.
const CONCURRENCY: usize = 4;
/// Connections looked at per tick.
const BATCH: u32 = 100;

impl Engine {
    /// Runs the scheduler until the task is dropped.
    pub async fn run_refresh_scheduler(self: Arc<Self>, tick: Duration) {
        let mut backoff: HashMap<String, (Instant, Duration)> = HashMap::new();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let before = OffsetDateTime::now_utc() + self.refresh_margin;
            let due = match self.store.connections_expiring(before, BATCH).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler cannot list expiring connections");
                    continue;
                }
            };
            let now = Instant::now();
            let due: Vec<String> = due
                .into_iter()
                .filter(|id| backoff.get(id).is_none_or(|(until, _)| *until <= now))
                .collect();
            let results: Vec<(String, bool)> = futures_util::stream::iter(due)
                .map(|id| {
                    let engine = self.clone();
                    async move {
                        let ok = engine
                            .refresh_connection(&id, RefreshReason::Expiring(engine.refresh_margin))
                            .await
                            .is_ok();
                        (id, ok)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for (id, ok) in results {
                if ok {
                    backoff.remove(&id);
                } else {
                    let delay = backoff.get(&id).map_or(Duration::from_secs(30), |(_, d)| {
                        (*d * 2).min(Duration::from_secs(3600))
                    });
                    backoff.insert(id, (Instant::now() + delay, delay));
                }
            }
        }
    }
}
