//! Agent tokens on every backend (bodies for `on_every_backend!` in `tests.rs`): stored by
//! digest, counted exactly under concurrency up to their budget, listed per environment and
//! revoked once.

use super::{Backend, at};
use crate::StoreError;
use crate::agent_tokens::{AgentTokenRecord, AgentTokenUse};

fn token(id: &str, environment: &str, max: Option<u64>, s: i64) -> AgentTokenRecord {
    AgentTokenRecord {
        id: id.into(),
        environment: environment.into(),
        token_hash: format!("hash-{id}"),
        connection: "c1".into(),
        name: "triage agent".into(),
        methods: vec!["GET".into()],
        paths: vec!["/repos/*/issues".into(), "/user".into()],
        max_requests: max,
        used_requests: 0,
        created_at: at(s),
        expires_at: at(s + 3600),
        revoked_at: None,
    }
}

pub(crate) async fn agent_tokens_count_their_budget_exactly_and_revoke_once(b: &impl Backend) {
    let store = b.store();
    let limited = token("agt_a", "default", Some(5), 1_800_000_000);
    store.create_agent_token(&limited).await.unwrap();
    store.create_agent_token(&token("agt_b", "default", None, 1_800_000_001)).await.unwrap();
    store.create_agent_token(&token("agt_c", "prod", None, 1_800_000_002)).await.unwrap();
    assert!(matches!(
        store.create_agent_token(&limited).await,
        Err(StoreError::Conflict { kind: "agent token", .. })
    ));
    assert_eq!(store.agent_token_by_hash("hash-agt_a").await.unwrap(), Some(limited.clone()));
    assert_eq!(store.agent_token_by_hash("nope").await.unwrap(), None);

    // 20 requests at once on a budget of 5: exactly 5 are counted, numbered 1 to 5.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.spawn(async move { store.use_agent_token("agt_a").await });
    }
    let uses = tasks.join_all().await;
    let mut counted: Vec<u64> = uses
        .iter()
        .filter_map(|u| match u.as_ref().unwrap() {
            AgentTokenUse::Counted(n) => Some(*n),
            _ => None,
        })
        .collect();
    counted.sort_unstable();
    assert_eq!(counted, [1, 2, 3, 4, 5]);
    assert_eq!(uses.iter().filter(|u| matches!(u, Ok(AgentTokenUse::Spent))).count(), 15);
    assert_eq!(store.use_agent_token("agt_b").await.unwrap(), AgentTokenUse::Counted(1));
    assert_eq!(store.use_agent_token("agt_zz").await.unwrap(), AgentTokenUse::Missing);

    let listed: Vec<String> =
        store.list_agent_tokens("default").await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(listed, ["agt_b", "agt_a"], "newest first, one environment");
    assert!(!store.revoke_agent_token("prod", "agt_a", at(1_800_000_010)).await.unwrap());
    assert!(store.revoke_agent_token("default", "agt_a", at(1_800_000_010)).await.unwrap());
    assert!(!store.revoke_agent_token("default", "agt_a", at(1_800_000_011)).await.unwrap());
    let revoked = store.agent_token_by_hash("hash-agt_a").await.unwrap().unwrap();
    assert_eq!((revoked.revoked_at, revoked.used_requests), (Some(at(1_800_000_010)), 5));
}
