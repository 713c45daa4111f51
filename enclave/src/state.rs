//! What every handler shares: the NSM, attestation keys, counters, configuration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use vettid_nsm::{Description, Nsm};

use crate::config::EnclaveConfig;
use crate::control::ControlState;
use crate::fleet::FleetKeys;
use crate::keys::KeyStore;
use crate::parent::ParentLink;
use crate::sealing::Sealer;
use crate::trusted::{TrustedReport, TrustedStore};
use crate::vault::store::VaultStore;
use crate::vault::{VaultConfig, Vaults};

/// Shared enclave state. Cheap to clone behind an `Arc`. Its fields are the crate's own: each
/// part of the enclave gets a narrow handle to what it uses ([`EnclaveState::vault_services`],
/// [`EnclaveState::attester`], the control state), and only the processor, the server loop and
/// health (which reports on every part) read the whole.
pub struct EnclaveState {
    /// Validated settings.
    pub(crate) config: EnclaveConfig,
    /// The NSM (real in production, mock in dev builds).
    pub(crate) nsm: Arc<dyn Nsm>,
    /// The NSM's description, read once at start-up (PCRs do not change while we run).
    pub(crate) nsm_description: Description,
    /// Attestation private keys awaiting use by the vault.
    pub(crate) keys: KeyStore,
    /// Start time, for `uptime_seconds`.
    pub(crate) started: Instant,
    /// Request counters.
    pub(crate) stats: RequestStats,
    /// Control-command verifier, replay cache and drain phase (disabled until
    /// [`EnclaveState::with_control`]).
    pub(crate) control: ControlState,
    /// The signed PCR manifest the parent was configured with, passed to apps as
    /// `expected_pcrs`. Untrusted: apps check its signature.
    pcr_manifest: RwLock<Option<Arc<serde_json::Value>>>,
    /// The live parent connection(s), for requests the enclave originates.
    pub(crate) parent: ParentLink,
    /// Creates and recovers vault material (KMS with an attested Recipient in production);
    /// `None` until configured, and then every vault operation answers `KMSNotConfigured`.
    pub(crate) sealer: Option<Arc<dyn Sealer>>,
    /// The users' vaults.
    pub(crate) vaults: Vaults,
    /// The trusted store (rollback anchors, fleet attestation keys); `None` runs single-host.
    pub(crate) trusted: Option<Arc<TrustedStore>>,
    /// Attestation keys any host can use (with a trusted store).
    pub(crate) fleet: Option<FleetKeys>,
}

/// Largest PCR manifest accepted from the parent.
pub const MAX_PCR_MANIFEST_LEN: usize = 64 * 1024;

impl EnclaveState {
    /// Builds the state, asking the NSM to describe itself (fail fast if it cannot).
    ///
    /// # Errors
    /// The NSM's error when it cannot describe itself.
    pub fn new(config: EnclaveConfig, nsm: Arc<dyn Nsm>) -> Result<Self, vettid_nsm::NsmError> {
        let nsm_description = nsm.describe()?;
        let parent = ParentLink::default();
        Ok(Self {
            keys: KeyStore::new(config.attestation_key_ttl, config.max_attestation_keys),
            config,
            nsm,
            nsm_description,
            started: Instant::now(),
            stats: RequestStats::default(),
            control: ControlState::disabled(),
            pcr_manifest: RwLock::new(None),
            vaults: Vaults::new(
                VaultConfig::default(),
                VaultStore::new(parent.clone(), VaultConfig::default().storage_timeout),
            ),
            parent,
            sealer: None,
            trusted: None,
            fleet: None,
        })
    }

    /// Anchors vaults and attestation keys in `trusted` (the fleet layout: any host finishes any
    /// exchange, and no host can roll a vault back).
    pub fn with_trusted(mut self, trusted: Arc<TrustedStore>) -> Self {
        self.fleet = Some(FleetKeys::new(
            trusted.clone(),
            self.config.attestation_key_ttl,
        ));
        self.vaults = self.vaults.with_trusted(Some(trusted.clone()));
        self.trusted = Some(trusted);
        self
    }

    /// What health shows about the trusted store (`mode: single-host` without one).
    pub fn trusted_report(&self) -> TrustedReport {
        self.trusted
            .as_ref()
            .map_or_else(TrustedReport::single_host, |t| t.report())
    }

    /// Sets the control-command state (keys from `--control-keys`, this enclave's id).
    pub fn with_control(mut self, control: ControlState) -> Self {
        self.control = control;
        self
    }

    /// Replaces the vault settings (before any request is served).
    pub fn with_vault_config(mut self, config: VaultConfig) -> Self {
        let store = VaultStore::new(self.parent.clone(), config.storage_timeout);
        self.vaults = Vaults::new(config, store).with_trusted(self.trusted.clone());
        self
    }

    /// Sets the sealer the vault uses (the KMS client in production).
    pub fn with_sealer(mut self, sealer: Arc<dyn Sealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// The live parent connection(s) (for the binary's start-up clients).
    pub fn parent(&self) -> &ParentLink {
        &self.parent
    }

    /// The NSM.
    pub fn nsm(&self) -> &Arc<dyn Nsm> {
        &self.nsm
    }

    /// The NSM's description, read at start-up.
    pub fn description(&self) -> &Description {
        &self.nsm_description
    }

    /// The handle vault operations and vault commands get.
    pub fn vault_services(&self) -> crate::vault::Services<'_> {
        crate::vault::Services {
            vaults: &self.vaults,
            sealer: self.sealer.as_deref(),
            keys: &self.keys,
            fleet: self.fleet.as_ref(),
        }
    }

    /// The handle attestation requests get.
    pub fn attester(&self) -> crate::handlers::attestation::Attester<'_> {
        crate::handlers::attestation::Attester {
            nsm: self.nsm.clone(),
            module_id: &self.nsm_description.module_id,
            keys: &self.keys,
            fleet: self.fleet.as_ref().zip(self.sealer.as_deref()),
            manifest: self.pcr_manifest(),
        }
    }

    /// Replaces the PCR manifest handed to apps.
    pub fn set_pcr_manifest(&self, manifest: serde_json::Value) {
        *self.pcr_manifest.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(manifest));
    }

    /// The PCR manifest to hand to apps, if the parent sent one.
    pub fn pcr_manifest(&self) -> Option<Arc<serde_json::Value>> {
        self.pcr_manifest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Counters of NATS requests handled.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// Requests being handled now.
    pub in_flight: AtomicU64,
    /// Most requests handled at once since start.
    pub peak_in_flight: AtomicU64,
    /// Requests handled since start.
    pub total: AtomicU64,
    /// Requests answered with an error since start.
    pub errors: AtomicU64,
}

impl RequestStats {
    /// Counts a request in; the returned guard counts it out when dropped.
    pub fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }
}

/// Guard from [`RequestStats::enter`].
pub struct InFlight<'a>(&'a RequestStats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
