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
    /// `Control.global.{cmd}`, `Control.enclave.{id}.{cmd}`, `Control.user.{guid}.{cmd}`: signed
    /// commands, verified in [`crate::control`]. `command` is everything after the scope.
    Control {
        /// Whom the subject addresses; the signed `target` must say the same.
        scope: ControlScope,
        /// The command token(s) from the subject, e.g. `vault.reset`.
        command: String,
    },
    /// `enclave.vault.reset`: VettID's unsigned reset (G6), always refused with a pointer to the
    /// signed `Control.user.{guid}.vault.reset`.
    UnsignedReset,
    /// `enclave.dev.sleep`: dev builds only, to show that requests overlap.
    DevSleep,
    /// A subject with a bad owner-space token.
    BadOwner,
    /// Anything else.
    Unknown,
}

/// The scope a `Control.*` subject addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlScope {
    /// `Control.global.*`: every enclave.
    Global,
    /// `Control.enclave.{id}.*`: one enclave, by its `enclave_id` (a NATS token).
    Enclave(String),
    /// `Control.user.{guid}.*`: one user's vault.
    User(OwnerSpace),
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
        (Some("enclave"), Some("vault"), Some("reset"), None) => Route::UnsignedReset,
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
        (Some("Control"), _, _, _) => control_route(subject),
        _ => Route::Unknown,
    }
}

/// `Control.{scope}.{command}`; anything malformed is `Unknown` (or `BadOwner` for a bad GUID).
fn control_route(subject: &str) -> Route {
    let Some(rest) = subject.strip_prefix("Control.") else {
        return Route::Unknown;
    };
    let (scope, command) = match rest.split_once('.') {
        Some(("global", command)) => (ControlScope::Global, command),
        Some((kind @ ("enclave" | "user"), tail)) => {
            let Some((id, command)) = tail.split_once('.') else {
                return Route::Unknown;
            };
            if kind == "user" {
                match OwnerSpace::parse(id) {
                    Some(owner) => (ControlScope::User(owner), command),
                    None => return Route::BadOwner,
                }
            } else if valid_op(id) && id.len() <= MAX_OWNER_LEN {
                (ControlScope::Enclave(id.to_owned()), command)
            } else {
                return Route::Unknown;
            }
        }
        _ => return Route::Unknown,
    };
    if !valid_op(command) {
        return Route::Unknown;
    }
    Route::Control {
        scope,
        command: command.to_owned(),
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
        assert_eq!(route("enclave.vault.reset"), Route::UnsignedReset);
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
    }

    #[test]
    fn control_subjects_carry_scope_and_command() {
        let control = |scope, command: &str| Route::Control {
            scope,
            command: command.into(),
        };
        assert_eq!(
            route("Control.global.health.request"),
            control(ControlScope::Global, "health.request")
        );
        assert_eq!(
            route("Control.enclave.us-east-1-i-0abc-1.drain"),
            control(ControlScope::Enclave("us-east-1-i-0abc-1".into()), "drain")
        );
        assert_eq!(
            route("Control.user.u-1.vault.reset"),
            control(
                ControlScope::User(OwnerSpace::parse("u-1").unwrap()),
                "vault.reset"
            )
        );
        for bad in [
            "Control",
            "Control.global",
            "Control.global.",
            "Control.enclave.h1",
            "Control.user.u1",
            "Control.fleet.x.drain",
            "Control.enclave.*.drain",
            "Control.global.health..request",
        ] {
            assert_eq!(route(bad), Route::Unknown, "{bad}");
        }
        assert_eq!(route("Control.user.a%2f.vault.reset"), Route::BadOwner);
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
