//! The manifest's members, read from strict JSON with every rule of the format applied.
//!
//! Unknown members are allowed and ignored (they are covered by the signature, and refusing them would break
//! older apps when a member is added), except anything named `pcr…`: a misspelt PCR constraint that was
//! silently ignored would widen what the app accepts, so it is an error.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{invalid, ManifestError, MAX_PCR_SETS};
use crate::policy::PcrSet;
use crate::time::parse_rfc3339;

/// The signed content of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Body {
    pub(super) version: u64,
    pub(super) timestamp_ms: u64,
    pub(super) sets: Vec<ManifestPcrSet>,
}

/// One accepted build and its validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestPcrSet {
    /// The PCRs (id, PCR0/1/2 and any extra PCR) as the verifier policy uses them.
    pub pcr_set: PcrSet,
    /// Start of validity, ms since the Unix epoch (inclusive).
    pub valid_from_ms: u64,
    /// End of validity, ms since the Unix epoch (exclusive); `None` is open-ended.
    pub valid_until_ms: Option<u64>,
    /// Whether the publisher marks this set as the current build (informational).
    pub is_current: bool,
    /// Free text for people.
    pub description: Option<String>,
}

impl ManifestPcrSet {
    /// The set's id.
    pub fn id(&self) -> &str {
        self.pcr_set.id()
    }

    /// True if `now_ms` lies in `[valid_from, valid_until)`.
    pub fn is_valid_at(&self, now_ms: u64) -> bool {
        self.valid_from_ms <= now_ms && self.valid_until_ms.is_none_or(|until| now_ms < until)
    }
}

impl Body {
    pub(super) fn from_json(value: &Value) -> Result<Self, ManifestError> {
        let map = value.as_object().ok_or(ManifestError::NotAnObject)?;
        let version = required(map, "version", "")?
            .as_u64()
            .ok_or_else(|| invalid("version", "not a non-negative integer"))?;
        let timestamp_ms = time(required(map, "timestamp", "")?, "timestamp")?;
        let sets = required(map, "pcr_sets", "")?
            .as_array()
            .ok_or_else(|| invalid("pcr_sets", "not an array"))?;
        if sets.is_empty() {
            return Err(ManifestError::NoPcrSets);
        }
        if sets.len() > MAX_PCR_SETS {
            return Err(ManifestError::TooManySets(sets.len()));
        }
        let sets = sets
            .iter()
            .enumerate()
            .map(|(i, set)| parse_set(set, &format!("pcr_sets[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids = BTreeSet::new();
        if let Some(dup) = sets.iter().find(|s| !ids.insert(s.id())) {
            return Err(ManifestError::DuplicateSetId(dup.id().to_owned()));
        }
        Ok(Self {
            version,
            timestamp_ms,
            sets,
        })
    }
}

fn parse_set(value: &Value, path: &str) -> Result<ManifestPcrSet, ManifestError> {
    let map = value
        .as_object()
        .ok_or_else(|| invalid(path, "not an object"))?;
    let field = |name: &str| format!("{path}.{name}");
    let id = required(map, "id", path)?
        .as_str()
        .ok_or_else(|| invalid(field("id"), "not a string"))?;
    let pcr = |name: &str| -> Result<Vec<u8>, ManifestError> {
        let text = required(map, name, path)?
            .as_str()
            .ok_or_else(|| invalid(field(name), "not a string"))?;
        hex::decode(text).map_err(|_| invalid(field(name), "not hex"))
    };
    let to_err = |e: crate::Error| invalid(path, e.to_string());
    let mut pcr_set = PcrSet::new(id, pcr("pcr0")?, pcr("pcr1")?, pcr("pcr2")?).map_err(to_err)?;
    for (key, item) in map {
        let Some(suffix) = key.strip_prefix("pcr") else {
            continue;
        };
        let index = suffix
            .parse::<u8>()
            .ok()
            .filter(|i| i.to_string() == suffix)
            .ok_or_else(|| invalid(field(key), "unknown pcr member"))?;
        if index <= 2 || item.is_null() {
            continue;
        }
        let text = item
            .as_str()
            .ok_or_else(|| invalid(field(key), "not a string"))?;
        let bytes = hex::decode(text).map_err(|_| invalid(field(key), "not hex"))?;
        pcr_set = pcr_set.with_pcr(index, bytes).map_err(to_err)?;
    }

    let valid_from_ms = time(required(map, "valid_from", path)?, &field("valid_from"))?;
    let valid_until_ms = match map.get("valid_until") {
        None | Some(Value::Null) => None,
        Some(v) => Some(time(v, &field("valid_until"))?),
    };
    if valid_until_ms.is_some_and(|until| until <= valid_from_ms) {
        return Err(invalid(field("valid_until"), "not after valid_from"));
    }
    let is_current = required(map, "is_current", path)?
        .as_bool()
        .ok_or_else(|| invalid(field("is_current"), "not a boolean"))?;
    let description = match map.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid(field("description"), "not a string")),
    };
    Ok(ManifestPcrSet {
        pcr_set,
        valid_from_ms,
        valid_until_ms,
        is_current,
        description,
    })
}

fn required<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<&'a Value, ManifestError> {
    map.get(name).ok_or_else(|| {
        ManifestError::MissingField(if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        })
    })
}

fn time(value: &Value, field: &str) -> Result<u64, ManifestError> {
    value
        .as_str()
        .and_then(parse_rfc3339)
        .ok_or_else(|| invalid(field, "not an RFC 3339 date-time"))
}
