//! Signed control commands on one user's vault.

use super::*;

/// Signed control commands on one user's vault ([`crate::control::VaultAdmin`]).
pub struct VaultAdminImpl<'a> {
    state: &'a EnclaveState,
}

impl<'a> VaultAdminImpl<'a> {
    /// Over the enclave's vaults.
    pub fn new(state: &'a EnclaveState) -> Self {
        Self { state }
    }
}

impl crate::control::VaultAdmin for VaultAdminImpl<'_> {
    async fn reset(&self, user: &OwnerSpace) -> Result<usize, crate::control::AdminError> {
        let keys = self.state.keys.remove_owner(user.as_str());
        let mut slot = self.state.vaults.slot(user.as_str()).await;
        let existed = self
            .state
            .vaults
            .delete(user.as_str(), &mut slot)
            .await
            .map_err(|_| crate::control::AdminError::Unavailable)?;
        tracing::warn!(vault = %user, existed, "vault reset by signed command");
        Ok(keys + usize::from(existed))
    }

    async fn delete_credential(
        &self,
        user: &OwnerSpace,
    ) -> Result<usize, crate::control::AdminError> {
        let unavailable = |_| crate::control::AdminError::Unavailable;
        let sealer = self
            .state
            .sealer
            .as_deref()
            .ok_or(crate::control::AdminError::Unavailable)?;
        let vaults = &self.state.vaults;
        let mut slot = vaults.slot(user.as_str()).await;
        match vaults.load(sealer, user.as_str(), &mut slot).await {
            Err(ClientError::NotEnrolled) => return Ok(0),
            Err(e) => return Err(unavailable(e)),
            Ok(_) => {}
        }
        let loaded = slot
            .vault
            .as_ref()
            .ok_or(crate::control::AdminError::Unavailable)?;
        let mut meta = loaded.meta.clone();
        match &loaded.unlocked {
            Some(u) => {
                let mut state = u.state.clone();
                let had = state.credential.take().is_some();
                let dek = dek_copy(&u.dek);
                vaults
                    .commit(user.as_str(), &mut slot, meta, Some((dek, state)))
                    .await
                    .map_err(unavailable)?;
                Ok(usize::from(had))
            }
            None => {
                // Locked: the state needs the PIN. Record the deletion in meta; the next unlock
                // applies it before anything else can read the credential.
                meta.credential_delete_pending = true;
                vaults
                    .commit(user.as_str(), &mut slot, meta, None)
                    .await
                    .map_err(unavailable)?;
                Ok(1)
            }
        }
    }
}
