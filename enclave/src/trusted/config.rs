//! Trusted-store settings: the `--trusted-store-*` flags, validated once into a [`TrustedConfig`].
//!
//! All or nothing, like `--kms-*`: an enclave either has a trusted store (endpoint, region and
//! table given; the KMS configured too, since the credentials are sealed under its key) or runs
//! in today's single-host mode, which health reports as `mode: "single-host"`. The tunnel is the
//! KMS tunnel (`--kms-tunnel`): the parent's `[kms] allow` list names the table's endpoint next
//! to KMS, so the parent needs no new code.

use std::path::PathBuf;

use crate::flag_group::FlagGroup;
use crate::kms::arn::PARTITIONS;
use crate::kms::config::{check_region, read_ca_file, Endpoint};

/// The `--trusted-store-*` flags as given (flattened into the binary's arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrustedFlags {
    /// DynamoDB endpoint as the parent reaches it: `https://dynamodb.us-east-1.amazonaws.com` in
    /// production, `https://dynamodb.vettid.test:PORT` against the stand-in. TLS is verified for
    /// this host name inside the enclave.
    #[arg(long, env = "VETTID_TRUSTED_STORE_ENDPOINT")]
    pub trusted_store_endpoint: Option<String>,
    /// AWS region the requests are signed for; must be the table ARN's.
    #[arg(long, env = "VETTID_TRUSTED_STORE_REGION")]
    pub trusted_store_region: Option<String>,
    /// The table: its full ARN, `arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME`. A bare name
    /// is refused: it would resolve in the account of whatever credentials sign the request. On
    /// the measured command line, so the table is bound to PCR0 like the code.
    #[arg(long, env = "VETTID_TRUSTED_STORE_TABLE")]
    pub trusted_store_table: Option<String>,
    /// Extra PEM CA certificate(s) trusted for the endpoint besides the embedded public roots
    /// (dev: the dev CA's `ca.pem`).
    #[arg(long, env = "VETTID_TRUSTED_STORE_CA_FILE")]
    pub trusted_store_ca_file: Option<PathBuf>,
    /// Loopback port of the in-enclave forwarder for the table's endpoint. Default: the endpoint's
    /// port (443). 0 picks a free port (dev and tests).
    #[arg(long, env = "VETTID_TRUSTED_STORE_FORWARD_PORT")]
    pub trusted_store_forward_port: Option<u16>,
}

/// A validated `arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableArn {
    arn: String,
    region: String,
    account: String,
    name: String,
}

impl TableArn {
    /// Parses a table ARN whose region must equal `region` when given.
    ///
    /// # Errors
    /// What is wrong (a bare name is named as such).
    pub fn parse(value: &str, region: Option<&str>) -> Result<Self, String> {
        if value.len() > 2048 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces, at most 2048 bytes".into());
        }
        if !value.starts_with("arn:") {
            return Err(format!(
                "{value:?} is a bare table name; it resolves in the account of whatever credentials sign the request, so only a full table ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME) is accepted"
            ));
        }
        let parts: Vec<&str> = value.splitn(6, ':').collect();
        let [_, partition, service, arn_region, account, resource] = parts[..] else {
            return Err("not a table ARN: expected six ':'-separated fields".into());
        };
        if !PARTITIONS.contains(&partition) {
            return Err("partition must be aws, aws-cn or aws-us-gov".into());
        }
        if service != "dynamodb" {
            return Err("service must be dynamodb".into());
        }
        check_region(arn_region).map_err(|_| "region must look like us-east-1".to_string())?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err("account must be 12 digits".into());
        }
        let name = resource
            .strip_prefix("table/")
            .ok_or("resource must be table/NAME (not an index or stream ARN)")?;
        let name_ok = (3..=255).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !name_ok {
            return Err("table name must be 3-255 of [A-Za-z0-9_.-]".into());
        }
        if let Some(region) = region {
            if region != arn_region {
                return Err(format!(
                    "the table ARN's region {arn_region:?} is not --trusted-store-region {region:?}"
                ));
            }
        }
        Ok(Self {
            arn: value.to_owned(),
            region: arn_region.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The full ARN, sent as every request's `TableName`.
    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// The account the table lives in.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }
}

impl std::fmt::Display for TableArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.arn)
    }
}

/// Validated trusted-store settings.
#[derive(Debug, Clone)]
pub struct TrustedConfig {
    /// Where DynamoDB is (as the parent reaches it).
    pub endpoint: Endpoint,
    /// Signing region.
    pub region: String,
    /// The table.
    pub table: TableArn,
    /// Extra trusted CA certificates (PEM).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Forwarder port on 127.0.0.1 (0: ephemeral).
    pub forward_port: u16,
}

