//! DynamoDB failures → [`TrustedError`], the stable codes operators grep for.
//!
//! | DynamoDB | TrustedError |
//! |---|---|
//! | `ConditionalCheckFailedException` | `Conflict` (nothing changed) |
//! | `ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded` | `Throttled` (refused before applying; nothing changed) |
//! | `AccessDeniedException`, `UnrecognizedClientException`, `InvalidSignatureException`, `IncompleteSignature`, `MissingAuthenticationToken`, `ExpiredTokenException` | `Denied` (the sealed credentials are re-read) |
//! | `ResourceNotFoundException`, `ValidationException`, any other 4xx code | `Unavailable` (a configuration error: logged as an error with the code; nothing changed) |
//! | no connection (the tunnel or the table unreachable: the TLS connection never came up) | `Unavailable` |
//! | a read that timed out or broke after sending, 5xx | `Unavailable` (a read changes nothing) |
//! | a **write** that timed out or broke after sending, 5xx (`InternalServerError`: DynamoDB may have applied it) | `Uncertain` |

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;

use super::TrustedError;

/// Whether the call may have changed the table (a write) or not (a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GetItem`.
    Read,
    /// `PutItem`, `UpdateItem`, `DeleteItem`.
    Write,
}

/// The [`TrustedError`] for a failed SDK call, whether it is certain nothing was sent (a retry
/// is then safe), and a short reason for logs.
pub fn classify<E>(
    err: &SdkError<E, HttpResponse>,
    kind: Kind,
) -> (TrustedError, bool, &'static str)
where
    E: ProvideErrorMetadata,
{
    let after_sending = match kind {
        Kind::Read => TrustedError::Unavailable,
        Kind::Write => TrustedError::Uncertain,
    };
    match err {
        SdkError::ServiceError(context) => {
            let code = context.err().code().unwrap_or_default();
            let status = context.raw().status().as_u16();
            let e = from_code(code, status, kind);
            (e, !matches!(e, TrustedError::Uncertain), "service")
        }
        SdkError::DispatchFailure(failure) => match failure.as_connector_error() {
            Some(c) if never_connected(c) => (TrustedError::Unavailable, true, "connect"),
            Some(c) if c.is_timeout() => (after_sending, false, "timeout"),
            _ => (after_sending, false, "dispatch"),
        },
        SdkError::TimeoutError(_) => (after_sending, false, "timeout"),
        SdkError::ResponseError(_) => (after_sending, false, "response"),
        // Built but not sent (an identity or endpoint problem).
        SdkError::ConstructionFailure(_) => (TrustedError::Unavailable, true, "construction"),
        _ => (after_sending, false, "other"),
    }
}

/// The connection (TCP to the forwarder, then TLS through the tunnel) never came up, so no byte
/// of the request left: hyper's client reports a failed connector as a connect error.
fn never_connected(err: &ConnectorError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            return h.is_connect();
        }
        next = e.source();
    }
    false
}

/// The [`TrustedError`] for a DynamoDB error code (see the module table).
pub fn from_code(code: &str, status: u16, kind: Kind) -> TrustedError {
    match code {
        "ConditionalCheckFailedException" => TrustedError::Conflict,
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded" => TrustedError::Throttled,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException" => TrustedError::Denied,
        _ if status >= 500 && kind == Kind::Write => TrustedError::Uncertain,
        _ => TrustedError::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_codes_map_to_stable_errors() {
        use Kind::{Read, Write};
        let cases = [
            (
                "ConditionalCheckFailedException",
                400,
                Write,
                TrustedError::Conflict,
            ),
            (
                "ProvisionedThroughputExceededException",
                400,
                Write,
                TrustedError::Throttled,
            ),
            ("ThrottlingException", 400, Read, TrustedError::Throttled),
            ("RequestLimitExceeded", 400, Write, TrustedError::Throttled),
            ("AccessDeniedException", 400, Write, TrustedError::Denied),
            (
                "UnrecognizedClientException",
                400,
                Read,
                TrustedError::Denied,
            ),
            ("ExpiredTokenException", 400, Read, TrustedError::Denied),
            (
                "ResourceNotFoundException",
                400,
                Write,
                TrustedError::Unavailable,
            ),
            ("ValidationException", 400, Write, TrustedError::Unavailable),
            ("InternalServerError", 500, Write, TrustedError::Uncertain),
            ("InternalServerError", 500, Read, TrustedError::Unavailable),
            ("", 503, Write, TrustedError::Uncertain),
            ("", 400, Write, TrustedError::Unavailable),
        ];
        for (code, status, kind, want) in cases {
            assert_eq!(
                from_code(code, status, kind),
                want,
                "{code} {status} {kind:?}"
            );
        }
    }
}
