//! The tunnel's wire protocol, which the enclave codes against exactly:
//!
//! 1. enclave → parent: one ASCII line, at most [`MAX_PREAMBLE_LEN`] bytes with its `\n`:
//!    `vettid-tunnel-v1 HOST:PORT\n`;
//! 2. parent → enclave: one line, [`Reply`]: `ok\n`, or `denied\n` / `unreachable\n` / `busy\n`
//!    after which the parent closes;
//! 3. after `ok\n`, raw bytes both ways (TLS, which ends inside the enclave) until either side
//!    closes.
//!
//! The preamble is read one byte at a time. That costs a few dozen reads per tunnel, and buys the
//! guarantee that nothing after the newline is consumed here: a client that pipelines its TLS
//! `ClientHello` behind the preamble loses none of it.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::target::{Target, TargetError};

/// Longest preamble, newline included: the magic, a 253-byte name, `:`, five digits, and slack.
pub const MAX_PREAMBLE_LEN: usize = 300;

/// How long the enclave has to send its preamble once connected; a silent client would
/// otherwise hold a tunnel slot for ever.
pub const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What every preamble starts with; the version is in the word so a v2 can be told apart.
pub const MAGIC: &str = "vettid-tunnel-v1 ";

/// The parent's one-line answer to a preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Connected; raw bytes follow.
    Ok,
    /// Not on the allow-list, or a malformed preamble.
    Denied,
    /// Allowed, but the TCP connect failed or timed out.
    Unreachable,
    /// Too many tunnels open; try again later.
    Busy,
}

impl Reply {
    /// The bytes sent, newline included.
    pub fn line(self) -> &'static [u8] {
        match self {
            Reply::Ok => b"ok\n",
            Reply::Denied => b"denied\n",
            Reply::Unreachable => b"unreachable\n",
            Reply::Busy => b"busy\n",
        }
    }
}

/// Why a preamble was refused. Any of these is answered `denied` and counted `bad_preamble`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreambleError {
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The client closed before the newline.
    #[error("closed before the end of the preamble")]
    Closed,
    /// No newline within [`MAX_PREAMBLE_LEN`] bytes.
    #[error("no newline within {MAX_PREAMBLE_LEN} bytes")]
    TooLong,
    /// The line does not start with [`MAGIC`], or holds non-ASCII or control bytes.
    #[error("not a vettid-tunnel-v1 preamble")]
    Magic,
    /// The target is not a valid `HOST:PORT`.
    #[error("bad target: {0}")]
    Target(#[from] TargetError),
}

/// Reads one preamble from `r`, consuming exactly the line and nothing after it.
///
/// # Errors
/// [`PreambleError`]; the caller answers `denied` and closes.
pub async fn read_preamble<R: AsyncRead + Unpin>(r: &mut R) -> Result<Target, PreambleError> {
    let mut line = [0u8; MAX_PREAMBLE_LEN];
    for i in 0..MAX_PREAMBLE_LEN {
        if r.read(&mut line[i..=i]).await? == 0 {
            return Err(PreambleError::Closed);
        }
        if line[i] == b'\n' {
            return parse_line(&line[..i]);
        }
    }
    Err(PreambleError::TooLong)
}

/// Parses a preamble line without its newline.
///
/// # Errors
/// [`PreambleError::Magic`] or [`PreambleError::Target`].
pub fn parse_line(line: &[u8]) -> Result<Target, PreambleError> {
    // Printable ASCII only: no `\r`, tabs or NULs that a lax parser might trim or split on.
    if !line.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(PreambleError::Magic);
    }
    let text = std::str::from_utf8(line).map_err(|_| PreambleError::Magic)?;
    let target = text.strip_prefix(MAGIC).ok_or(PreambleError::Magic)?;
    Ok(target.parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio_test::io::Builder;

    #[tokio::test]
    async fn preamble_split_across_reads_is_assembled() {
        let mut io = Builder::new()
            .read(b"vettid-tun")
            .read(b"nel-v1 KMS.us-east-1.amazonaws.com")
            .read(b":443\n")
            .build();
        let t = read_preamble(&mut io).await.unwrap();
        assert_eq!(t.to_string(), "kms.us-east-1.amazonaws.com:443");
    }

    #[tokio::test]
    async fn bytes_after_the_newline_are_left_for_the_tunnel() {
        let mut io = Builder::new()
            .read(b"vettid-tunnel-v1 127.0.0.1:443\n\x16\x03\x01client-hello")
            .build();
        read_preamble(&mut io).await.unwrap();
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"\x16\x03\x01client-hello");
    }

    #[tokio::test]
    async fn no_newline_within_the_cap_is_refused_without_reading_more() {
        let long = vec![b'a'; MAX_PREAMBLE_LEN];
        // The mock panics if we read past what it holds, and fails on drop if we read less.
        let mut io = Builder::new().read(&long).build();
        assert!(matches!(
            read_preamble(&mut io).await,
            Err(PreambleError::TooLong)
        ));
        // A line of exactly the cap, newline included, is still read.
        let mut line = format!("{MAGIC}kms.com:443").into_bytes();
        line.resize(MAX_PREAMBLE_LEN - 1, b'x');
        line.push(b'\n');
        let mut io = Builder::new().read(&line).build();
        assert!(matches!(
            read_preamble(&mut io).await,
            Err(PreambleError::Target(TargetError::Port))
        ));
    }

    #[tokio::test]
    async fn early_close_is_reported() {
        let mut io = Builder::new().read(b"vettid-tunnel-v1 kms").build();
        assert!(matches!(
            read_preamble(&mut io).await,
            Err(PreambleError::Closed)
        ));
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            &b""[..],
            b"vettid-tunnel-v1",
            b"vettid-tunnel-v1 ",
            b"vettid-tunnel-v2 kms.com:443",
            b"VETTID-TUNNEL-V1 kms.com:443",
            b"vettid-tunnel-v1  kms.com:443",
            b"vettid-tunnel-v1 kms.com:443\r",
            b"vettid-tunnel-v1\tkms.com:443",
            b"vettid-tunnel-v1 kms.com:443\0",
            b"vettid-tunnel-v1 *.kms.com:443",
            b"vettid-tunnel-v1 kms.com:99999",
            b"vettid-tunnel-v1 kms.com",
            "vettid-tunnel-v1 km\u{e9}.com:443".as_bytes(),
        ] {
            assert!(
                parse_line(line).is_err(),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            parse_line(b"vettid-tunnel-v1 kms.com:443")
                .unwrap()
                .to_string(),
            "kms.com:443"
        );
    }

    #[test]
    fn replies_are_single_lines() {
        for r in [Reply::Ok, Reply::Denied, Reply::Unreachable, Reply::Busy] {
            let line = r.line();
            assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
            assert_eq!(line.last(), Some(&b'\n'));
        }
    }
}
