//! Everything the CLI prints goes through here (stdout for results, stderr for errors).

#![allow(clippy::print_stdout, clippy::print_stderr)]

/// Prints a result line.
pub fn line(s: &str) {
    println!("{s}");
}

/// Prints an error line.
pub fn error(s: &str) {
    eprintln!("vettid: {s}");
}
