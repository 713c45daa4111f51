//! KMS failures → [`SealError`], the stable codes operators grep for.
//!
//! Mapping by KMS error code (the `__type` of the JSON 1.1 error), so every operation shares it:
//!
//! | KMS | SealError |
//! |---|---|
//! | `AccessDeniedException`, `UnrecognizedClientException`, `InvalidSignatureException`, `IncompleteSignature` | `AccessDenied` (policy refuses this PCR0 or the role; bad signing keys) |
//! | `DisabledException` | `KeyDisabled` |
//! | `KMSInvalidStateException` whose message says "disabled" | `KeyDisabled` |
//! | any other `KMSInvalidStateException` | `KeyPendingDeletion` (the only other state a symmetric AWS_KMS key we seal with can be in; PendingImport and custom-key-store states do not apply) |
//! | `NotFoundException` | `KeyNotFound` |
//! | `InvalidCiphertextException`, `IncorrectKeyException` | `InvalidCiphertext` (tampered, another vault's, another key's) |
//! | `ThrottlingException`, `LimitExceededException` | `Throttled` (after the SDK's own retries) |
//! | timeouts, connection/TLS/tunnel failures, `ExpiredTokenException`, no credentials, KMS 5xx, anything else | `Unavailable` |

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

use crate::sealing::SealError;

/// The [`SealError`] for a failed SDK call, and a short reason for logs.
pub fn classify<E, R>(err: &SdkError<E, R>) -> (SealError, &'static str)
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(context) => {
            let service = context.err();
            (
                from_code(service.code().unwrap_or_default(), service.message()),
                "service",
            )
        }
        SdkError::TimeoutError(_) => (SealError::Unavailable, "timeout"),
        SdkError::DispatchFailure(_) => (SealError::Unavailable, "dispatch"),
        SdkError::ResponseError(_) => (SealError::Unavailable, "response"),
        SdkError::ConstructionFailure(_) => (SealError::Unavailable, "construction"),
        _ => (SealError::Unavailable, "other"),
    }
}

/// The [`SealError`] for a KMS error code (see the module table).
pub fn from_code(code: &str, message: Option<&str>) -> SealError {
    match code {
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature" => SealError::AccessDenied,
        "DisabledException" => SealError::KeyDisabled,
        "KMSInvalidStateException" => {
            let disabled = message.is_some_and(|m| m.to_ascii_lowercase().contains("disabled"));
            if disabled {
                SealError::KeyDisabled
            } else {
                SealError::KeyPendingDeletion
            }
        }
        "NotFoundException" => SealError::KeyNotFound,
        "InvalidCiphertextException" | "IncorrectKeyException" => SealError::InvalidCiphertext,
        "ThrottlingException" | "LimitExceededException" => SealError::Throttled,
        _ => SealError::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_codes_map_to_stable_seal_errors() {
        let cases = [
            ("AccessDeniedException", None, SealError::AccessDenied),
            ("UnrecognizedClientException", None, SealError::AccessDenied),
            ("DisabledException", None, SealError::KeyDisabled),
            (
                "KMSInvalidStateException",
                Some("arn:aws:kms:us-east-1:1:key/k is pending deletion."),
                SealError::KeyPendingDeletion,
            ),
            (
                "KMSInvalidStateException",
                Some("arn:aws:kms:us-east-1:1:key/k is disabled."),
                SealError::KeyDisabled,
            ),
            (
                "KMSInvalidStateException",
                None,
                SealError::KeyPendingDeletion,
            ),
            ("NotFoundException", None, SealError::KeyNotFound),
            (
                "InvalidCiphertextException",
                None,
                SealError::InvalidCiphertext,
            ),
            ("IncorrectKeyException", None, SealError::InvalidCiphertext),
            ("ThrottlingException", None, SealError::Throttled),
            ("LimitExceededException", None, SealError::Throttled),
            ("ExpiredTokenException", None, SealError::Unavailable),
            ("KMSInternalException", None, SealError::Unavailable),
            ("", None, SealError::Unavailable),
        ];
        for (code, message, want) in cases {
            assert_eq!(from_code(code, message), want, "{code} {message:?}");
        }
    }
}