impl TrustedConfig {
    /// Validates `flags`: `Ok(None)` when no trusted-store flag is given, `Ok(Some)` when the
    /// three required ones are and every value is valid. `kms_configured`: the credentials are
    /// sealed under the KMS key, so a trusted store without `--kms-*` is refused.
    ///
    /// # Errors
    /// Every problem at once, one message each (the binary exits 64).
    pub fn from_flags(
        flags: &TrustedFlags,
        kms_configured: bool,
    ) -> Result<Option<Self>, Vec<String>> {
        let required = [
            (
                "--trusted-store-endpoint",
                flags.trusted_store_endpoint.as_deref(),
            ),
            (
                "--trusted-store-region",
                flags.trusted_store_region.as_deref(),
            ),
            (
                "--trusted-store-table",
                flags.trusted_store_table.as_deref(),
            ),
        ];
        let optional_given =
            flags.trusted_store_ca_file.is_some() || flags.trusted_store_forward_port.is_some();
        let Some(mut group) = FlagGroup::given("--trusted-store-*", &required, optional_given)
        else {
            return Ok(None);
        };
        if !kms_configured {
            group.push(
                "--trusted-store-* needs --kms-*: the table's credentials are sealed under the KMS key"
                    .into(),
            );
        }
        let endpoint = group.value(
            "--trusted-store-endpoint",
            flags.trusted_store_endpoint.as_deref(),
            Endpoint::parse,
        );
        let region = group.value(
            "--trusted-store-region",
            flags.trusted_store_region.as_deref(),
            check_region,
        );
        let table = group.quiet(
            "--trusted-store-table",
            flags.trusted_store_table.as_deref(),
            |t| TableArn::parse(t, region.as_deref()),
        );
        let extra_ca_pem = flags.trusted_store_ca_file.as_ref().and_then(|path| {
            read_ca_file(path)
                .map_err(|e| group.push(format!("--trusted-store-ca-file {}: {e}", path.display())))
                .ok()
        });
        group.finish()?;
        let (Some(endpoint), Some(region), Some(table)) = (endpoint, region, table) else {
            unreachable!("every missing or invalid value pushed an error");
        };
        Ok(Some(Self {
            forward_port: flags.trusted_store_forward_port.unwrap_or(endpoint.port),
            endpoint,
            region,
            table,
            extra_ca_pem,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "arn:aws:dynamodb:us-east-1:111122223333:table/vettid-trusted";

    fn full() -> TrustedFlags {
        TrustedFlags {
            trusted_store_endpoint: Some("https://dynamodb.us-east-1.amazonaws.com".into()),
            trusted_store_region: Some("us-east-1".into()),
            trusted_store_table: Some(TABLE.into()),
            trusted_store_ca_file: None,
            trusted_store_forward_port: None,
        }
    }

    #[test]
    fn no_flags_is_single_host_mode() {
        assert!(TrustedConfig::from_flags(&TrustedFlags::default(), false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn production_flags_forward_on_the_endpoint_port() {
        let c = TrustedConfig::from_flags(&full(), true).unwrap().unwrap();
        assert_eq!(c.forward_port, 443);
        assert_eq!(
            c.endpoint.authority(),
            "dynamodb.us-east-1.amazonaws.com:443"
        );
        assert_eq!(c.table.as_str(), TABLE);
        assert_eq!(c.table.account(), "111122223333");
        assert_eq!(c.table.name(), "vettid-trusted");
    }

    #[test]
    fn half_a_configuration_names_every_missing_flag() {
        let flags = TrustedFlags {
            trusted_store_forward_port: Some(0),
            ..TrustedFlags::default()
        };
        let errors = TrustedConfig::from_flags(&flags, true).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        // Without a KMS the store cannot open its credentials.
        let errors = TrustedConfig::from_flags(&full(), false).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("--kms-"), "{errors:#?}");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let flags = TrustedFlags {
            trusted_store_endpoint: Some("http://dynamodb.us-east-1.amazonaws.com".into()),
            trusted_store_region: Some("US East".into()),
            trusted_store_table: Some("vettid-trusted".into()),
            trusted_store_ca_file: Some("/nonexistent/ca.pem".into()),
            trusted_store_forward_port: Some(0),
        };
        let errors = TrustedConfig::from_flags(&flags, true).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
    }

    #[test]
    fn the_table_must_be_a_full_arn_in_the_signing_region() {
        for (table, says) in [
            ("vettid-trusted", "bare table name"),
            (
                "arn:aws:dynamodb:us-east-1:111122223333:table/vettid-trusted/index/by-x",
                "table name",
            ),
            (
                "arn:aws:dynamodb:eu-west-1:111122223333:table/vettid-trusted",
                "region",
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:table/vettid-trusted",
                "service",
            ),
            (
                "arn:aws:dynamodb:us-east-1:1111:table/vettid-trusted",
                "12 digits",
            ),
            (
                "arn:aws:dynamodb:us-east-1:111122223333:vettid-trusted",
                "table/NAME",
            ),
            ("arn:aws:dynamodb:us-east-1:111122223333:table/ab", "3-255"),
            (
                "arn:evil:dynamodb:us-east-1:111122223333:table/vettid-trusted",
                "partition",
            ),
            ("arn:aws:dynamodb:us-east-1", "six"),
        ] {
            let flags = TrustedFlags {
                trusted_store_table: Some(table.into()),
                ..full()
            };
            let errors = TrustedConfig::from_flags(&flags, true).unwrap_err();
            assert_eq!(errors.len(), 1, "{table}: {errors:#?}");
            assert!(
                errors[0].starts_with("--trusted-store-table: "),
                "{errors:#?}"
            );
            assert!(errors[0].contains(says), "{table}: {errors:#?}");
        }
    }
}
