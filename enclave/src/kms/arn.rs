//! The KMS key the enclave seals under, named by its full key ARN and nothing else.
//!
//! An alias (`alias/vettid`) or a bare key id is resolved by KMS in the account of whoever signs
//! the request, and the enclave signs with credentials the host lends. A host that lends
//! credentials for its own account, where it made an alias of the same name over a key with an
//! open policy, would receive every new vault's material. A key ARN names the account, so KMS
//! evaluates *that* key's policy whoever signs, and every response can be checked against it
//! ([`KeyArn::matches`]). `--kms-key-id` is on the measured enclave command line, so the ARN is
//! bound to PCR0 like the code.

use std::fmt;

/// The partitions a KMS key can live in.
pub const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// A validated `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyArn {
    arn: String,
    partition: String,
    region: String,
    account: String,
    key_id: String,
}

/// Why a `--kms-key-id` value is not a key ARN. Each message says what to pass instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    /// An `alias/…` name or an alias ARN.
    #[error("{0:?} is an alias; aliases resolve in the account of the lent credentials, so only a full key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID) is accepted")]
    Alias(String),
    /// A bare key id (UUID or `mrk-…`).
    #[error("{0:?} is a bare key id; it resolves in the account of the lent credentials, so only a full key ARN (arn:aws:kms:REGION:ACCOUNT:key/{0}) is accepted")]
    BareId(String),
    /// Anything else that is not `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID`.
    #[error(
        "{value:?} is not a KMS key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID): {reason}"
    )]
    Malformed {
        /// The value given.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The ARN's region is not the region requests are signed for.
    #[error("the key ARN's region {arn_region:?} is not --kms-region {region:?}")]
    Region {
        /// Region in the ARN.
        arn_region: String,
        /// `--kms-region`.
        region: String,
    },
}

impl KeyArn {
    /// Parses a key ARN whose region must equal `region` (`--kms-region`).
    ///
    /// # Errors
    /// [`ArnError`]: aliases and bare ids are named as such.
    pub fn parse(value: &str, region: Option<&str>) -> Result<Self, ArnError> {
        let bad = |reason| ArnError::Malformed {
            value: value.chars().take(200).collect(),
            reason,
        };
        if value.len() > 2048 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "must be printable ASCII without spaces, at most 2048 bytes",
            ));
        }
        if value.starts_with("alias/") || value.contains(":alias/") {
            return Err(ArnError::Alias(value.to_owned()));
        }
        if is_key_id(value) {
            return Err(ArnError::BareId(value.to_owned()));
        }
        let parts: Vec<&str> = value.splitn(6, ':').collect();
        let [arn, partition, service, arn_region, account, resource] = parts[..] else {
            return Err(bad("expected six ':'-separated fields"));
        };
        if arn != "arn" {
            return Err(bad("must start with arn:"));
        }
        if !PARTITIONS.contains(&partition) {
            return Err(bad("partition must be aws, aws-cn or aws-us-gov"));
        }
        if service != "kms" {
            return Err(bad("service must be kms"));
        }
        if !is_region(arn_region) {
            return Err(bad("region must look like us-east-1"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("account must be 12 digits"));
        }
        let key_id = resource
            .strip_prefix("key/")
            .ok_or_else(|| bad("resource must be key/KEY-ID"))?;
        if !is_key_id(key_id) {
            return Err(bad(
                "key id must be a lower-case UUID or mrk- and 32 lower-case hex digits",
            ));
        }
        if let Some(region) = region {
            if region != arn_region {
                return Err(ArnError::Region {
                    arn_region: arn_region.to_owned(),
                    region: region.to_owned(),
                });
            }
        }
        Ok(Self {
            arn: value.to_owned(),
            partition: partition.to_owned(),
            region: arn_region.to_owned(),
            account: account.to_owned(),
            key_id: key_id.to_owned(),
        })
    }

    /// The full ARN, as sent in every request's `KeyId`.
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The key's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The 12-digit account that owns the key: the only account the policy check lets in.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The key id (UUID or `mrk-…`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether a response's `KeyId` names this key. KMS answers with the key ARN; the comparison
    /// is exact (KMS never changes its case), so anything else is another key.
    pub fn matches(&self, key_id: Option<&str>) -> bool {
        key_id == Some(self.arn.as_str())
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// A lower-case UUID (8-4-4-4-12 hex) or `mrk-` and 32 lower-case hex digits: the two forms KMS
/// gives key ids.
pub fn is_key_id(id: &str) -> bool {
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if let Some(rest) = id.strip_prefix("mrk-") {
        return rest.len() == 32 && hex(rest);
    }
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && hex(g))
}

