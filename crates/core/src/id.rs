//! Ids as types: a connection, integration or connector id is checked once, where it enters
//! (a REST path or body, a CLI argument, a connector file), and is known valid wherever it goes
//! after. Each serialises as its string and deserialises only when valid.

use std::fmt;
use std::str::FromStr;

/// An id that does not follow its rules; says which kind of id and what the rules are, never
/// the value (it may be anything a caller sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} id is 1-64 characters of {allowed}")]
pub struct IdError {
    /// `a connection`, `an integration` or `a connector`.
    pub kind: &'static str,
    /// The characters allowed.
    pub allowed: &'static str,
}

/// 1–64 characters, each allowed by `byte_ok`.
fn follows(id: &str, byte_ok: fn(u8) -> bool) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(byte_ok)
}

/// `A-Z a-z 0-9 - _ .`: connection and integration ids.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// `a-z 0-9 - _`: connector ids, which are also file names.
fn connector_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_')
}

/// Hand-written rather than a newtype crate: three small types with one rule each.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $allowed:literal, $byte_ok:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Checked as the string is visited, so a deserialiser that knows where the string
        /// came from (a path parameter's name, a JSON field's path) reports it there.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} id", $kind)
                    }
                    fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<$name, E> {
                        $name::new(id).map_err(E::custom)
                    }
                    fn visit_string<E: serde::de::Error>(self, id: String) -> Result<$name, E> {
                        $name::new(id).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }

        impl $name {
            /// The id, if `id` follows the rules.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                if follows(&id, $byte_ok) {
                    Ok(Self(id))
                } else {
                    Err(IdError { kind: $kind, allowed: $allowed })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(id: &str) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(id: String) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(id: &str) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

id_type!(
    /// A connection's id: 1–64 of `A-Z a-z 0-9 - _ .`.
    ConnectionId, "a connection", "A-Z, a-z, 0-9, `-`, `_` or `.`", name_byte
);
id_type!(
    /// An integration's id: 1–64 of `A-Z a-z 0-9 - _ .`.
    IntegrationId, "an integration", "A-Z, a-z, 0-9, `-`, `_` or `.`", name_byte
);
id_type!(
    /// A connector's id: 1–64 of `a-z 0-9 - _` (it is also the connector's file name).
    ConnectorId, "a connector", "a-z, 0-9, `-` or `_`", connector_byte
);
id_type!(
    /// An environment's id (`default`, `prod`, …): 1–64 of `a-z 0-9 - _`.
    EnvironmentId, "an environment", "a-z, 0-9, `-` or `_`", connector_byte
);

impl EnvironmentId {
    /// The environment every data directory starts with, and the one a request acts in when it
    /// names none.
    pub const DEFAULT: &'static str = "default";

    /// `default`.
    pub fn default_environment() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_id_follows_its_rules() {
        assert!(ConnectionId::new("user-42.github_A").is_ok());
        assert!(IntegrationId::new("GitHub.prod").is_ok());
        assert!(ConnectorId::new("google-sheets_v2").is_ok());
        let long = "a".repeat(64);
        assert!(ConnectionId::new(long.as_str()).is_ok());
        for bad in ["", "a/b", "a b", "ä", "a\n", "../x", &"a".repeat(65)] {
            assert!(ConnectionId::new(bad).is_err(), "{bad:?}");
            assert!(IntegrationId::new(bad).is_err(), "{bad:?}");
            assert!(ConnectorId::new(bad).is_err(), "{bad:?}");
        }
        assert!(ConnectorId::new("GitHub").is_err(), "connector ids are lower case");
        assert!(ConnectorId::new("git.hub").is_err(), "connector ids have no dot");
    }

    #[test]
    fn deserialising_checks_and_the_error_never_echoes_the_value() {
        let id: ConnectionId = serde_json::from_str("\"conn_1\"").unwrap();
        assert_eq!(id, "conn_1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"conn_1\"");
        let err = serde_json::from_str::<ConnectionId>("\"secret value\"").unwrap_err();
        assert!(err.to_string().starts_with("a connection id is 1-64 characters"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = "x y".parse::<ConnectorId>().unwrap_err();
        assert_eq!(err.to_string(), "a connector id is 1-64 characters of a-z, 0-9, `-` or `_`");
    }
}
