//! Object keys and list prefixes, validated before any backend sees them.
//!
//! The enclave builds every key (`vaults/{guid}/...`) and never relies on the parent to check
//! them; this is defence in depth on the untrusted side and a source of good errors. The rules
//! are deliberately narrower than S3's: a conservative character set makes a key safe to use as
//! a relative path in the filesystem store (no `..`, no absolute path, no empty segment, no
//! backslash), and the same rules on both backends mean a vault written through one can be read
//! through the other. VettID v1 only rejected `..`, a leading `/` and `\` (reference §2.7).
//!
//! Backends take [`ObjectKey`] / [`ListPrefix`], never `&str`, so an unchecked key cannot reach
//! one by accident.

use std::fmt;

/// Every key lives under this prefix.
pub const KEY_ROOT: &str = "vaults/";

/// Longest key, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Longest key segment, in bytes: below `NAME_MAX` (255) with room for the filesystem store's
/// suffixes, so every key valid here is storable by both backends.
pub const MAX_SEGMENT_LEN: usize = 200;

/// Longest list continuation token accepted from the enclave.
pub const MAX_TOKEN_LEN: usize = 2048;

/// Why a key, prefix or token was refused. The text is safe to send to the enclave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Empty, or longer than [`MAX_KEY_LEN`].
    #[error("key length must be 1..={MAX_KEY_LEN} bytes")]
    Length,
    /// Does not start with [`KEY_ROOT`].
    #[error("key must start with `vaults/`")]
    Root,
    /// A character outside `[A-Za-z0-9._/-]`.
    #[error("key contains a character outside [A-Za-z0-9._/-]")]
    Charset,
    /// An empty, `.` or `..` segment, or one longer than [`MAX_SEGMENT_LEN`].
    #[error("key has an empty, `.`, `..` or over-long segment")]
    Segment,
    /// A list prefix that does not end in `/`.
    #[error("list prefix must end with `/`")]
    PrefixEnd,
    /// An object key that ends in `/` (that names a folder, not an object).
    #[error("object key must not end with `/`")]
    TrailingSlash,
    /// A continuation token that is too long or not printable ASCII.
    #[error("bad continuation token")]
    Token,
}

/// A validated object key, e.g. `vaults/{guid}/vault_state.enc`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// A validated list prefix, e.g. `vaults/{guid}/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListPrefix(String);

