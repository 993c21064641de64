//! One error type for the library: every variant names the file it is about, so the
//! command line can print a single line that tells the user where to look.

use std::path::{Path, PathBuf};

/// Errors raised by cortexflow's readers, writers and kernels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, read or written. The reason is in the message and
    /// not chained as a source, so an error chain (`{:#}`) says it once.
    #[error("{}: {reason}", path.display())]
    Io {
        path: PathBuf,
        reason: std::io::Error,
    },
    /// The file was read but its content is not what was expected.
    #[error("{}{}: {msg}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Format {
        path: PathBuf,
        /// 1-based line number, for text formats.
        line: Option<usize>,
        msg: String,
    },
    /// Arguments that do not fit together (no single file is at fault).
    #[error("{0}")]
    Invalid(String),
}

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            reason: source,
        }
    }

    /// A content error in `path` (no line number).
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            line: None,
            msg: msg.into(),
        }
    }

    /// A content error at a 1-based `line` of a text file.
    pub fn at_line(path: impl AsRef<Path>, line: usize, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            line: Some(line),
            msg: msg.into(),
        }
    }
}
