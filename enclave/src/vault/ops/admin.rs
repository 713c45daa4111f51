//! Signed control commands on one user's vault.

use super::*;
use crate::control::AdminError;

/// Signed control commands on one user's vault ([`crate::control::VaultAdmin`]).
pub struct VaultAdminImpl<'a> {
    services: Services<'a>,
}

impl<'a> VaultAdminImpl<'a> {
    /// Over the enclave's vaults.
    pub fn new(services: Services<'a>) -> Self {
        Self { services }
    }
}

/// A replay is its own answer; every other failure means "try again later".
fn admin_error(e: ClientError) -> AdminError {
    match e {
        ClientError::ControlRejected(crate::control::Rejection::Replayed) => AdminError::Replayed,
        _ => AdminError::Unavailable,
    }
}

impl crate::control::VaultAdmin for VaultAdminImpl<'_> {
    async fn reset(&self, user: &OwnerSpace, issued_at_ms: u64) -> Result<usize, AdminError> {
        let mut slot = self.services.vaults.slot(user.as_str()).await;
        let existed = self
            .services
            .vaults
            .delete(user.as_str(), &mut slot, issued_at_ms)
            .await
            .map_err(admin_error)?;
        let keys = self.services.keys.remove_owner(user.as_str());
        if let Some(fleet) = self.services.fleet {
            // Attestation keys minted before the reset must not enrol the new vault.
            if let Err(e) = fleet.remove_owner(user.as_str()).await {
                tracing::warn!(vault = %user, code = e.code(), "reset: fleet keys not removed");
            }
        }
        tracing::warn!(vault = %user, existed, "vault reset by signed command");
        Ok(keys + usize::from(existed))
    }

    async fn delete_credential(
        &self,
        user: &OwnerSpace,
        issued_at_ms: u64,
    ) -> Result<usize, AdminError> {
        let sealer = self.services.sealer.ok_or(AdminError::Unavailable)?;
        let vaults = self.services.vaults;
        let mut slot = vaults.slot(user.as_str()).await;
        match vaults.load(sealer, user.as_str(), &mut slot).await {
            Err(ClientError::NotEnrolled) => return Ok(0),
            Err(e) => return Err(admin_error(e)),
            Ok(_) => {}
        }
        vaults
            .check_command(&slot, issued_at_ms)
            .map_err(admin_error)?;
        let loaded = slot.vault.as_ref().ok_or(AdminError::Unavailable)?;
        let mut meta = loaded.meta.clone();
        let at = Some(issued_at_ms);
        match &loaded.unlocked {
            Some(u) => {
                let mut state = u.state.clone();
                let had = state.credential.take().is_some();
                let dek = dek_copy(&u.dek);
                vaults
                    .commit_as(user.as_str(), &mut slot, meta, Some((dek, state)), at)
                    .await
                    .map_err(admin_error)?;
                Ok(usize::from(had))
            }
            None => {
                // Locked: the state needs the PIN. Record the deletion in meta; the next unlock
                // applies it before anything else can read the credential.
                meta.credential_delete_pending = true;
                vaults
                    .commit_as(user.as_str(), &mut slot, meta, None, at)
                    .await
                    .map_err(admin_error)?;
                Ok(1)
            }
        }
    }
}
