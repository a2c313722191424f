//! The connect page's screens (picker, form, done, failed) rendered from `web/page.html`, with
//! the words the end user reads for each outcome and the headers every page carries.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::connector::{FieldProblem, FieldSpec};
use latchkey_engine::branding::Branding;
use latchkey_engine::{EngineError, SessionForm};
use latchkey_store::ConnectSession;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, context};
use serde::Serialize;

use super::branding::BrandView;
use super::{Messages, Pick};
use crate::AppState;

const PAGE: &str = include_str!("../../../../web/page.html");

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("page.html", PAGE).unwrap_or_else(|e| panic!("web/page.html: {e}"));
        env
    })
}

/// What a page shows besides the common frame.
pub(super) enum Screen {
    /// The integrations a link offers.
    Pick { title: String, choices: Vec<ChoiceView> },
    /// A connector's fields; where the form's submission may lead besides this server.
    Form { title: String, ctx: Value, leads_to: Vec<String> },
    /// A connection was made.
    Done { message: String, result: serde_json::Value, origin: Option<String> },
    /// Nothing was connected.
    Failed {
        status: StatusCode,
        message: String,
        result: Option<serde_json::Value>,
        origin: Option<String>,
    },
}

/// One integration in the picker.
#[derive(Debug, Serialize)]
pub(super) struct ChoiceView {
    name: String,
    category: Option<String>,
    /// The integration's own logo, else the name's first letter is drawn.
    logo: Option<String>,
    initial: String,
    /// What the search matches: name, connector id and category, lowercased.
    search: String,
    href: String,
}

/// A form's refusals: one for the form, and one per field.
#[derive(Debug, Default)]
pub(super) struct FormErrors {
    pub(super) summary: Option<String>,
    pub(super) fields: BTreeMap<String, String>,
}

/// A field as the template reads it.
#[derive(Debug, Serialize)]
struct FieldView<'a> {
    #[serde(flatten)]
    spec: &'a FieldSpec,
    value: Option<String>,
    error: Option<&'a String>,
}

/// The page for `screen`, in the session's branding and language.
pub(super) async fn render(
    state: &AppState,
    messages: &Messages,
    session: Option<&ConnectSession>,
    screen: Screen,
) -> Response {
    let brand = brand_of(state, session).await;
    let nonce = latchkey_engine::random_token(16);
    let lang = messages.lang();
    let t = translator(*messages);
    let common = context! { lang, brand, nonce, t };
    let leads_to = match &screen {
        Screen::Form { leads_to, .. } => leads_to.join(" "),
        _ => String::new(),
    };
    let (status, ctx) = match screen {
        Screen::Pick { title, choices } => {
            (StatusCode::OK, context! { screen => "pick", title, choices, ..common })
        }
        Screen::Form { title, ctx, .. } => (
            StatusCode::OK,
            context! { screen => "form", title, ..minijinja::value::merge_maps([ctx, common]) },
        ),
        Screen::Done { message, result, origin } => (
            StatusCode::OK,
            context! { screen => "done", title => messages.get("title-done", &[]), message,
            result, origin, ..common },
        ),
        Screen::Failed { status, message, result, origin } => (
            status,
            context! { screen => "failed", title => messages.get("title-failed", &[]), message,
            result, origin, ..common },
        ),
    };
    let html =
        templates().get_template("page.html").and_then(|t| t.render(ctx)).unwrap_or_else(|e| {
            tracing::error!(error = %e, "page template failed");
            "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
        });
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(headers, &nonce, &leads_to);
    response
}

/// `t(id, name=…)` in the template: the message in the page's language.
fn translator(messages: Messages) -> Value {
    Value::from_function(move |id: &str, kwargs: Kwargs| -> Result<String, minijinja::Error> {
        let mut args = Vec::new();
        for key in kwargs.args() {
            let value: Value = kwargs.get(key)?;
            args.push((key.to_string(), value.to_string()));
        }
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Ok(messages.get(id, &args))
    })
}

/// `leads_to`: the sources a form's submission may be redirected to besides `'self'` (the
/// app's origin for a full-page flow; the provider for config asked before a consent
/// redirect), which browsers check `form-action` against.
fn secure_headers(headers: &mut HeaderMap, nonce: &str, leads_to: &str) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Logos are inline `data:` images; nothing else may load, and only this response's
    // script and styles (the branding's custom CSS among them) run.
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         img-src data:; form-action 'self' {leads_to}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The branding a session's page wears: its integration's over its environment's; the
/// default look when there is no session or the branding cannot be read.
async fn brand_of(state: &AppState, session: Option<&ConnectSession>) -> BrandView {
    let Some(session) = session else { return BrandView::from(Branding::default()) };
    let integration = session.choices.is_empty().then_some(session.integration.as_str());
    match state.engine.branding().effective(&session.environment, integration).await {
        Ok(b) => BrandView::from(b),
        Err(e) => {
            tracing::warn!(error = %e, "connect page: branding unreadable");
            BrandView::from(Branding::default())
        }
    }
}

