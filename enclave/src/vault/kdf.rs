//! Argon2id for the vault: on the blocking pool, under the memory semaphore (each derivation
//! holds `kdf.memory_bytes()`, 256 MiB in production), never past the request's deadline.

use vettid_vault_crypto::{Dek, Material, Pin};

use super::Vaults;
use crate::error::ClientError;

impl Vaults {
    /// Argon2id on the blocking pool under the memory semaphore.
    pub(crate) async fn derive_dek(
        &self,
        pin: Pin,
        material: &Material,
        vault: &str,
    ) -> Result<Dek, ClientError> {
        let permit = self.argon2_permit().await?;
        self.derive_dek_with(permit, pin, material, vault).await
    }

    /// Waits for one of the Argon2 memory permits.
    pub(crate) async fn argon2_permit(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ClientError> {
        crate::deadline::within(self.argon2.clone().acquire_owned())
            .await
            .ok_or(ClientError::DeadlineExceeded)?
            .map_err(|_| ClientError::Internal)
    }

    /// Argon2id under an already acquired permit (so a caller can hold the permit before it
    /// commits to an attempt).
    pub(crate) async fn derive_dek_with(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        pin: Pin,
        material: &Material,
        vault: &str,
    ) -> Result<Dek, ClientError> {
        let material = Material::from_bytes(*material.expose());
        let vault = vault.to_owned();
        let params = self.config.kdf;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            vettid_vault_crypto::derive_dek(&pin, &material, &vault, &params)
        })
        .await
        .map_err(|_| ClientError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "DEK derivation failed");
            ClientError::Internal
        })
    }
}