/// `us-east-1`, `cn-north-1`, `us-gov-west-1`: lower-case words and a number, dash-separated.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && region.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn full_key_arns_parse_in_every_partition() {
        for (partition, region) in [
            ("aws", "us-east-1"),
            ("aws-cn", "cn-north-1"),
            ("aws-us-gov", "us-gov-west-1"),
        ] {
            let value = format!("arn:{partition}:kms:{region}:111122223333:key/{UUID}");
            let arn = KeyArn::parse(&value, Some(region)).unwrap();
            assert_eq!(arn.partition(), partition);
            assert_eq!(arn.region(), region);
            assert_eq!(arn.account(), "111122223333");
            assert_eq!(arn.key_id(), UUID);
            assert!(arn.matches(Some(&value)));
            assert!(!arn.matches(Some(UUID)));
            assert!(!arn.matches(None));
        }
        let mrk = format!(
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-{}",
            "a".repeat(32)
        );
        assert!(KeyArn::parse(&mrk, Some("eu-west-1")).is_ok());
    }

    #[test]
    fn aliases_and_bare_ids_are_refused_by_name() {
        for alias in [
            "alias/vettid",
            "arn:aws:kms:us-east-1:111122223333:alias/vettid",
        ] {
            assert!(matches!(
                KeyArn::parse(alias, Some("us-east-1")),
                Err(ArnError::Alias(_))
            ));
        }
        let mrk = format!("mrk-{}", "0".repeat(32));
        for bare in [UUID, mrk.as_str()] {
            let err = KeyArn::parse(bare, Some("us-east-1")).unwrap_err();
            assert!(matches!(err, ArnError::BareId(_)), "{err}");
            assert!(err.to_string().contains("full key ARN"));
        }
    }

    #[test]
    fn malformed_arns_and_wrong_regions_are_refused() {
        for bad in [
            String::new(),
            "vettid-test-key".into(),
            format!(
                "arn:aws:kms:us-east-1:111122223333:key/{}",
                UUID.to_uppercase()
            ),
            format!("arn:aws:kms:us-east-1:11112222333:key/{UUID}"),
            format!("arn:aws:kms:us-east-1:1111222233334:key/{UUID}"),
            format!("arn:aws:kms:us-east-1:11112222333a:key/{UUID}"),
            format!("arn:aws:s3:us-east-1:111122223333:key/{UUID}"),
            format!("arn:azure:kms:us-east-1:111122223333:key/{UUID}"),
            format!("arn:aws:kms:US-EAST-1:111122223333:key/{UUID}"),
            format!("arn:aws:kms::111122223333:key/{UUID}"),
            format!("arn:aws:kms:us-east-1:111122223333:{UUID}"),
            format!("arn:aws:kms:us-east-1:111122223333:key/{UUID}/x"),
            format!("arn:aws:kms:us-east-1:111122223333:key/{UUID} "),
            format!(
                "arn:aws:kms:us-east-1:111122223333:key/mrk-{}",
                "a".repeat(31)
            ),
            "arn:aws:kms:us-east-1:111122223333:key/".into(),
            format!("ARN:aws:kms:us-east-1:111122223333:key/{UUID}"),
        ] {
            assert!(
                matches!(
                    KeyArn::parse(&bad, Some("us-east-1")),
                    Err(ArnError::Malformed { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let other = format!("arn:aws:kms:eu-west-1:111122223333:key/{UUID}");
        assert!(matches!(
            KeyArn::parse(&other, Some("us-east-1")),
            Err(ArnError::Region { .. })
        ));
    }
}