/// The connector's name for a session, for the words of its outcome.
pub(super) async fn connector_name(state: &AppState, session: &ConnectSession) -> String {
    let connect = state.engine.connect();
    match connect.session_form(session).await {
        Ok(form) => form.name,
        Err(_) => session.integration.clone(),
    }
}

/// The picker for a link that offers several integrations.
pub(super) async fn picker(
    state: &AppState,
    asker: &super::Asker,
    session: &ConnectSession,
    token: &str,
) -> Response {
    let messages = &asker.messages(Some(session));
    let choices = match state.engine.connect().session_choices(session).await {
        Ok(c) => c,
        Err(e) => return super::failure_page(state, asker, Some(session), &e).await,
    };
    let mut views = Vec::with_capacity(choices.len());
    for c in choices {
        let logo = state
            .engine
            .branding()
            .effective(&session.environment, Some(&c.integration))
            .await
            .ok()
            .and_then(|b| b.logo);
        let category = c.category.as_deref().map(|id| category_name(messages, id));
        views.push(ChoiceView {
            initial: c
                .name
                .chars()
                .next()
                .map(|ch| ch.to_uppercase().to_string())
                .unwrap_or_default(),
            search: format!(
                "{} {} {} {}",
                c.name,
                c.connector,
                c.category.as_deref().unwrap_or_default(),
                category.as_deref().unwrap_or_default()
            )
            .to_lowercase(),
            href: format!("/connect/{}?integration={}", token, url_escape(&c.integration)),
            name: c.name,
            category,
            logo,
        });
    }
    render(
        state,
        messages,
        Some(session),
        Screen::Pick { title: messages.get("title-pick", &[]), choices: views },
    )
    .await
}

