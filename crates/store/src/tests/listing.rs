//! Filtered, paged lists, tags, metadata and end users: written once, run on every backend.

use std::collections::BTreeMap;

use super::{Backend, at, connection, integration, session};
use crate::listing::{ConnectionFilter, Cursor, IntegrationFilter, PageRequest};
use crate::model::{ConnectionDetails, ConnectionRecord, ConnectionStatus, EndUser};

/// A connection without credentials, created at `seconds`, with these fields.
fn row(
    id: &str,
    seconds: i64,
    integration: &str,
    status: ConnectionStatus,
    user: &str,
    tags: &[(&str, &str)],
) -> ConnectionRecord {
    let mut c = connection(id, &[("api_key", "k")]);
    c.created_at = at(seconds);
    c.integration = Some(integration.into());
    c.status = status;
    c.end_user = Some(EndUser::new(user));
    c.tags = tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    c
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The ids of every connection `filter` selects, walking pages of `limit`.
async fn walk(b: &impl Backend, filter: &ConnectionFilter, limit: u32) -> Vec<String> {
    let store = b.store();
    let mut ids = Vec::new();
    let mut page = PageRequest::first(limit);
    loop {
        let got = store.list_connections(filter, &page).await.unwrap();
        assert!(got.items.len() <= limit as usize);
        ids.extend(got.items.into_iter().map(|c| c.id));
        match got.next {
            // The cursor goes out and comes back as its token, as it does through the API.
            Some(next) => page.after = Some(Cursor::parse(&next.token()).unwrap()),
            None => return ids,
        }
    }
}

async fn seed(b: &impl Backend) {
    use ConnectionStatus::{NeedsReauth, Ok};
    let store = b.store();
    for c in [
        row("a", 10, "gh", Ok, "u1", &[("org", "acme"), ("plan", "pro")]),
        row("b", 11, "gh", NeedsReauth, "u1", &[("org", "acme"), ("plan", "free")]),
        row("c", 12, "slack", Ok, "u2", &[("org", "acme"), ("plan", "pro")]),
        row("d", 13, "slack", Ok, "u2", &[("org", "globex"), ("plan", "pro")]),
        row("e", 14, "gh", Ok, "u3", &[]),
    ] {
        store.insert_connection(&c).await.unwrap();
    }
}

pub(crate) async fn lists_filter_on_each_field(b: &impl Backend) {
    seed(b).await;
    let all = ConnectionFilter::default();
    assert_eq!(walk(b, &all, 100).await, ["a", "b", "c", "d", "e"]);
    let by_integration = ConnectionFilter { integration: Some("gh".into()), ..all.clone() };
    assert_eq!(walk(b, &by_integration, 100).await, ["a", "b", "e"]);
    let by_status = ConnectionFilter { status: Some(ConnectionStatus::Ok), ..all.clone() };
    assert_eq!(walk(b, &by_status, 100).await, ["a", "c", "d", "e"]);
    let both = ConnectionFilter { status: Some(ConnectionStatus::Ok), ..by_integration };
    assert_eq!(walk(b, &both, 100).await, ["a", "e"]);
    let by_user = ConnectionFilter { end_user: Some("u2".into()), ..all.clone() };
    assert_eq!(walk(b, &by_user, 100).await, ["c", "d"]);
    let nobody = ConnectionFilter { end_user: Some("nobody".into()), ..all.clone() };
    assert!(walk(b, &nobody, 100).await.is_empty());
    let one_tag = ConnectionFilter { tags: tags(&[("org", "globex")]), ..all };
    assert_eq!(walk(b, &one_tag, 100).await, ["d"]);

    // What a page holds is the whole summary, tags, metadata and end user included.
    let store = b.store();
    let page =
        store.list_connections(&ConnectionFilter::default(), &PageRequest::first(1)).await.unwrap();
    let expected = store.get_connection("a").await.unwrap().unwrap().summary();
    assert_eq!(page.items, [expected]);
    assert_eq!(page.items[0].tags, tags(&[("org", "acme"), ("plan", "pro")]));
    assert_eq!(page.items[0].secret_fields, ["api_key"]);
}

pub(crate) async fn tag_filters_are_anded(b: &impl Backend) {
    seed(b).await;
    let filter =
        |pairs: &[(&str, &str)]| ConnectionFilter { tags: tags(pairs), ..Default::default() };
    assert_eq!(walk(b, &filter(&[("org", "acme")]), 100).await, ["a", "b", "c"]);
    assert_eq!(walk(b, &filter(&[("plan", "pro")]), 100).await, ["a", "c", "d"]);
    assert_eq!(walk(b, &filter(&[("org", "acme"), ("plan", "pro")]), 100).await, ["a", "c"]);
    assert!(walk(b, &filter(&[("org", "globex"), ("plan", "free")]), 100).await.is_empty());
    assert!(walk(b, &filter(&[("org", "ACME")]), 100).await.is_empty(), "values match exactly");
    let with_user = ConnectionFilter { end_user: Some("u1".into()), ..filter(&[("plan", "pro")]) };
    assert_eq!(walk(b, &with_user, 100).await, ["a"]);
}

pub(crate) async fn a_cursor_walk_returns_every_row_once_in_order(b: &impl Backend) {
    let store = b.store();
    // 300 rows; each creation second holds three, so the id breaks ties inside a page and
    // across a page boundary. Inserted out of order.
    let mut expected = Vec::new();
    for n in (0..300).rev() {
        let id = format!("c{:03}", (n * 7) % 300);
        let mut c = row(&id, 1_000 + n / 3, "gh", ConnectionStatus::Ok, "u", &[("k", "v")]);
        c.credentials.clear();
        store.insert_connection(&c).await.unwrap();
        expected.push((c.created_at, id));
    }
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    for limit in [1, 7, 100, 299, 300, 1000] {
        assert_eq!(walk(b, &ConnectionFilter::default(), limit).await, expected, "limit {limit}");
    }
    let tagged = ConnectionFilter {
        integration: Some("gh".into()),
        tags: tags(&[("k", "v")]),
        ..Default::default()
    };
    assert_eq!(walk(b, &tagged, 13).await, expected);

    // A row inserted behind the cursor during the walk is not seen; one ahead of it is.
    let first = store
        .list_connections(&ConnectionFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    let mut behind = row("b-early", 1, "gh", ConnectionStatus::Ok, "u", &[]);
    behind.credentials.clear();
    store.insert_connection(&behind).await.unwrap();
    let mut ahead = row("z-late", 5_000, "gh", ConnectionStatus::Ok, "u", &[]);
    ahead.credentials.clear();
    store.insert_connection(&ahead).await.unwrap();
    let mut rest = Vec::new();
    let mut page = PageRequest { limit: 50, after: first.next };
    loop {
        let got = store.list_connections(&ConnectionFilter::default(), &page).await.unwrap();
        rest.extend(got.items.into_iter().map(|c| c.id));
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let mut want = expected[10..].to_vec();
    want.push("z-late".into());
    assert_eq!(rest, want);
}

pub(crate) async fn page_limits_are_bounded(b: &impl Backend) {
    seed(b).await;
    let store = b.store();
    let all = ConnectionFilter::default();
    let one = store.list_connections(&all, &PageRequest::first(0)).await.unwrap();
    assert_eq!(one.items.len(), 1, "0 reads as 1");
    assert!(one.next.is_some());
    let exact = store.list_connections(&all, &PageRequest::first(5)).await.unwrap();
    assert_eq!(exact.items.len(), 5);
    assert_eq!(exact.next, None, "a page that ends the list says so");
    let big = store.list_connections(&all, &PageRequest::first(u32::MAX)).await.unwrap();
    assert_eq!(big.items.len(), 5);
    assert_eq!(big.next, None);
}

pub(crate) async fn details_change_and_the_filters_follow(b: &impl Backend) {
    seed(b).await;
    let store = b.store();
    let before = store.get_connection("a").await.unwrap().unwrap();
    let details = ConnectionDetails {
        tags: Some(tags(&[("org", "initech")])),
        metadata: Some(serde_json::json!({ "n": 1 }).as_object().unwrap().clone()),
        end_user: Some(Some(EndUser {
            id: "u9".into(),
            email: Some("u9@example.com".into()),
            display_name: None,
        })),
        label: Some(None),
    };
    assert_eq!(store.update_connection_details("a", &details).await.unwrap(), before.version + 1);
    let after = store.get_connection("a").await.unwrap().unwrap();
    assert_eq!(after.tags, tags(&[("org", "initech")]));
    assert_eq!(after.metadata["n"], 1);
    assert_eq!(after.end_user.as_ref().unwrap().email.as_deref(), Some("u9@example.com"));
    assert_eq!(after.label, None);
    assert_eq!(after.credentials, before.credentials, "credentials untouched");
    assert_eq!(after.config, before.config);

    let filter =
        |pairs: &[(&str, &str)]| ConnectionFilter { tags: tags(pairs), ..Default::default() };
    assert_eq!(walk(b, &filter(&[("org", "initech")]), 10).await, ["a"]);
    assert_eq!(walk(b, &filter(&[("org", "acme")]), 10).await, ["b", "c"]);
    assert!(walk(b, &filter(&[("plan", "pro"), ("org", "initech")]), 10).await.is_empty());
    let by_user = ConnectionFilter { end_user: Some("u9".into()), ..Default::default() };
    assert_eq!(walk(b, &by_user, 10).await, ["a"]);

    // `None` keeps a field; `Some(None)` clears the end user.
    let clear = ConnectionDetails { end_user: Some(None), ..Default::default() };
    store.update_connection_details("a", &clear).await.unwrap();
    let cleared = store.get_connection("a").await.unwrap().unwrap();
    assert_eq!(cleared.end_user, None);
    assert_eq!(cleared.tags, tags(&[("org", "initech")]));
    assert!(walk(b, &by_user, 10).await.is_empty());

    let missing = store.update_connection_details("nope", &clear).await.unwrap_err();
    assert!(matches!(missing, crate::StoreError::NotFound { .. }), "{missing}");

    // Deleting a connection takes its tag rows with it.
    assert!(store.delete_connection("a").await.unwrap());
    assert_eq!(b.count("SELECT COUNT(*) FROM connection_tags WHERE connection_id = 'a'").await, 0);
    assert_eq!(b.count("SELECT COUNT(*) FROM connection_tags").await, 6);
}

pub(crate) async fn one_end_user_holds_several_connections_of_one_integration(b: &impl Backend) {
    let store = b.store();
    for (id, second) in [("x1", 1), ("x2", 2), ("x3", 3)] {
        store
            .insert_connection(&row(id, second, "gh", ConnectionStatus::Ok, "same-user", &[]))
            .await
            .unwrap();
    }
    let mine = ConnectionFilter {
        integration: Some("gh".into()),
        end_user: Some("same-user".into()),
        ..Default::default()
    };
    assert_eq!(walk(b, &mine, 2).await, ["x1", "x2", "x3"]);
}

pub(crate) async fn integrations_page_in_creation_order(b: &impl Backend) {
    let store = b.store();
    for (id, second) in [("zeta", 1), ("alpha", 3), ("mid", 2), ("beta", 3)] {
        let mut i = integration(id, None);
        i.created_at = at(second);
        store.put_integration(&i).await.unwrap();
    }
    let mut ids = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = store.list_integrations(&IntegrationFilter::default(), &page).await.unwrap();
        ids.extend(got.items.into_iter().map(|i| i.id));
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    assert_eq!(ids, ["zeta", "mid", "alpha", "beta"]);
}

pub(crate) async fn connect_sessions_keep_their_end_user_tags_and_metadata(b: &impl Backend) {
    let store = b.store();
    let mut s = session("cs-t", "th-t");
    s.end_user = Some(EndUser {
        id: "u1".into(),
        email: Some("u1@example.com".into()),
        display_name: Some("Ann".into()),
    });
    s.tags = tags(&[("org", "acme"), ("plan", "pro")]);
    store.create_connect_session(&s).await.unwrap();
    let got = store.get_connect_session("cs-t").await.unwrap().unwrap();
    assert_eq!(got.end_user, s.end_user);
    assert_eq!(got.tags, s.tags);
    assert_eq!(got.metadata, s.metadata);
    assert_eq!(got, s);
}

/// Every list is of one environment: rows of another one are not in it, whatever the filter.
pub(crate) async fn lists_keep_to_one_environment(b: &impl Backend) {
    let store = b.store();
    seed(b).await;
    let mut elsewhere = row("p1", 15, "gh", ConnectionStatus::Ok, "u1", &[("org", "acme")]);
    elsewhere.environment = "prod".into();
    store.insert_connection(&elsewhere).await.unwrap();
    let mut prod_integration = integration("gh", None);
    prod_integration.environment = "prod".into();
    store.put_integration(&prod_integration).await.unwrap();
    store.put_integration(&integration("gh", None)).await.unwrap();

    let acme = ConnectionFilter { tags: tags(&[("org", "acme")]), ..Default::default() };
    assert_eq!(walk(b, &acme, 2).await, ["a", "b", "c"]);
    let prod = ConnectionFilter::in_environment("prod");
    assert_eq!(walk(b, &prod, 2).await, ["p1"]);
    let prod_acme = ConnectionFilter { tags: tags(&[("org", "acme")]), ..prod.clone() };
    assert_eq!(walk(b, &prod_acme, 2).await, ["p1"]);
    let by_user = ConnectionFilter { end_user: Some("u1".into()), ..prod };
    assert_eq!(walk(b, &by_user, 2).await, ["p1"]);
    assert!(walk(b, &ConnectionFilter::in_environment("staging"), 2).await.is_empty());

    for environment in ["default", "prod"] {
        let page = store
            .list_integrations(
                &IntegrationFilter::in_environment(environment),
                &PageRequest::default(),
            )
            .await
            .unwrap();
        let found: Vec<_> =
            page.items.iter().map(|i| (i.environment.as_str(), i.id.as_str())).collect();
        assert_eq!(found, [(environment, "gh")]);
    }
}
