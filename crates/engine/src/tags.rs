//! What the app keeps on connections and connect sessions in its own terms — tags for
//! filtering, free metadata, and the end user who owns the connection — checked here once,
//! before anything is stored. A refusal is [`EngineError::InvalidRequest`] naming the field at
//! fault (`tags.Org`, `metadata`, `end_user.email`).

use latchkey_store::{EndUser, Metadata, Tags};

use crate::EngineError;

/// The most tags one connection carries.
pub const MAX_TAGS: usize = 10;
/// The longest tag key, in characters (`a-z 0-9 _ - .`).
pub const MAX_TAG_KEY: usize = 64;
/// The longest tag value, in characters.
pub const MAX_TAG_VALUE: usize = 255;
/// The largest metadata object, serialised as JSON, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The longest end-user id, email, display name or label, in characters.
pub const MAX_TEXT: usize = 255;

/// Checks tags: at most [`MAX_TAGS`], keys of 1 to [`MAX_TAG_KEY`] characters of
/// `a-z 0-9 _ - .`, values of at most [`MAX_TAG_VALUE`] characters without control characters.
pub fn check_tags(tags: &Tags) -> Result<(), EngineError> {
    if tags.len() > MAX_TAGS {
        return Err(EngineError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags are allowed, {} were given", tags.len()),
        ));
    }
    for (key, value) in tags {
        let field = format!("tags.{}", key.chars().take(MAX_TAG_KEY).collect::<String>());
        if !tag_key_is_valid(key) {
            return Err(EngineError::invalid(
                field,
                format!(
                    "a tag key is 1 to {MAX_TAG_KEY} characters of lower-case `a-z`, `0-9`, `_`, \
                     `-` and `.`"
                ),
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(EngineError::invalid(
                field,
                format!("a tag value is at most {MAX_TAG_VALUE} characters"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(EngineError::invalid(field, "a tag value holds no control characters"));
        }
    }
    Ok(())
}

/// Whether `key` is a valid tag key (see [`check_tags`]).
pub fn tag_key_is_valid(key: &str) -> bool {
    (1..=MAX_TAG_KEY).contains(&key.len())
        && key.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.'))
}

/// Checks metadata: at most [`MAX_METADATA_BYTES`] once serialised.
pub fn check_metadata(metadata: &Metadata) -> Result<(), EngineError> {
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_METADATA_BYTES {
        return Err(EngineError::invalid(
            "metadata",
            format!("metadata is at most {MAX_METADATA_BYTES} bytes of JSON, this is {size}"),
        ));
    }
    Ok(())
}

/// Checks an end user: an id of 1 to [`MAX_TEXT`] characters, an email address that looks like
/// one (`local@domain`, no spaces), and a display name of at most [`MAX_TEXT`] characters;
/// none with control characters.
pub fn check_end_user(user: &EndUser) -> Result<(), EngineError> {
    check_text("end_user.id", &user.id, false)?;
    if let Some(email) = &user.email {
        check_text("end_user.email", email, false)?;
        // Deliverability is the app's business; this only keeps out what is plainly not an
        // address (a full RFC 5322 parser would accept forms no app wants here).
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if !valid {
            return Err(EngineError::invalid(
                "end_user.email",
                "end_user.email must be an email address such as ann@example.com",
            ));
        }
    }
    if let Some(name) = &user.display_name {
        check_text("end_user.display_name", name, true)?;
    }
    Ok(())
}

/// Checks a connection label: at most [`MAX_TEXT`] characters, no control characters.
pub fn check_label(label: &str) -> Result<(), EngineError> {
    check_text("label", label, true)
}

/// Checks all three at once.
pub(crate) fn check_all(
    tags: &Tags,
    metadata: &Metadata,
    end_user: Option<&EndUser>,
) -> Result<(), EngineError> {
    check_tags(tags)?;
    check_metadata(metadata)?;
    end_user.map(check_end_user).transpose()?;
    Ok(())
}

fn check_text(field: &str, text: &str, may_be_empty: bool) -> Result<(), EngineError> {
    if text.is_empty() && !may_be_empty {
        return Err(EngineError::invalid(field, format!("{field} must not be empty")));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(EngineError::invalid(
            field,
            format!("{field} is at most {MAX_TEXT} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(EngineError::invalid(field, format!("{field} holds no control characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(result: Result<(), EngineError>) -> String {
        match result {
            Err(EngineError::InvalidRequest { field, .. }) => field,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn tag_limits_hold_exactly_at_their_edges() {
        let ten: Tags = (0..10).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(check_tags(&ten).is_ok());
        let mut eleven = ten.clone();
        eleven.insert("k10".into(), "v".into());
        assert_eq!(field(check_tags(&eleven)), "tags");

        let key = "a".repeat(64);
        assert!(check_tags(&tags(&[(&key, "v")])).is_ok());
        let long = "a".repeat(65);
        assert_eq!(field(check_tags(&tags(&[(&long, "v")]))), format!("tags.{}", "a".repeat(64)));
        assert!(check_tags(&tags(&[("org_1-x.y", "")])).is_ok());
        assert_eq!(field(check_tags(&tags(&[("Org", "acme")]))), "tags.Org");
        assert_eq!(field(check_tags(&tags(&[("", "acme")]))), "tags.");
        assert_eq!(field(check_tags(&tags(&[("a b", "acme")]))), "tags.a b");
        assert_eq!(field(check_tags(&tags(&[("é", "acme")]))), "tags.é");

        let value = "é".repeat(255);
        assert!(check_tags(&tags(&[("org", &value)])).is_ok(), "characters, not bytes");
        assert_eq!(field(check_tags(&tags(&[("org", &"x".repeat(256))]))), "tags.org");
        assert_eq!(field(check_tags(&tags(&[("org", "a\nb")]))), "tags.org");
    }

    #[test]
    fn metadata_is_at_most_16_kib_serialised() {
        let fits = |n: usize| {
            // {"k":"…"} is 8 bytes around the string.
            serde_json::json!({ "k": "x".repeat(n - 8) }).as_object().unwrap().clone()
        };
        assert_eq!(serde_json::to_vec(&fits(16384)).unwrap().len(), 16384);
        assert!(check_metadata(&fits(16384)).is_ok());
        assert_eq!(field(check_metadata(&fits(16385))), "metadata");
        assert!(check_metadata(&Metadata::new()).is_ok());
    }

    #[test]
    fn end_users_need_an_id_and_a_plausible_email() {
        let user = |id: &str, email: Option<&str>, name: Option<&str>| EndUser {
            id: id.into(),
            email: email.map(Into::into),
            display_name: name.map(Into::into),
        };
        assert!(check_end_user(&user("u1", Some("ann@example.com"), Some("Ann"))).is_ok());
        assert!(check_end_user(&user("u1", None, None)).is_ok());
        assert_eq!(field(check_end_user(&user("", None, None))), "end_user.id");
        assert_eq!(field(check_end_user(&user(&"u".repeat(256), None, None))), "end_user.id");
        for bad in ["ann", "ann@", "@example.com", "a b@example.com", "a@b@c", "a@.com", ""] {
            assert_eq!(
                field(check_end_user(&user("u1", Some(bad), None))),
                "end_user.email",
                "{bad}"
            );
        }
        assert_eq!(
            field(check_end_user(&user("u1", None, Some(&"n".repeat(256))))),
            "end_user.display_name"
        );
        assert_eq!(field(check_label(&"l".repeat(256))), "label");
    }
}
