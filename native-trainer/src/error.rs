//! The CLI's two kinds of failure and their exit codes: 2 for bad input, 1 for a failure while running.

use std::path::Path;

use popalign_core::io::load::LoadError;

#[derive(Debug)]
pub enum CliError {
    /// Missing file, wrong shape, unknown key or name: exit code 2.
    Input(String),
    /// Anything that goes wrong with valid input: exit code 1.
    Runtime(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Input(_) => 2,
            Self::Runtime(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Input(m) | Self::Runtime(m) => f.write_str(m),
        }
    }
}

impl From<LoadError> for CliError {
    fn from(error: LoadError) -> Self {
        Self::Input(error.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Shorthand for a bad-input error.
pub fn input(message: impl Into<String>) -> CliError {
    CliError::Input(message.into())
}

/// A failure while reading or writing `path`.
pub fn runtime(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Runtime(format!("{}: {e}", path.display()))
}
