//! NATS subjects turned into routes: the one place subjects are parsed and validated.
//!
//! The subjects are the contract with deployed VettID apps and Lambdas (reference §2.5, §4.1):
//! `enclave.*` for Lambdas and operators, `OwnerSpace.{guid}.forVault.{op}` for apps,
//! `MessageSpace.{guid}.forOwner.*` for peers and `Control.*` for signed commands.

use std::fmt;

/// Longest owner-space GUID accepted; real ones are UUID-length.
pub const MAX_OWNER_LEN: usize = 128;

/// A validated owner-space id (the second token of an `OwnerSpace.*` / `MessageSpace.*`
/// subject): 1 to [`MAX_OWNER_LEN`] of `[A-Za-z0-9_-]`. This is what vault storage keys are built
/// from later, so nothing that could become `..` or `/` ever gets through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerSpace(String);

impl OwnerSpace {
    /// Validates `s`.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= MAX_OWNER_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a NATS message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `enclave.health`, `enclave.health.check`.
    Health,
    /// `enclave.attestation.request` (Lambda path; no owner).
    LambdaAttestation,
    /// `OwnerSpace.{guid}.forVault.{op}`; `op` is everything after `forVault.`.
    Vault {
        /// Whose vault.
        owner: OwnerSpace,
        /// Operation, e.g. `attestation`, `pin`, `credential.create`.
        op: String,
    },
    /// `MessageSpace.{guid}.forOwner.{rest}`.
    Peer {
        /// Whose vault.
        owner: OwnerSpace,
        /// Everything after `forOwner.`.
        rest: String,
    },
    /// `Control.*` signed commands.
    Control,
    /// `enclave.dev.sleep`: dev builds only, to show that requests overlap.
    DevSleep,
    /// A subject with a bad owner-space token.
    BadOwner,
    /// Anything else.
    Unknown,
}

/// Maps a subject to its route.
pub fn route(subject: &str) -> Route {
    let mut parts = subject.splitn(4, '.');
    let (a, b, c, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
    match (a, b, c, rest) {
        (Some("enclave"), Some("health"), None, None) => Route::Health,
        (Some("enclave"), Some("health"), Some("check"), None) => Route::Health,
        (Some("enclave"), Some("attestation"), Some("request"), None) => Route::LambdaAttestation,
        (Some("enclave"), Some("dev"), Some("sleep"), None) => Route::DevSleep,
        (Some("OwnerSpace"), Some(guid), Some("forVault"), Some(op)) if valid_op(op) => {
            match OwnerSpace::parse(guid) {
                Some(owner) => Route::Vault {
                    owner,
                    op: op.to_owned(),
                },
                None => Route::BadOwner,
            }
        }
        (Some("MessageSpace"), Some(guid), Some("forOwner"), Some(rest)) if valid_op(rest) => {
            match OwnerSpace::parse(guid) {
                Some(owner) => Route::Peer {
                    owner,
                    rest: rest.to_owned(),
                },
                None => Route::BadOwner,
            }
        }
        (Some("Control"), Some(_), _, _) => Route::Control,
        _ => Route::Unknown,
    }
}

/// An operation is dot-separated non-empty tokens without NATS wildcards.
fn valid_op(op: &str) -> bool {
    !op.is_empty()
        && op.len() <= 256
        && op
            .split('.')
            .all(|t| !t.is_empty() && !t.contains(['*', '>', ' ']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(owner: &str, op: &str) -> Route {
        Route::Vault {
            owner: OwnerSpace::parse(owner).unwrap(),
            op: op.into(),
        }
    }

    #[test]
    fn lambda_and_operator_subjects() {
        assert_eq!(route("enclave.health"), Route::Health);
        assert_eq!(route("enclave.health.check"), Route::Health);
        assert_eq!(
            route("enclave.attestation.request"),
            Route::LambdaAttestation
        );
        assert_eq!(route("enclave.health.check.extra"), Route::Unknown);
        assert_eq!(route("enclave.vault.reset"), Route::Unknown);
    }

    #[test]
    fn app_subjects_carry_owner_and_op() {
        assert_eq!(
            route("OwnerSpace.user-1.forVault.attestation"),
            vault("user-1", "attestation")
        );
        assert_eq!(
            route("OwnerSpace.0b7d_A.forVault.credential.create"),
            vault("0b7d_A", "credential.create")
        );
        assert_eq!(route("OwnerSpace.u.forApp.pin.response"), Route::Unknown);
        assert_eq!(route("OwnerSpace.u.forVault"), Route::Unknown);
        assert_eq!(route("OwnerSpace.u.forVault..x"), Route::Unknown);
        assert_eq!(
            route("MessageSpace.u.forOwner.agent.c1"),
            Route::Peer {
                owner: OwnerSpace::parse("u").unwrap(),
                rest: "agent.c1".into()
            }
        );
        assert_eq!(route("Control.global.health.request"), Route::Control);
    }

    #[test]
    fn hostile_owner_tokens_are_refused() {
        for bad in [
            "OwnerSpace.*.forVault.pin",
            "OwnerSpace.a%2f.forVault.pin",
            "OwnerSpace.ä.forVault.pin",
        ] {
            assert_eq!(route(bad), Route::BadOwner, "{bad}");
        }
        let long = format!("OwnerSpace.{}.forVault.pin", "a".repeat(MAX_OWNER_LEN + 1));
        assert_eq!(route(&long), Route::BadOwner);
        assert!(OwnerSpace::parse("..").is_none());
        assert!(OwnerSpace::parse("").is_none());
    }
}
