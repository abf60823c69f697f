//! Hand-checked JSON bodies of the lease and queue routes.
//!
//! A body is one JSON object whose keys are checked against the route's
//! list; each field is then read by type and range, so every refusal is a
//! 400 `invalid` naming the field (and, in a batch, the item's index) and
//! the values allowed. `null` counts as absent, as in enqueue bodies.

use std::ops::RangeInclusive;

use beaver_core::LeaseId;
use serde_json::{Map, Value};

use super::ApiError;

/// A 400 `invalid` naming `field` (and the batch item `index`, if any).
pub(super) fn invalid(index: Option<usize>, field: &str, reason: impl Into<String>) -> ApiError {
    let reason = reason.into();
    let message = match index {
        Some(i) => format!("item {i}: `{field}`: {reason}"),
        None => format!("`{field}`: {reason}"),
    };
    let mut e = ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid", message);
    e.body.index = index;
    e.body.field = Some(field.into());
    e
}

/// One JSON object's fields, checked against the keys a route takes.
pub(super) struct Fields {
    map: Map<String, Value>,
    index: Option<usize>,
}

impl Fields {
    /// Parses `bytes` as one object with only `allowed` keys; no body, or
    /// `null`, is an empty object (a body of blanks is not JSON: 400).
    pub(super) fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Fields, ApiError> {
        if bytes.is_empty() {
            return Ok(Fields {
                map: Map::new(),
                index: None,
            });
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(None, "body", format!("the body is not valid JSON: {e}")))?;
        if value.is_null() {
            return Ok(Fields {
                map: Map::new(),
                index: None,
            });
        }
        Fields::of(value, allowed, None)
    }

    /// Checks one parsed value (an item of a batch at `index`, if given).
    pub(super) fn of(
        value: Value,
        allowed: &[&str],
        index: Option<usize>,
    ) -> Result<Fields, ApiError> {
        let field = if index.is_some() { "item" } else { "body" };
        let Value::Object(map) = value else {
            return Err(invalid(
                index,
                field,
                format!(
                    "must be a JSON object with the fields {}",
                    allowed.join(", ")
                ),
            ));
        };
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(invalid(
                index,
                k,
                format!("unknown field; the fields are {}", allowed.join(", ")),
            ));
        }
        Ok(Fields { map, index })
    }

    /// The field's value, `None` when absent or `null`.
    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// Takes the field's value out, `None` when absent or `null`.
    pub(super) fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// A 400 about field `name` of this object.
    pub(super) fn bad(&self, name: &str, reason: impl Into<String>) -> ApiError {
        invalid(self.index, name, reason)
    }

    /// A whole number within `range`.
    pub(super) fn u64_in(
        &self,
        name: &str,
        range: RangeInclusive<u64>,
    ) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let allowed = || {
            format!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            )
        };
        match v.as_u64() {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            Some(n) => Err(self.bad(name, format!("{}, got {n}", allowed()))),
            None => Err(self.bad(name, format!("{}, got {v}", allowed()))),
        }
    }

    /// A boolean.
    pub(super) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(name, format!("must be true or false, got {v}"))),
        }
    }

    /// A string.
    pub(super) fn str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.bad(name, format!("must be a string, got {v}"))),
        }
    }
}

/// The most digits a lease id has (`u64::MAX` has 20).
const LEASE_ID_DIGITS_MAX: usize = 20;

/// A lease id as the API writes it: a decimal string.
pub(super) fn lease_id(text: &str, index: Option<usize>, field: &str) -> Result<LeaseId, ApiError> {
    let bad = || {
        invalid(
            index,
            field,
            format!(
                "a lease id is a decimal number of 1 to {LEASE_ID_DIGITS_MAX} digits, as a lease answer gives it; got {:?}",
                text.chars().take(40).collect::<String>()
            ),
        )
    };
    if text.is_empty()
        || text.len() > LEASE_ID_DIGITS_MAX
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    text.parse::<LeaseId>().map_err(|_| bad())
}

/// A lease id given in a JSON value (a string of digits).
pub(super) fn lease_id_value(
    v: &Value,
    index: Option<usize>,
    field: &str,
) -> Result<LeaseId, ApiError> {
    match v {
        Value::String(s) => lease_id(s, index, field),
        other => Err(invalid(
            index,
            field,
            format!("a lease id is a string of digits such as \"123\", got {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_are_digits_within_u64() {
        assert_eq!(lease_id("123", None, "lease_id").ok(), Some(123));
        assert_eq!(
            lease_id("18446744073709551615", None, "lease_id").ok(),
            Some(u64::MAX)
        );
        for bad in ["", "-1", "1.0", " 1", "18446744073709551616", "abc", "1e3"] {
            assert!(lease_id(bad, None, "lease_id").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields_are_checked_by_name_type_and_range() {
        let f = Fields::parse(
            br#"{"max": 5, "wait_ms": null, "worker": 3}"#,
            &["max", "wait_ms", "worker"],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.u64_in("max", 1..=10).ok(), Some(Some(5)));
        assert!(f.u64_in("max", 1..=4).is_err());
        assert_eq!(f.u64_in("wait_ms", 0..=10).ok(), Some(None));
        assert!(f.str("worker").is_err());
        assert!(Fields::parse(br#"{"colour": 1}"#, &["max"]).is_err());
        assert!(Fields::parse(b"[1]", &["max"]).is_err());
        assert!(Fields::parse(b"{", &["max"]).is_err());
        assert!(Fields::parse(b"", &["max"]).is_ok());
        assert!(Fields::parse(b"  ", &["max"]).is_err());
        assert!(Fields::parse(b"null", &["max"]).is_ok());
    }
}
