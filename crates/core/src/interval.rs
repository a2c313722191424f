//! How often something recurring happens, written as people write it: `24h`, `6h`, `30m`,
//! `1h30m`, `90s`, `2d` (a bare number is seconds), or `off` (also `0`) for never. Connector
//! files (`test: { check_interval: 6h }`) and the command line (`--check-interval 24h`) both read
//! it. Written by hand: the grammar is five units, and no crate in the tree parses it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A recurring interval, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval(Option<Duration>);

impl Interval {
    /// Never.
    pub const OFF: Self = Self(None);

    /// Every `every`; `off` when it is zero.
    pub fn every(every: Duration) -> Self {
        Self((!every.is_zero()).then_some(every))
    }

    /// The interval, or `None` when it is `off`.
    pub fn get(self) -> Option<Duration> {
        self.0
    }
}

/// The text is not an interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid interval {0:?}: write a number and a unit, e.g. `24h`, `30m`, `1h30m`, `90s`, `2d`, \
     or `off`"
)]
pub struct InvalidInterval(pub String);

impl FromStr for Interval {
    type Err = InvalidInterval;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidInterval(text.to_owned());
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("off") {
            return Ok(Self::OFF);
        }
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            let seconds = trimmed.parse::<u64>().map_err(|_| invalid())?;
            return Ok(Self::every(Duration::from_secs(seconds)));
        }
        let mut total: u64 = 0;
        let mut rest = trimmed;
        if rest.is_empty() {
            return Err(invalid());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = match &rest[..unit_len] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(invalid()),
            };
            rest = &rest[unit_len..];
            total =
                number.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(invalid)?;
        }
        Ok(Self::every(Duration::from_secs(total)))
    }
}

impl fmt::Display for Interval {
    /// Hours, minutes and seconds, `off` for never: `6h`, `1h30m`, `90s` → `1m30s`, `2d` →
    /// `48h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(every) = self.0 else { return f.write_str("off") };
        let mut seconds = every.as_secs();
        if seconds == 0 {
            // Below a second: only reachable through `Interval::every`.
            return write!(f, "{}ms", every.as_millis());
        }
        for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
            if seconds >= size {
                write!(f, "{}{unit}", seconds / size)?;
                seconds %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    /// A string as [`FromStr`] reads it, or a whole number of seconds.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Written;
        impl serde::de::Visitor<'_> for Written {
            type Value = Interval;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an interval such as `6h`, `30m` or `off`")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Interval, E> {
                text.parse().map_err(E::custom)
            }

            /// YAML 1.1 reads a bare `off` as `false`.
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<Interval, E> {
                match on {
                    false => Ok(Interval::OFF),
                    true => Err(E::custom("write an interval such as `6h`, or `off`")),
                }
            }

            fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Interval, E> {
                Ok(Interval::every(Duration::from_secs(seconds)))
            }

            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<Interval, E> {
                let seconds = u64::try_from(seconds)
                    .map_err(|_| E::custom("an interval cannot be negative"))?;
                self.visit_u64(seconds)
            }
        }
        deserializer.deserialize_any(Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(seconds: u64) -> Interval {
        Interval::every(Duration::from_secs(seconds))
    }

    #[test]
    fn reads_units_sums_and_off() {
        for (text, expected) in [
            ("24h", every(86_400)),
            ("6h", every(21_600)),
            ("30m", every(1800)),
            ("1h30m", every(5400)),
            ("90s", every(90)),
            ("2d", every(172_800)),
            ("3600", every(3600)),
            (" 5m ", every(300)),
            ("off", Interval::OFF),
            ("OFF", Interval::OFF),
            ("0", Interval::OFF),
            ("0s", Interval::OFF),
        ] {
            assert_eq!(text.parse::<Interval>(), Ok(expected), "{text}");
        }
        for bad in ["", "h", "5", "5x", "1.5h", "-1h", "5 m", "1h 30m", "99999999999999999999d"] {
            if bad == "5" {
                continue; // a bare number is seconds
            }
            assert!(bad.parse::<Interval>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn prints_what_it_reads() {
        for text in ["24h", "6h", "1h30m", "1m30s", "off"] {
            assert_eq!(text.parse::<Interval>().unwrap().to_string(), text);
        }
        assert_eq!(every(90).to_string(), "1m30s");
        assert_eq!(every(172_800).to_string(), "48h");
        assert_eq!(every(0).get(), None);
    }

    #[test]
    fn deserializes_text_and_seconds() {
        let from = |json: &str| serde_json::from_str::<Interval>(json);
        assert_eq!(from("\"6h\"").unwrap(), every(21_600));
        assert_eq!(from("60").unwrap(), every(60));
        assert_eq!(from("\"off\"").unwrap(), Interval::OFF);
        assert!(from("\"soon\"").unwrap_err().to_string().contains("invalid interval"));
        assert_eq!(serde_json::to_string(&every(5400)).unwrap(), "\"1h30m\"");
    }
}
