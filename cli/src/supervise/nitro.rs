//! The `nitro-cli` commands the supervisor runs, and the JSON they print.
//!
//! Shapes follow `aws-nitro-enclaves-cli` `src/common/json_output.rs` (`EnclaveRunInfo`,
//! `EnclaveDescribeInfo`, `EnclaveTerminateInfo`). Only the fields we act on are required;
//! others (`CPUIDs`, `PCRs`, fields added by later releases) are ignored, so a nitro-cli upgrade
//! does not break the supervisor. `run-enclave` prints progress lines ("Start allocating
//! memory...") before its JSON, so parsing starts at the first line that opens a JSON value.
//!
//! Every invocation is bounded ([`NitroCli::timeout`]) and killed if it overruns; its output is
//! read up to [`MAX_OUTPUT`] bytes. The enclave process that `run-enclave` forks may inherit
//! nitro-cli's stdout: we stop reading [`OUTPUT_DRAIN`] after nitro-cli itself exits instead of
//! waiting for an end-of-file that only comes when the enclave stops.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::config::EnclaveConfig;

/// Most bytes read from one nitro-cli stream; its JSON is a few hundred bytes.
pub const MAX_OUTPUT: u64 = 1024 * 1024;
/// How long we keep reading nitro-cli's output after it exited.
pub const OUTPUT_DRAIN: Duration = Duration::from_millis(500);
/// How much of nitro-cli's stderr goes into an error message.
const STDERR_TAIL: usize = 2048;

/// A nitro-cli invocation that did not give us what we need.
#[derive(Debug, thiserror::Error)]
pub enum NitroError {
    /// The binary could not be started at all.
    #[error("cannot execute {path}: {source}")]
    Spawn {
        /// The nitro-cli path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited non-zero (its stderr, e.g. `[ E29 ] Ioctl failure`, is included).
    #[error("nitro-cli {command} exited with {status}: {stderr}")]
    Failed {
        /// Subcommand.
        command: &'static str,
        /// Exit status.
        status: String,
        /// Tail of stderr.
        stderr: String,
    },
    /// It ran longer than its bound and was killed.
    #[error("nitro-cli {command} did not finish within {limit:?}; killed")]
    Timeout {
        /// Subcommand.
        command: &'static str,
        /// The bound.
        limit: Duration,
    },
    /// Its output was not the JSON we expect.
    #[error("nitro-cli {command} printed unexpected output: {reason}")]
    Output {
        /// Subcommand.
        command: &'static str,
        /// Why it did not parse.
        reason: String,
    },
}

/// What `run-enclave` prints.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    /// `i-…-enc…`: what every later command names.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// PID of the enclave process that holds the enclave's resources.
    #[serde(rename = "ProcessID", default)]
    pub process_id: Option<u32>,
    /// The CID the enclave got.
    #[serde(rename = "EnclaveCID", default)]
    pub enclave_cid: Option<u64>,
}

/// One element of the array `describe-enclaves` prints.
#[derive(Debug, Clone, Deserialize)]
pub struct EnclaveInfo {
    /// Enclave id.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// Name (nitro-cli ≥ 1.2).
    #[serde(rename = "EnclaveName", default)]
    pub enclave_name: Option<String>,
    /// CID.
    #[serde(rename = "EnclaveCID", default)]
    pub enclave_cid: Option<u64>,
    /// `RUNNING` or `TERMINATING`.
    #[serde(rename = "State")]
    pub state: String,
    /// `NONE` or `DEBUG_MODE`.
    #[serde(rename = "Flags", default)]
    pub flags: Option<String>,
}

impl EnclaveInfo {
    /// Whether nitro-cli reports it running.
    pub fn is_running(&self) -> bool {
        self.state.eq_ignore_ascii_case("running")
    }

    /// Whether this enclave is ours: same name, or holding our CID (which would make
    /// `run-enclave` fail anyway). Other enclaves on the host are left alone.
    pub fn is_ours(&self, config: &EnclaveConfig) -> bool {
        self.enclave_name.as_deref() == Some(config.enclave_name.as_str())
            || self.enclave_cid == Some(u64::from(config.cid))
    }
}

/// The nitro-cli binary and the bound on each invocation.
#[derive(Debug, Clone)]
pub struct NitroCli {
    /// Path of the binary (`/usr/bin/nitro-cli`; tests pass a stand-in script).
    pub path: PathBuf,
    /// Bound on one invocation.
    pub timeout: Duration,
}

impl NitroCli {
    /// `nitro-cli run-enclave …`; waits for nitro-cli to report the enclave booted.
    ///
    /// # Errors
    /// [`NitroError`] if it fails, overruns or prints something unexpected.
    pub async fn run_enclave(&self, c: &EnclaveConfig, debug: bool) -> Result<RunInfo, NitroError> {
        let mut args: Vec<OsString> = vec![
            "run-enclave".into(),
            "--enclave-name".into(),
            c.enclave_name.clone().into(),
            "--eif-path".into(),
            c.eif_path.clone().into(),
            "--enclave-cid".into(),
            c.cid.to_string().into(),
            "--cpu-count".into(),
            c.cpu_count.to_string().into(),
            "--memory".into(),
            c.memory_mib.to_string().into(),
        ];
        if debug {
            args.push("--debug-mode".into());
        }
        let out = self.exec("run-enclave", &args).await?;
        parse_json("run-enclave", &out)
    }

    /// `nitro-cli describe-enclaves`.
    ///
    /// # Errors
    /// [`NitroError`].
    pub async fn describe(&self) -> Result<Vec<EnclaveInfo>, NitroError> {
        let out = self
            .exec("describe-enclaves", &["describe-enclaves".into()])
            .await?;
        parse_json("describe-enclaves", &out)
    }

