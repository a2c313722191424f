//! The overview: connections by health per integration, the refresh success rate over the
//! last 24 hours, and proxied requests and errors per hour over the same day as a chart. The
//! numbers are grouped by the database (see [`latchkey_engine::Console`]).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use latchkey_engine::OperationKind;
use serde::Serialize;

use super::{Operator, Page, chart, failed};
use crate::AppState;

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);

/// One integration's connections by health.
#[derive(Debug, Default, Serialize)]
struct HealthRow {
    integration: String,
    healthy: u64,
    unhealthy: u64,
    unknown: u64,
    total: u64,
}

/// `GET /console`.
pub async fn page(State(state): State<AppState>, operator: Operator) -> Response {
    let console = state.engine.console();
    let environment = &operator.environment;
    let result = async {
        let health = console.health_counts(environment).await?;
        let (_, refreshes) =
            console.operation_buckets(environment, OperationKind::Refresh, DAY, DAY).await?;
        let (since, requests) =
            console.operation_buckets(environment, OperationKind::Request, DAY, HOUR).await?;
        Ok::<_, latchkey_engine::EngineError>((health, refreshes, since, requests))
    }
    .await;
    let (health, refreshes, since, requests) = match result {
        Ok(found) => found,
        Err(e) => return failed(&operator, "Cannot read the overview", e.into(), "/console"),
    };

    let mut rows: BTreeMap<String, HealthRow> = BTreeMap::new();
    for count in &health {
        let name = count.integration.clone().unwrap_or_else(|| "(none)".to_owned());
        let row = rows
            .entry(name.clone())
            .or_insert_with(|| HealthRow { integration: name, ..HealthRow::default() });
        match count.health.as_str() {
            "healthy" => row.healthy += count.count,
            "unhealthy" => row.unhealthy += count.count,
            _ => row.unknown += count.count,
        }
        row.total += count.count;
    }
    let rows: Vec<HealthRow> = rows.into_values().collect();

    let refresh_ok: u64 =
        refreshes.iter().filter(|b| b.outcome == "success").map(|b| b.count).sum();
    let refresh_total: u64 = refreshes.iter().map(|b| b.count).sum();
    let refresh_rate = (refresh_total > 0)
        .then(|| format!("{:.1}", refresh_ok as f64 * 100.0 / refresh_total as f64));

    // 24 hourly buckets, oldest first (bucket 24 is the partial hour at "now").
    let buckets = 25usize;
    let mut counts = vec![(0u64, 0u64); buckets];
    for b in &requests {
        if let Some(slot) = usize::try_from(b.bucket).ok().and_then(|i| counts.get_mut(i)) {
            slot.0 += b.count;
            if b.outcome != "success" {
                slot.1 += b.count;
            }
        }
    }
    let labels: Vec<String> = (0..buckets)
        .map(|i| {
            let at = (since + HOUR * u32::try_from(i).unwrap_or(0)).to_offset(time::UtcOffset::UTC);
            format!("{} {:02}:{:02} UTC", at.date(), at.hour(), at.minute())
        })
        .collect();
    let (bars, max) = chart::bars(&counts, &labels);
    let total_requests: u64 = counts.iter().map(|c| c.0).sum();
    let total_errors: u64 = counts.iter().map(|c| c.1).sum();
    Page::new(
        "overview.html",
        minijinja::context! {
            health => rows, refresh_ok, refresh_total, refresh_rate,
            bars, max, total_requests, total_errors,
            chart_width => chart::WIDTH, chart_height => chart::HEIGHT,
            first_label => labels.first(), last_label => "now",
        },
    )
    .render(&operator, "overview")
}