impl ObjectKey {
    /// Checks `key` against every rule in the module docs.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        check_common(key)?;
        if key.ends_with('/') {
            return Err(KeyError::TrailingSlash);
        }
        Ok(Self(key.to_owned()))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ListPrefix {
    /// Checks `prefix`: the key rules, and it must end in `/` (a folder of one vault or of all).
    ///
    /// # Errors
    /// The first rule broken.
    pub fn parse(prefix: &str) -> Result<Self, KeyError> {
        if !prefix.ends_with('/') {
            return Err(KeyError::PrefixEnd);
        }
        if prefix == KEY_ROOT {
            return Ok(Self(prefix.to_owned()));
        }
        let inner = &prefix[..prefix.len() - 1];
        check_common(inner)?;
        if inner.ends_with('/') {
            return Err(KeyError::Segment);
        }
        Ok(Self(prefix.to_owned()))
    }

    /// The prefix text (ends in `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a continuation token from the enclave: opaque to us, but bounded and printable.
///
/// # Errors
/// [`KeyError::Token`].
pub fn check_token(token: &str) -> Result<(), KeyError> {
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || !printable {
        return Err(KeyError::Token);
    }
    Ok(())
}

fn check_common(key: &str) -> Result<(), KeyError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(KeyError::Length);
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
    {
        return Err(KeyError::Charset);
    }
    if !key.starts_with(KEY_ROOT) {
        return Err(KeyError::Root);
    }
    // Splitting on `/` also catches `//` (an empty segment). A trailing `/` is the callers'
    // business (an error for keys, required for prefixes), so it is left out here.
    let body = key.strip_suffix('/').unwrap_or(key);
    for segment in body.split('/') {
        if segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.len() > MAX_SEGMENT_LEN
        {
            return Err(KeyError::Segment);
        }
    }
    Ok(())
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ListPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_the_enclave_builds_are_accepted() {
        for k in [
            "vaults/0f8c2d1e-aaaa-bbbb-cccc-000000000001/vault_state.enc",
            "vaults/g/sealed_material.v2.bin",
            "vaults/g/a/b/c",
            "vaults/..a",
            "vaults/a..",
        ] {
            assert_eq!(ObjectKey::parse(k).unwrap().as_str(), k);
        }
        let long = format!("vaults/{}", vec!["x".repeat(200); 5].join("/"));
        assert!(long.len() <= MAX_KEY_LEN);
        ObjectKey::parse(&long).unwrap();
    }

    #[test]
    fn hostile_keys_are_refused() {
        let cases: &[(&str, KeyError)] = &[
            ("", KeyError::Length),
            ("/vaults/g/x", KeyError::Root),
            ("vaults", KeyError::Root),
            ("other/g/x", KeyError::Root),
            ("Vaults/g/x", KeyError::Root),
            ("vaults/../etc/passwd", KeyError::Segment),
            ("vaults/g/../../x", KeyError::Segment),
            ("vaults/g/..", KeyError::Segment),
            ("vaults/./x", KeyError::Segment),
            ("vaults//x", KeyError::Segment),
            ("vaults/g//x", KeyError::Segment),
            ("vaults/", KeyError::TrailingSlash),
            ("vaults/g/", KeyError::TrailingSlash),
            ("vaults\\g\\x", KeyError::Charset),
            ("vaults/g\\..\\x", KeyError::Charset),
            ("vaults/g/x y", KeyError::Charset),
            ("vaults/g/x\0", KeyError::Charset),
            ("vaults/g/x\n", KeyError::Charset),
            ("vaults/g/caf\u{e9}", KeyError::Charset),
            ("vaults/g/%2e%2e", KeyError::Charset),
            ("vaults/g/x@", KeyError::Charset),
            ("vaults/g/~x", KeyError::Charset),
        ];
        for (k, want) in cases {
            assert_eq!(ObjectKey::parse(k).unwrap_err(), *want, "{k:?}");
        }
        let too_long = format!("vaults/{}", "a/".repeat(600));
        assert_eq!(ObjectKey::parse(&too_long).unwrap_err(), KeyError::Length);
        let long_segment = format!("vaults/{}", "a".repeat(MAX_SEGMENT_LEN + 1));
        assert_eq!(
            ObjectKey::parse(&long_segment).unwrap_err(),
            KeyError::Segment
        );
    }

    #[test]
    fn list_prefixes_end_in_a_slash() {
        for p in ["vaults/", "vaults/g/", "vaults/g/sub/"] {
            assert_eq!(ListPrefix::parse(p).unwrap().as_str(), p);
        }
        let cases: &[(&str, KeyError)] = &[
            ("vaults", KeyError::PrefixEnd),
            ("vaults/g", KeyError::PrefixEnd),
            ("", KeyError::PrefixEnd),
            ("/", KeyError::Length),
            ("/vaults/", KeyError::Root),
            ("vaults//", KeyError::Segment),
            ("vaults/g//", KeyError::Segment),
            ("vaults/../", KeyError::Segment),
            ("vaults/a b/", KeyError::Charset),
            ("other/", KeyError::Root),
        ];
        for (p, want) in cases {
            assert_eq!(ListPrefix::parse(p).unwrap_err(), *want, "{p:?}");
        }
    }

    #[test]
    fn tokens_are_bounded_and_printable() {
        check_token("vaults/g/a").unwrap();
        check_token("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=").unwrap();
        for bad in ["", "a b", "a\n", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(check_token(bad).unwrap_err(), KeyError::Token, "{bad:?}");
        }
    }
}
