//! Runs `tests/independent.py`, a Python implementation that shares no code with this crate, over the
//! committed vectors in `tests/vectors/` (which the crate's own `vectors` tests check byte for byte).
//!
//! This test never skips: no Python, or Python without its modules, is a failure that names what to
//! install. The interpreter is `$VETTID_PYTHON` if set; otherwise `python3` on the PATH, then Debian's
//! `/usr/bin/python3` (where `python3-cryptography` and `python3-argon2` install), the first one that has
//! the modules.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Exit status the script uses for "a module is missing" (any other failure is a real mismatch).
const MISSING_MODULE: i32 = 3;

#[test]
fn independent_python_implementation_agrees_with_vectors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let script = dir.join("independent.py");
    let vectors = dir.join("vectors");
    let candidates: Vec<String> = match std::env::var("VETTID_PYTHON") {
        Ok(python) => vec![python],
        Err(_) => vec!["python3".into(), "/usr/bin/python3".into()],
    };

    let mut problems = Vec::new();
    for python in &candidates {
        match run(python, &script, &vectors) {
            Outcome::NotFound => problems.push(format!("{python}: not found")),
            Outcome::MissingModule(stderr) => problems.push(format!("{python}: {stderr}")),
            Outcome::Ran { ok, stdout, stderr } => {
                assert!(
                    ok,
                    "{python} {}: vectors disagree\n{stdout}\n{stderr}",
                    script.display()
                );
                assert!(stdout.contains(" 0 failed"), "unexpected output: {stdout}");
                return;
            }
        }
    }
    panic!(
        "no usable Python for the independent vector check (install the Debian packages python3, \
         python3-cryptography and python3-argon2):\n  {}",
        problems.join("\n  ")
    );
}

enum Outcome {
    NotFound,
    MissingModule(String),
    Ran {
        ok: bool,
        stdout: String,
        stderr: String,
    },
}

fn run(python: &str, script: &Path, vectors: &Path) -> Outcome {
    let output = match Command::new(python).arg(script).arg(vectors).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::NotFound,
        Err(e) => panic!("cannot run {python}: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.code() == Some(MISSING_MODULE) {
        return Outcome::MissingModule(stderr.trim().to_owned());
    }
    Outcome::Ran {
        ok: output.status.success(),
        stdout,
        stderr,
    }
}
