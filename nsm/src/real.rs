//! The real NSM: `/dev/nsm` through the AWS driver (`aws-nitro-enclaves-nsm-api`).
//!
//! The driver never panics on a missing device: `nsm_init()` returns `-1` and every request on that
//! descriptor comes back as `Response::Error(InternalError)`. That would surface as a confusing
//! "internal error" on the first attestation, so [`RealNsm::open`] fails fast instead.

use std::collections::BTreeMap;
use std::path::Path;

use aws_nitro_enclaves_nsm_api::api::{Digest, Request, Response};
use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
use serde_bytes::ByteBuf;

use crate::{
    check_random_len, AttestationRequest, Description, DeviceError, Nsm, NsmError, PcrDigest,
    RequestLimits,
};

/// The device file the AWS driver opens.
pub const NSM_DEVICE: &str = "/dev/nsm";

/// A handle on the enclave's Nitro Security Module.
///
/// One descriptor, shared by all threads: the kernel driver serialises requests itself. The
/// descriptor is closed on drop.
#[derive(Debug)]
pub struct RealNsm {
    fd: i32,
}

impl RealNsm {
    /// Open `/dev/nsm`.
    ///
    /// # Errors
    /// [`NsmError::NoDevice`] when the device file does not exist (not a Nitro Enclave) or the
    /// driver cannot open it.
    pub fn open() -> Result<Self, NsmError> {
        if !Path::new(NSM_DEVICE).exists() {
            return Err(NsmError::NoDevice {
                detail: "the device file does not exist",
            });
        }
        let fd = nsm_init();
        if fd < 0 {
            return Err(NsmError::NoDevice {
                detail: "the NSM driver could not open the device",
            });
        }
        tracing::info!(fd, "opened the Nitro Security Module");
        Ok(Self { fd })
    }

    /// Send one request and return the raw response, turning `Response::Error` into a typed error.
    fn call(&self, name: &'static str, request: Request) -> Result<Response, NsmError> {
        match nsm_process_request(self.fd, request) {
            Response::Error(code) => Err(NsmError::Device {
                request: name,
                code: DeviceError::from(code),
            }),
            response => Ok(response),
        }
    }

    fn describe_pcr(&self, index: u16) -> Result<Vec<u8>, NsmError> {
        match self.call("DescribePCR", Request::DescribePCR { index })? {
            Response::DescribePCR { data, .. } => Ok(data),
            _ => Err(NsmError::UnexpectedResponse {
                request: "DescribePCR",
            }),
        }
    }
}

impl Drop for RealNsm {
    fn drop(&mut self) {
        // `open` never builds a handle with a negative descriptor; the check keeps the driver from
        // logging a spurious close error should one ever exist.
        if self.fd >= 0 {
            nsm_exit(self.fd);
        }
    }
}

// === impl Nsm for RealNsm ===

impl Nsm for RealNsm {
    fn attest(&self, req: &AttestationRequest) -> Result<Vec<u8>, NsmError> {
        req.validate()?;
        let request = Request::Attestation {
            user_data: req.user_data.clone().map(ByteBuf::from),
            nonce: req.nonce.clone().map(ByteBuf::from),
            public_key: req.public_key.clone().map(ByteBuf::from),
        };
        match self.call("Attestation", request)? {
            Response::Attestation { document } => Ok(document),
            _ => Err(NsmError::UnexpectedResponse {
                request: "Attestation",
            }),
        }
    }

    fn describe(&self) -> Result<Description, NsmError> {
        let (module_id, max_pcrs, digest) = match self.call("DescribeNSM", Request::DescribeNSM)? {
            Response::DescribeNSM {
                module_id,
                max_pcrs,
                digest,
                ..
            } => (module_id, max_pcrs, digest),
            _ => {
                return Err(NsmError::UnexpectedResponse {
                    request: "DescribeNSM",
                })
            }
        };
        let digest = match digest {
            Digest::SHA256 => PcrDigest::Sha256,
            Digest::SHA384 => PcrDigest::Sha384,
            Digest::SHA512 => PcrDigest::Sha512,
        };
        let pcrs = (0..max_pcrs)
            .map(|index| Ok((index, self.describe_pcr(index)?)))
            .collect::<Result<BTreeMap<_, _>, NsmError>>()?;
        Ok(Description {
            module_id,
            digest,
            pcrs,
            is_mock: false,
            limits: RequestLimits::AWS,
        })
    }

    fn random(&self, len: usize) -> Result<Vec<u8>, NsmError> {
        check_random_len(len)?;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let chunk = match self.call("GetRandom", Request::GetRandom)? {
                Response::GetRandom { random } => random,
                _ => {
                    return Err(NsmError::UnexpectedResponse {
                        request: "GetRandom",
                    })
                }
            };
            if chunk.is_empty() {
                return Err(NsmError::EmptyRandom);
            }
            let take = chunk.len().min(len - out.len());
            out.extend_from_slice(&chunk[..take]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle on a descriptor that is not open: every request reaches the driver's `ioctl`,
    /// which fails with EBADF. Built by hand because `open` refuses to create one.
    fn closed_handle() -> RealNsm {
        RealNsm { fd: -1 }
    }

    #[test]
    fn open_without_device_returns_no_device() {
        if Path::new(NSM_DEVICE).exists() {
            return; // running inside a real enclave
        }
        let err = RealNsm::open().expect_err("no /dev/nsm on this machine");
        assert!(matches!(err, NsmError::NoDevice { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("no /dev/nsm: this build needs a Nitro Enclave"),
            "{msg}"
        );
        assert!(msg.contains("feature `mock`"), "{msg}");
    }

    #[test]
    fn oversized_request_rejected_before_the_device() {
        let req = AttestationRequest {
            nonce: Some(vec![0; crate::MAX_NONCE_LEN + 1]),
            ..Default::default()
        };
        // The device would say InternalError; TooLarge proves we never reached it.
        assert!(matches!(
            closed_handle().attest(&req),
            Err(NsmError::TooLarge { field: "nonce", .. })
        ));
        assert!(matches!(
            closed_handle().random(crate::MAX_RANDOM_LEN + 1),
            Err(NsmError::TooLarge {
                field: "random",
                ..
            })
        ));
    }

    #[test]
    fn driver_failures_become_typed_device_errors() {
        let nsm = closed_handle();
        fn internal<T>(r: Result<T, NsmError>, want: &str) {
            match r {
                Err(NsmError::Device { request, code }) => {
                    assert_eq!((request, code), (want, DeviceError::InternalError));
                }
                Err(other) => panic!("{want}: expected a device error, got {other:?}"),
                Ok(_) => panic!("{want}: expected a device error, got Ok"),
            }
        }
        internal(nsm.attest(&AttestationRequest::default()), "Attestation");
        internal(nsm.describe(), "DescribeNSM");
        internal(nsm.random(16), "GetRandom");
    }

    #[test]
    fn zero_random_bytes_needs_no_device() {
        assert_eq!(closed_handle().random(0).unwrap(), Vec::<u8>::new());
    }
}
