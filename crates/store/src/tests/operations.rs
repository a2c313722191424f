//! The operation log on every backend (bodies for `on_every_backend!` in `tests.rs`): batches
//! go in whole, lists keep to one environment, filter and page newest first, and trimming
//! honours both the retention and the row cap.

use super::{Backend, at};
use crate::listing::PageRequest;
use crate::operations::{Operation, OperationFilter, OperationKind, OperationOutcome};

pub(crate) fn op(n: i64, environment: &str, kind: OperationKind, status: Option<u16>) -> Operation {
    let failed = status.is_none_or(|s| s >= 400);
    Operation {
        id: format!("op_{n:04}"),
        environment: environment.into(),
        at: at(1_800_000_000 + n),
        kind,
        outcome: if failed { OperationOutcome::Failure } else { OperationOutcome::Success },
        connection: Some(format!("c{}", n % 3)),
        integration: Some("app".into()),
        connector: Some("prov".into()),
        upstream_status: status,
        latency_us: 1_500,
        error_code: failed.then(|| "upstream_unreachable".into()),
        message: failed.then(|| "the API could not be reached".into()),
        method: Some("GET".into()),
        host: Some("api.example.com".into()),
        path: Some("/v1/items?key=…".into()),
    }
}

pub(crate) async fn operations_filter_page_newest_first_and_trim(b: &impl Backend) {
    let store = b.store();
    // 250 rows in one batch (more than one statement's worth), across two environments.
    let batch: Vec<Operation> = (0..250)
        .map(|n| {
            let environment = if n % 5 == 0 { "prod" } else { "default" };
            let status = match n % 4 {
                0 => Some(200),
                1 => Some(404),
                2 => Some(503),
                _ => None,
            };
            let kind = if n % 7 == 0 { OperationKind::Refresh } else { OperationKind::Request };
            op(n, environment, kind, status)
        })
        .collect();
    store.insert_operations(&batch).await.unwrap();
    store.insert_operations(&[]).await.unwrap();

    let all = |filter: OperationFilter| {
        let store = store.clone();
        async move {
            let mut ids = Vec::new();
            let mut page = PageRequest::first(30);
            loop {
                let found = store.list_operations(&filter, &page).await.unwrap();
                ids.extend(found.items.iter().map(|o| o.id.clone()));
                match found.next {
                    Some(next) => page.after = Some(next),
                    None => return ids,
                }
            }
        }
    };
    let prod = all(OperationFilter::in_environment("prod")).await;
    assert_eq!(prod.len(), 50);
    assert_eq!(prod[0], "op_0245", "newest first");
    assert!(prod.windows(2).all(|w| w[0] > w[1]));

    let first = store
        .list_operations(&OperationFilter::in_environment("default"), &PageRequest::first(1))
        .await
        .unwrap();
    assert_eq!(first.items[0], batch[249], "every field round-trips");

    let failures = all(OperationFilter {
        outcome: Some(OperationOutcome::Failure),
        ..OperationFilter::in_environment("default")
    })
    .await;
    let expected: Vec<String> =
        (0..250).rev().filter(|n| n % 5 != 0 && n % 4 != 0).map(|n| format!("op_{n:04}")).collect();
    assert_eq!(failures, expected);

    let server_errors = all(OperationFilter {
        status_class: Some(5),
        connection: Some("c1".into()),
        kind: Some(OperationKind::Request),
        since: Some(at(1_800_000_100)),
        until: Some(at(1_800_000_200)),
        ..OperationFilter::in_environment("default")
    })
    .await;
    let expected: Vec<String> = (100..200)
        .rev()
        .filter(|n| n % 5 != 0 && n % 4 == 2 && n % 3 == 1 && n % 7 != 0)
        .map(|n| format!("op_{n:04}"))
        .collect();
    assert_eq!(server_errors, expected);

    // Retention: everything before t+100 goes; then the cap keeps the newest 60.
    let removed = store.trim_operations(at(1_800_000_100), 1_000).await.unwrap();
    assert_eq!(removed, 100);
    let removed = store.trim_operations(at(1_800_000_000), 60).await.unwrap();
    assert_eq!(removed, 90);
    let left = all(OperationFilter::in_environment("default")).await.len()
        + all(OperationFilter::in_environment("prod")).await.len();
    assert_eq!(left, 60);
}
