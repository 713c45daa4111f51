//! The table as markdown ([`markdown`]): one line per [`Row`], in BENCHMARKS.md's columns.
//!
//! Separate because it is presentation only: a column changed here changes no verdict.

use super::{Kind, Row};

/// Renders rows as a markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| fault | requests (attest/enrol/unlock/add/read) | ok | error replies | unanswered | duplicates | acknowledged but lost | refused but stored | in doubt, stored | recovery | slowest |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let kinds = [
            Kind::Attest,
            Kind::Enrol,
            Kind::Unlock,
            Kind::Add,
            Kind::Retrieve,
        ]
        .map(|k| r.requests.get(&k).copied().unwrap_or(0).to_string())
        .join("/");
        let errors: Vec<String> = r
            .codes
            .iter()
            .filter(|(c, _)| *c != "ok" && *c != "unanswered")
            .map(|(c, n)| format!("{n} `{c}`"))
            .collect();
        s += &format!(
            "| {} | {} ({kinds}) | {} | {} | {} | {} | {} | {} | {} | {} | {} ms |\n",
            if r.note.is_empty() {
                r.fault.to_owned()
            } else {
                format!("{} ({})", r.fault, r.note)
            },
            r.total(),
            r.codes.get("ok").copied().unwrap_or(0),
            if errors.is_empty() {
                "–".into()
            } else {
                errors.join(", ")
            },
            r.unanswered(),
            r.duplicates,
            r.durability.lost,
            r.durability.refused_but_stored,
            r.durability.in_doubt_stored,
            r.recovery
                .map_or_else(|| "none".into(), |d| format!("{} ms", d.as_millis())),
            r.slowest.as_millis(),
        );
    }
    s
}
