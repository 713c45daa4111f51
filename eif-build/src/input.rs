//! Reading the build's input files (kernel, init, binary, keys), each named in its error.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{ensure, Context, Result};

/// Read a whole input file, naming it in the error.
pub(crate) fn read_input(what: &str, path: &Path) -> Result<Vec<u8>> {
    let mut f =
        File::open(path).with_context(|| format!("cannot open {what} file {}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("cannot stat {what} file {}", path.display()))?;
    ensure!(
        meta.is_file(),
        "{what} {} is not a regular file",
        path.display()
    );
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?;
    Ok(data)
}
