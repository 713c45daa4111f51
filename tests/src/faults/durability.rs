//! The read-back after the load ([`verify_durable`]): a new enclave process, a cold unlock of
//! every user, and every answer the load was given held against what is stored, counted as
//! [`Durability`].
//!
//! Separate because it is the proof behind the table's "nothing acknowledged lost" (RPO 0,
//! docs/DEFECTS.md G16), worth reading on its own, and `tests/vault_faults.rs` runs it after
//! faults of its own.

use std::collections::{BTreeMap, BTreeSet};

use super::{in_doubt, Kind, Sent, LIMIT};
use crate::app::ReplyKey;
use crate::system::System;
use crate::vault_client::{Answer, VaultUser};

/// What reading every vault back found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durability {
    /// Acknowledged mutations (secrets, enrolments) missing, or stored under another id.
    pub lost: usize,
    /// Refused with a definite error, yet stored: the client was told "not done" wrongly.
    pub refused_but_stored: usize,
    /// Answered [`in_doubt`] and in fact stored (allowed: the client must check).
    pub in_doubt_stored: usize,
}

/// A new enclave process, a cold unlock of every user, and `secrets.list` against the answers
/// (see the module docs). `enrolled` are the users whose `pin.setup` was answered, with that
/// answer: an acknowledged one must open through KMS again, a refused one must not exist.
///
/// # Panics
/// If the system does not come back, or a user cannot unlock or list.
pub async fn verify_durable(
    sys: &mut System,
    users: &mut [VaultUser],
    sent: &[Vec<Sent>],
    enrolled: &[(VaultUser, Answer)],
) -> Durability {
    tokio::task::block_in_place(|| sys.start_enclave());
    assert!(sys.wait_healthy(LIMIT), "parent did not reconnect");
    users[0].wait_answering(LIMIT).await;
    let mut d = Durability::default();
    for (user, sent) in users.iter_mut().zip(sent) {
        // A UTK the enclave spent as it died is refused (`utk_invalid`); the app takes the next.
        let mut answer = user.unlock().await;
        for _ in 0..3 {
            if answer.code() != "utk_invalid" {
                break;
            }
            answer = user.unlock().await;
        }
        let r = answer.expect_ok("cold pin.unlock");
        assert_eq!(r["status"], "unlocked", "{r}");
        let listed: BTreeMap<String, String> = user
            .list_secrets()
            .await
            .unwrap_or_else(|a| panic!("secrets.list: {a:?}"))
            .into_iter()
            .map(|(id, name)| (name, id))
            .collect();
        let adds: Vec<&Sent> = sent.iter().filter(|s| s.kind == Kind::Add).collect();
        for s in &adds {
            let stored = listed.get(&s.name);
            match &s.answer {
                Answer::Ok(r) => {
                    if stored.map(String::as_str) != r["id"].as_str() {
                        d.lost += 1;
                    }
                }
                a if in_doubt(a) => d.in_doubt_stored += usize::from(stored.is_some()),
                _ => d.refused_but_stored += usize::from(stored.is_some()),
            }
        }
        let known: BTreeSet<&str> = adds.iter().map(|s| s.name.as_str()).collect();
        assert!(
            listed.keys().all(|n| known.contains(n.as_str())),
            "a secret no request named is stored: {listed:?}"
        );
        // The values too, not only the names: the last acknowledged secret reads back.
        if let Some(last) = adds.iter().rev().find(|s| s.answer.is_ok()) {
            let reply = ReplyKey::generate();
            let Answer::Ok(r) = &last.answer else {
                unreachable!()
            };
            let got = user
                .retrieve_secret(r["id"].as_str().unwrap(), &reply)
                .await
                .expect_ok("secrets.retrieve");
            let secret = reply.open_json(got["encrypted_secret"].as_str().unwrap());
            assert_eq!(secret["value"], format!("value of {}", last.name));
        }
    }
    // An enrolled vault opens through KMS again: loading it answers `utk_invalid` (the probe's
    // UTK was never minted) rather than `not_enrolled`. No Argon2id, no attempt spent.
    for (user, setup) in enrolled {
        let exists = match user.load_locked().await.code().as_str() {
            "utk_invalid" => true,
            "not_enrolled" => false,
            other => panic!("{}: loading the vault answered {other}", user.owner),
        };
        match setup {
            Answer::Ok(_) => d.lost += usize::from(!exists),
            a if in_doubt(a) => d.in_doubt_stored += usize::from(exists),
            _ => d.refused_but_stored += usize::from(exists),
        }
    }
    d
}
