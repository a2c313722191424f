//! Axum's `Json`, `Path` and `Query` extractors, answering a malformed body, a wrong content type
//! or a bad path or query parameter with the JSON `ErrorBody` instead of axum's plain text. The
//! message says where the input is wrong and never echoes a value from it (a value may be a
//! secret).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, path::ErrorKind};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, Refusal};

/// A JSON request body (`Content-Type: application/json`); as a response, JSON.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T> IntoResponse for Json<T>
where
    axum::Json<T>: IntoResponse,
{
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::refused(
                Refusal::UnsupportedMediaType,
                "the request body must be JSON, sent with `Content-Type: application/json`",
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::invalid_request(format!(
                "the request body is not valid JSON: {}",
                without_values(&innermost(&e))
            )),
            JsonRejection::JsonDataError(e) => {
                let error = ApiError::invalid_request(format!(
                    "the request body does not fit: {}",
                    without_values(&innermost(&e))
                ));
                match field_of(&e) {
                    Some(field) => error.with_field(field),
                    None => error,
                }
            }
            JsonRejection::BytesRejection(_) => {
                ApiError::invalid_request("the request body could not be read")
            }
            other => ApiError::invalid_request(format!("the request body is refused: {other}")),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(e) => {
                ApiError::invalid_request(match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        format!("path parameter `{key}` is not valid UTF-8")
                    }
                    ErrorKind::ParseErrorAtKey { key, expected_type, .. } => {
                        format!("path parameter `{key}` must be {expected_type}")
                    }
                    ErrorKind::ParseErrorAtIndex { index, expected_type, .. } => {
                        format!("path parameter {index} must be {expected_type}")
                    }
                    // A parameter its type refuses (an id that breaks its rules): the type's
                    // message, which names the rule and never the value.
                    ErrorKind::DeserializeError { key, message, .. } => {
                        return ApiError::invalid_request(format!(
                            "path parameter `{key}`: {}",
                            without_values(message)
                        ))
                        .with_field(key.as_str());
                    }
                    _ => "the path parameters are malformed".to_string(),
                })
            }
            PathRejection::MissingPathParams(e) => ApiError::internal(e),
            other => ApiError::internal(other),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        match rejection {
            QueryRejection::FailedToDeserializeQueryString(e) => ApiError::invalid_request(
                format!("the query string is malformed: {}", without_values(&innermost(&e))),
            ),
            other => ApiError::invalid_request(format!("the query string is malformed: {other}")),
        }
    }
}

/// The deepest source's message: serde's own, without axum's prefix.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// The body field a data error is at (`id`, `credentials.token`), when serde names one.
fn field_of(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(e) = e.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            let path = e.path().to_string();
            return (path != ".").then_some(path);
        }
        current = e.source();
    }
    None
}

/// Serde's message with the offending value cut out: `invalid type: string "s3cr3t", expected a
/// map` becomes `invalid type, expected a map`. (Serde puts the value between the kind and the
/// last `, expected`; there is no structured access to the kind alone.)
pub(crate) fn without_values(message: &str) -> String {
    for kind in ["invalid type", "invalid value", "invalid length", "unknown variant"] {
        let Some(start) = message.find(kind) else { continue };
        let after = start + kind.len();
        if let Some(expected) = message.rfind(", expected").filter(|&e| e >= after) {
            return format!("{}{kind}{}", &message[..start], &message[expected..]);
        }
        return format!("{}{kind}", &message[..start]);
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn serde_messages_lose_the_value_and_keep_the_place() {
        assert_eq!(
            without_values(
                r#"credentials.token: invalid type: integer `123456`, expected a string at line 1 column 30"#
            ),
            "credentials.token: invalid type, expected a string at line 1 column 30"
        );
        assert_eq!(
            without_values(r#"invalid value: string "s3cr3t, expected x", expected a map"#),
            "invalid value, expected a map"
        );
        assert_eq!(
            without_values("unknown field `secret`, expected one of `id`, `connector`"),
            "unknown field `secret`, expected one of `id`, `connector`"
        );
        assert_eq!(without_values("unknown variant `s3cr3t`"), "unknown variant");
    }
}
