//! Item parsing and the call rules that need no table.

use super::*;

#[test]
fn codes_are_stable_and_distinct() {
    let all = [
        TrustedError::Conflict,
        TrustedError::Unavailable,
        TrustedError::Uncertain,
        TrustedError::Throttled,
        TrustedError::Denied,
        TrustedError::Credentials,
        TrustedError::NoTime,
        TrustedError::Malformed,
    ];
    let codes: std::collections::BTreeSet<_> = all.iter().map(|e| e.code()).collect();
    assert_eq!(codes.len(), all.len());
    assert_eq!(TrustedError::Conflict.code(), "TrustedStoreConflict");
    assert!(codes.iter().all(|c| c.starts_with("TrustedStore")));
}

#[test]
fn items_parse_only_with_a_positive_rev_and_a_binary_body() {
    use std::collections::HashMap;
    let item = |rev: AttributeValue, body: AttributeValue| {
        HashMap::from([("rev".to_string(), rev), ("body".to_string(), body)])
    };
    let ok = item(
        AttributeValue::N("7".into()),
        AttributeValue::B(Blob::new(b"x".to_vec())),
    );
    assert_eq!(
        parse_item(&ok),
        Ok(Item {
            rev: 7,
            body: b"x".to_vec()
        })
    );
    for bad in [
        item(
            AttributeValue::N("0".into()),
            AttributeValue::B(Blob::new(vec![])),
        ),
        item(
            AttributeValue::N("-1".into()),
            AttributeValue::B(Blob::new(vec![])),
        ),
        item(
            AttributeValue::N("1.5".into()),
            AttributeValue::B(Blob::new(vec![])),
        ),
        item(
            AttributeValue::S("1".into()),
            AttributeValue::B(Blob::new(vec![])),
        ),
        item(AttributeValue::N("1".into()), AttributeValue::S("x".into())),
        HashMap::new(),
    ] {
        assert_eq!(parse_item(&bad), Err(TrustedError::Malformed), "{bad:?}");
    }
}

#[test]
fn single_host_mode_reports_itself() {
    let r = TrustedReport::single_host();
    assert_eq!(r.mode, "single-host");
    assert!(r.table.is_none());
}