/// A catalog category's name in the page's language; a custom connector's own category as
/// written.
fn category_name(messages: &Messages, id: &str) -> String {
    if latchkey_core::connector::CATEGORIES.contains(&id) {
        messages.get(&format!("category-{id}"), &[])
    } else {
        id.to_string()
    }
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The form for a session: its fields with their help, the values typed so far (never a
/// secret's), and the errors of the last submission.
pub(super) async fn form(
    state: &AppState,
    messages: &Messages,
    session: &ConnectSession,
    spec: &SessionForm,
    pick: &Pick,
    typed: &BTreeMap<String, String>,
    errors: Option<FormErrors>,
) -> Response {
    let errors = errors.unwrap_or_default();
    let fields: Vec<FieldView<'_>> = spec
        .fields
        .iter()
        .map(|f| FieldView {
            spec: f,
            value: if f.secret {
                None
            } else {
                typed.get(&f.key).cloned().or_else(|| f.default.clone())
            },
            error: errors.fields.get(&f.key),
        })
        .collect();
    let query = pick.integration.as_deref().map(|i| format!("?integration={}", url_escape(i)));
    let back = (!session.choices.is_empty()).then(|| "?".to_string());
    let ctx = context! {
        fields,
        name => spec.name,
        redirect => spec.redirect,
        error => errors.summary,
        action => query.unwrap_or_default(),
        back,
    };
    let title = messages.get("title-connect", &[("name", &spec.name)]);
    let mut leads_to = Vec::new();
    if session.return_url.is_some() {
        leads_to.extend(session.allowed_origin.clone());
    }
    if spec.redirect {
        // The provider's authorize URL may depend on the config typed here (a shop's own
        // host), so any host of the public URL's scheme or https.
        leads_to.push("https:".into());
        if state.public_url.scheme() == "http" {
            leads_to.push("http:".into());
        }
    }
    let status = if errors.fields.is_empty() && ctx.get_attr("error").is_ok_and(|e| e.is_none()) {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut response =
        render(state, messages, Some(session), Screen::Form { title, ctx, leads_to }).await;
    *response.status_mut() = status;
    response
}

/// The words for each refused field of a submission.
pub(super) fn field_errors(
    messages: &Messages,
    spec: &SessionForm,
    problems: &BTreeMap<String, FieldProblem>,
) -> FormErrors {
    let mut fields = BTreeMap::new();
    for field in &spec.fields {
        let Some(problem) = problems.get(&field.key) else { continue };
        let label = field.label.as_str();
        let words = match (problem, &field.example) {
            (FieldProblem::Missing, _) => messages.get("field-missing", &[("label", label)]),
            (FieldProblem::Mismatch, Some(example)) => {
                messages.get("field-mismatch-example", &[("label", label), ("example", example)])
            }
            (FieldProblem::Mismatch, None) => messages.get("field-mismatch", &[("label", label)]),
        };
        fields.insert(field.key.clone(), words);
    }
    FormErrors { summary: Some(messages.get("form-errors", &[])), fields }
}

/// A field problem's code for the headless SDK.
pub(super) fn problem_code(problem: FieldProblem) -> &'static str {
    match problem {
        FieldProblem::Missing => "missing",
        FieldProblem::Mismatch => "mismatch",
    }
}

/// What the end user reads when a submission fails: for a failed credential test, what the
/// API answered (its status and reason phrase, never its body) and what to do; otherwise the
/// outcome's words.
pub(super) fn failure_words(
    messages: &Messages,
    name: &str,
    error: &EngineError,
    public: &str,
) -> String {
    if let EngineError::TestFailed { status } = error {
        let reason = StatusCode::from_u16(*status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map_or_else(|| status.to_string(), |r| format!("{status} {r}"));
        let id = match status {
            401 => "test-unauthorized",
            403 => "test-forbidden",
            429 => "test-rate-limited",
            500.. => "test-unavailable",
            _ => "test-other",
        };
        return messages.get(id, &[("name", name), ("status", &reason)]);
    }
    match error.code() {
        "upstream_unreachable" | "upstream_timeout" => {
            messages.get("unreachable", &[("name", name)])
        }
        code => outcome_words(messages, code, public),
    }
}

/// What the end user reads for a flow that ended with `code`; the public message where no
/// plainer words are written.
pub(super) fn outcome_words(messages: &Messages, code: &str, public: &str) -> String {
    let id = match code {
        "access_denied"
        | "invalid_state"
        | "flow_expired"
        | "credential_test_failed"
        | "connect_session_unusable" => format!("outcome-{code}"),
        "provider_error" | "missing_code" | "issuer_mismatch" => "outcome-provider".into(),
        "token_refused"
        | "token_endpoint_unavailable"
        | "token_response_malformed"
        | "integration_misconfigured" => "outcome-token".into(),
        _ => return messages.get("outcome-other", &[("message", public)]),
    };
    messages.get(&id, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_credential_test_says_what_the_api_answered() {
        let en = Messages::choose(Some("en"), None);
        let words = failure_words(&en, "Acme", &EngineError::TestFailed { status: 401 }, "");
        assert_eq!(
            words,
            "Acme did not accept these details (it answered 401 Unauthorized). Check them and try again."
        );
        let words = failure_words(&en, "Acme", &EngineError::TestFailed { status: 403 }, "");
        assert!(words.contains("403 Forbidden") && words.contains("permission"), "{words}");
        let fr = Messages::choose(Some("fr"), None);
        let words = failure_words(&fr, "Acme", &EngineError::TestFailed { status: 503 }, "");
        assert!(
            words.contains("503 Service Unavailable") && words.contains("Réessayez"),
            "{words}"
        );
    }

    #[test]
    fn every_catalog_category_has_a_name_in_each_language() {
        for (lang, _) in super::super::i18n::LANGUAGES {
            let m = Messages::choose(Some(lang), None);
            for id in latchkey_core::connector::CATEGORIES {
                let name = category_name(&m, id);
                assert!(!name.starts_with("category-"), "{lang}: {id}");
            }
        }
        let fr = Messages::choose(Some("fr"), None);
        assert_eq!(category_name(&fr, "developer-tools"), "Outils de développement");
        assert_eq!(category_name(&fr, "our-own"), "our-own", "a custom category as written");
    }

    #[test]
    fn each_outcome_has_plain_words_in_each_language() {
        for (lang, _) in super::super::i18n::LANGUAGES {
            let m = Messages::choose(Some(lang), None);
            for code in ["access_denied", "flow_expired", "token_refused", "missing_code"] {
                let words = outcome_words(&m, code, "raw");
                assert!(
                    !words.contains("raw") && !words.starts_with("outcome-"),
                    "{lang} {code}: {words}"
                );
            }
            assert!(outcome_words(&m, "something_else", "raw text").contains("raw text"));
        }
    }
}
