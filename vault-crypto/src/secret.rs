//! Key types for the two 32-byte secrets the vault holds: the sealed material and the DEK.
//!
//! They are distinct types so one cannot be passed where the other is meant (both are `[u8; 32]` in v1's
//! Go code, which made that mistake easy). Both zeroize on drop and print as `<redacted>`; the bytes are
//! reachable only through `expose`, so every use is greppable.

use zeroize::Zeroizing;

/// The 32-byte material M, kept sealed at rest (KMS / enclave-held key) and one input of the DEK.
#[derive(Clone)]
pub struct Material(Zeroizing<[u8; 32]>);

impl Material {
    /// Wrap material just unsealed.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Fresh material from the system random source (when KMS GenerateDataKey is not the source).
    ///
    /// # Errors
    /// [`crate::x25519::EnvelopeError::Backend`] if the random source fails.
    pub fn generate() -> Result<Self, crate::x25519::EnvelopeError> {
        crate::x25519::random().map(Self::from_bytes)
    }

    /// The raw bytes, for sealing and for the KDF.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Material(<redacted>)")
    }
}

/// The data encryption key derived from PIN and material ([`crate::dek::derive_dek`]).
#[derive(Clone)]
pub struct Dek(Zeroizing<[u8; 32]>);

impl Dek {
    /// Wrap DEK bytes (the KDF's output, or a DEK restored inside a sealed record).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes, for use as an AEAD or HMAC key.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Dek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let m = Material::from_bytes([0xab; 32]);
        let d = Dek::from_bytes([0xcd; 32]);
        assert_eq!(
            format!("{m:?} {d:?}"),
            "Material(<redacted>) Dek(<redacted>)"
        );
    }

    #[test]
    fn generated_material_differs() {
        assert_ne!(
            Material::generate().unwrap().expose(),
            Material::generate().unwrap().expose()
        );
    }
}
