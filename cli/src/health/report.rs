//! The health view's model: five sections, each with a status and a one-line summary, an
//! overall verdict, and the two ways to print it (a table for people, one JSON object for
//! machines).

use serde_json::{json, Map, Value};

/// One check's outcome. The order is severity: the verdict is the worst section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Not asked for (`--no-parent`, no `--manifest`) or not knowable.
    NotChecked,
    /// Fine.
    Ok,
    /// Serving, but something needs attention.
    Degraded,
    /// Not serving, or not the code it should be.
    Down,
}

impl Status {
    /// The JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotChecked => "not_checked",
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::NotChecked => "-",
            Self::Ok => "OK",
            Self::Degraded => "DEGRADED",
            Self::Down => "DOWN",
        }
    }
}

/// One row of the view.
#[derive(Debug, Clone)]
pub struct Section {
    /// The outcome.
    pub status: Status,
    /// One line for the table, also in the JSON.
    pub summary: String,
    /// A dev-only check passed (mock NSM root, PCRs unchecked): labelled so nobody mistakes it
    /// for a production check.
    pub dev: bool,
    /// The section's fields for `--json`.
    pub fields: Map<String, Value>,
}

impl Section {
    /// A section with no fields yet.
    pub fn new(status: Status, summary: impl Into<String>) -> Self {
        Self {
            status,
            summary: summary.into(),
            dev: false,
            fields: Map::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    fn json(&self) -> Value {
        let mut v = Map::new();
        v.insert("status".into(), self.status.as_str().into());
        v.insert("summary".into(), self.summary.clone().into());
        if self.dev {
            v.insert("dev".into(), true.into());
        }
        v.extend(self.fields.clone());
        Value::Object(v)
    }
}

/// Everything `vettid health` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The parent's `/health` and `/ready`.
    pub parent: Section,
    /// `enclave.health`.
    pub enclave: Section,
    /// A fresh attestation, verified by us.
    pub attestation: Section,
    /// The object store, as the parent probes it.
    pub storage: Section,
    /// The KMS path: the enclave's client and the parent's tunnel.
    pub kms: Section,
}

impl Report {
    fn sections(&self) -> [(&'static str, &Section); 5] {
        [
            ("parent", &self.parent),
            ("enclave", &self.enclave),
            ("attestation", &self.attestation),
            ("storage", &self.storage),
            ("kms", &self.kms),
        ]
    }

    /// The worst section's status; sections not checked do not count.
    pub fn verdict(&self) -> Status {
        self.sections()
            .iter()
            .map(|(_, s)| s.status)
            .max()
            .map_or(Status::Ok, |worst| worst.max(Status::Ok))
    }

    /// `name: summary` of every degraded or down section, worst first.
    pub fn reasons(&self) -> Vec<String> {
        let mut bad: Vec<_> = self
            .sections()
            .into_iter()
            .filter(|(_, s)| s.status >= Status::Degraded)
            .collect();
        bad.sort_by_key(|(_, s)| std::cmp::Reverse(s.status));
        bad.iter()
            .map(|(name, s)| format!("{name}: {}", s.summary))
            .collect()
    }

    /// The `--json` object: one key per section, then `verdict` and `reasons`.
    pub fn json(&self) -> Value {
        let mut v = Map::new();
        for (name, s) in self.sections() {
            v.insert(name.into(), s.json());
        }
        v.insert("verdict".into(), verdict_label(self.verdict()).into());
        v.insert("reasons".into(), json!(self.reasons()));
        Value::Object(v)
    }

    /// The human table: one line per check, then the verdict.
    pub fn table(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(6);
        for (name, s) in self.sections() {
            let label = if s.dev {
                format!("{} DEV", s.status.label())
            } else {
                s.status.label().to_string()
            };
            lines.push(format!("{name:<12} {label:<9} {}", s.summary));
        }
        lines.push(format!(
            "{:<12} {}",
            "verdict",
            verdict_label(self.verdict())
        ));
        lines
    }
}

/// `OK`, `DEGRADED` or `DOWN`.
pub fn verdict_label(status: Status) -> &'static str {
    match status {
        Status::NotChecked | Status::Ok => "OK",
        Status::Degraded => "DEGRADED",
        Status::Down => "DOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: [Status; 5]) -> Report {
        let s = |i: usize| Section::new(statuses[i], format!("s{i}"));
        Report {
            parent: s(0),
            enclave: s(1),
            attestation: s(2),
            storage: s(3),
            kms: s(4),
        }
    }

    #[test]
    fn verdict_is_the_worst_checked_section() {
        use Status::*;
        assert_eq!(report([Ok, Ok, NotChecked, Ok, Ok]).verdict(), Ok);
        assert_eq!(report([NotChecked; 5]).verdict(), Ok);
        assert_eq!(report([Ok, Ok, Ok, Degraded, Ok]).verdict(), Degraded);
        assert_eq!(report([Down, Ok, Ok, Degraded, Ok]).verdict(), Down);
    }

    #[test]
    fn reasons_list_bad_sections_worst_first() {
        use Status::*;
        let r = report([Ok, Ok, Ok, Degraded, Down]);
        assert_eq!(r.reasons(), vec!["kms: s4", "storage: s3"]);
        let v = r.json();
        assert_eq!(v["verdict"], "DOWN");
        assert_eq!(v["storage"]["status"], "degraded");
        assert_eq!(v["attestation"]["status"], "ok");
    }

    #[test]
    fn table_has_one_line_per_check_and_labels_dev() {
        use Status::*;
        let mut r = report([Ok, Ok, Ok, NotChecked, Ok]);
        r.attestation.dev = true;
        let t = r.table();
        assert_eq!(t.len(), 6);
        assert!(t[2].starts_with("attestation  OK DEV    s2"), "{}", t[2]);
        assert!(t[3].starts_with("storage      -         s3"), "{}", t[3]);
        assert_eq!(t[5], "verdict      OK");
        assert_eq!(r.json()["attestation"]["dev"], true);
    }
}