    /// `nitro-cli terminate-enclave --enclave-id ID`.
    ///
    /// # Errors
    /// [`NitroError`].
    pub async fn terminate(&self, enclave_id: &str) -> Result<(), NitroError> {
        let args: Vec<OsString> = vec![
            "terminate-enclave".into(),
            "--enclave-id".into(),
            enclave_id.into(),
        ];
        self.exec("terminate-enclave", &args).await.map(drop)
    }

    async fn exec(&self, command: &'static str, args: &[OsString]) -> Result<Vec<u8>, NitroError> {
        tracing::debug!(nitro_cli = %self.path.display(), ?args, "running nitro-cli");
        let mut child = Command::new(&self.path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NitroError::Spawn {
                path: self.path.display().to_string(),
                source,
            })?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let status = {
            let out_pipe = child.stdout.take();
            let err_pipe = child.stderr.take();
            let read_out = read_bounded(out_pipe, &mut stdout);
            let read_err = read_bounded(err_pipe, &mut stderr);
            tokio::pin!(read_out, read_err);
            let (mut out_done, mut err_done) = (false, false);
            let waited = tokio::time::timeout(self.timeout, async {
                loop {
                    tokio::select! {
                        _ = &mut read_out, if !out_done => out_done = true,
                        _ = &mut read_err, if !err_done => err_done = true,
                        status = child.wait() => break status,
                    }
                }
            })
            .await;
            let status = match waited {
                Ok(Ok(status)) => status,
                Ok(Err(source)) => {
                    return Err(NitroError::Spawn {
                        path: self.path.display().to_string(),
                        source,
                    })
                }
                // `child` is dropped on return: kill_on_drop ends the overrunning nitro-cli.
                Err(_) => {
                    return Err(NitroError::Timeout {
                        command,
                        limit: self.timeout,
                    })
                }
            };
            let _ = tokio::time::timeout(OUTPUT_DRAIN, async {
                if !out_done {
                    (&mut read_out).await;
                }
                if !err_done {
                    (&mut read_err).await;
                }
            })
            .await;
            status
        };
        if !status.success() {
            let text = String::from_utf8_lossy(&stderr);
            let tail = text.trim();
            let start = tail.len().saturating_sub(STDERR_TAIL);
            let start = (start..tail.len())
                .find(|i| tail.is_char_boundary(*i))
                .unwrap_or(0);
            return Err(NitroError::Failed {
                command,
                status: status.to_string(),
                stderr: tail[start..].to_string(),
            });
        }
        Ok(stdout)
    }
}

async fn read_bounded<R: AsyncRead + Unpin>(pipe: Option<R>, into: &mut Vec<u8>) {
    if let Some(pipe) = pipe {
        let _ = pipe.take(MAX_OUTPUT).read_to_end(into).await;
    }
}

/// Parses the first JSON value in `out`, skipping progress lines before it.
fn parse_json<T: DeserializeOwned>(command: &'static str, out: &[u8]) -> Result<T, NitroError> {
    let bad = |reason: String| NitroError::Output { command, reason };
    let text = std::str::from_utf8(out).map_err(|_| bad("not UTF-8".into()))?;
    let mut offset = 0;
    let start = text
        .split_inclusive('\n')
        .find_map(|line| {
            let here = offset;
            offset += line.len();
            let trimmed = line.trim_start();
            (trimmed.starts_with('{') || trimmed.starts_with('['))
                .then(|| here + (line.len() - trimmed.len()))
        })
        .ok_or_else(|| bad(format!("no JSON in {:?}", truncate(text))))?;
    serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<T>()
        .next()
        .ok_or_else(|| bad("empty".into()))?
        .map_err(|e| bad(e.to_string()))
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_output_with_progress_lines_parses() {
        let out = "Start allocating memory...\nStarted enclave with enclave-cid: 16, memory: 6144 MiB, cpu-ids: [1, 5]\n{\n  \"EnclaveName\": \"vettid-enclave\",\n  \"EnclaveID\": \"i-0abc-enc0123\",\n  \"ProcessID\": 4242,\n  \"EnclaveCID\": 16,\n  \"NumberOfCPUs\": 2,\n  \"CPUIDs\": [1, 5],\n  \"MemoryMiB\": 6144\n}\n";
        let info: RunInfo = parse_json("run-enclave", out.as_bytes()).unwrap();
        assert_eq!(info.enclave_id, "i-0abc-enc0123");
        assert_eq!(info.process_id, Some(4242));
        assert_eq!(info.enclave_cid, Some(16));
    }

    #[test]
    fn describe_output_parses_and_ignores_unknown_fields() {
        let out = r#"[{"EnclaveName":"x","EnclaveID":"i-1-enc2","ProcessID":7,"EnclaveCID":16,"NumberOfCPUs":2,"CPUIDs":[1,3],"MemoryMiB":1600,"State":"RUNNING","Flags":"NONE","PCRs":{"PCR0":"00"}}]"#;
        let list: Vec<EnclaveInfo> = parse_json("describe-enclaves", out.as_bytes()).unwrap();
        assert!(list[0].is_running());
        let empty: Vec<EnclaveInfo> = parse_json("describe-enclaves", b"[]\n").unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let e = parse_json::<RunInfo>("run-enclave", b"[ E26 ] Insufficient memory\n").unwrap_err();
        assert!(matches!(e, NitroError::Output { .. }), "{e}");
    }
}
