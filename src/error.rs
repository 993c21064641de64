//! One error type for the library: every variant names the file or the request it is
//! about, so the command line can print a single line that tells the user where to look.
//!
//! [`Context`] adds what was being done when an error happened ("x.stats: cannot read run
//! statistics: …"), and [`bail!`] returns an [`Error::Invalid`] with a formatted message;
//! both read as anyhow's do, but the library's callers get a typed error to match on.

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// Errors raised by cortexflow's readers, writers, kernels, store and engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, read or written. The reason is in the message and
    /// not chained as a source, so an error chain (`{:#}`) says it once; common reasons
    /// are said in words ("no such file") rather than as the OS's code.
    #[error("{}: {}", shown(path).display(), in_words(reason))]
    Io {
        path: PathBuf,
        reason: std::io::Error,
    },
    /// The file was read but its content is not what was expected.
    #[error("{}{}: {msg}", shown(path).display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Format {
        path: PathBuf,
        /// 1-based line number, for text formats.
        line: Option<usize>,
        msg: String,
    },
    /// A request that cannot be honoured: arguments or settings that do not fit together,
    /// or a computation that cannot go on (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// An error with what was being done when it happened, outermost first.
    #[error("{context}: {inner}")]
    Context {
        context: String,
        /// Not named `source` (thiserror would chain it): the message above already says
        /// it, once.
        inner: Box<Error>,
    },
    /// A file operation without a path of its own (the context names it), said in words
    /// as [`Error::Io`] is.
    #[error("{}", in_words(.0))]
    System(#[from] std::io::Error),
    /// A language-model tensor operation failed (said without the backtrace candle adds
    /// when RUST_BACKTRACE is set: an error is one line).
    #[error("{}", tensor_message(.0))]
    Tensor(#[from] candle_core::Error),
    /// An array had another shape than the one asked for.
    #[error(transparent)]
    Shape(#[from] ndarray::ShapeError),
    /// JSON that could not be read or written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A Parquet or Arrow table that could not be read or written.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A number in a text field that is not one.
    #[error(transparent)]
    Integer(#[from] std::num::ParseIntError),
    #[error(transparent)]
    Float(#[from] std::num::ParseFloatError),
    /// A CSV or TSV file that could not be read.
    #[error(transparent)]
    Csv(#[from] csv::Error),
    /// A PNG figure that could not be encoded.
    #[error(transparent)]
    Png(#[from] png::EncodingError),
    /// The linear model could not be fitted.
    #[error(transparent)]
    Glm(#[from] crate::kernels::glm::GlmError),
    /// The group test could not be computed.
    #[error(transparent)]
    Group(#[from] crate::kernels::group::GroupError),
}

/// The path a person knows: an atomic write's temporary sibling (`.tmp-<pid>-name`, see
/// `io::atomic`) is named by its destination, since the temporary is gone by the time
/// the error is read.
pub fn shown(path: &Path) -> std::borrow::Cow<'_, Path> {
    let temp_dest = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(".tmp-"))
        .and_then(|rest| rest.split_once('-'))
        .filter(|(pid, name)| !name.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .map(|(_, name)| name.to_string());
    match temp_dest {
        Some(name) => std::borrow::Cow::Owned(path.with_file_name(name)),
        None => std::borrow::Cow::Borrowed(path),
    }
}

/// A candle error without the backtrace candle appends to it when RUST_BACKTRACE is set.
pub fn tensor_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => tensor_message(inner),
        other => other.to_string(),
    }
}

/// An I/O error as a person would say it: the OS's text ("Is a directory (os error 21)")
/// or the kind's ("entity not found") becomes a few plain words.
pub fn in_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let words = match e.kind() {
        NotFound => "no such file",
        IsADirectory => "is a directory",
        NotADirectory => "a parent of the path is not a directory",
        PermissionDenied => "permission denied",
        UnexpectedEof => "unexpected end of file (truncated?)",
        AlreadyExists => "already exists",
        StorageFull => "no space left on the device",
        ReadOnlyFilesystem => "the file system is read-only",
        InvalidData => return format!("invalid data: {}", cut(&e.to_string(), 200)),
        _ => return strip_os_code(&e.to_string()),
    };
    words.to_string()
}

/// "Text (os error 5)" → "text": the code adds nothing a person can act on.
fn strip_os_code(text: &str) -> String {
    let t = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => &text[..i],
        _ => text,
    };
    let mut chars = t.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => t.to_string(),
    }
}

/// A value to echo in an error, cut to about `max` characters with "…": a 10 MB header
/// line is not a message.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Library result type.
/// What a panic said, when its payload is text (`panic!` with a literal or a format).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied())
}

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

    /// An [`Error::Invalid`] from any message.
    pub fn msg(msg: impl Display) -> Self {
        Error::Invalid(msg.to_string())
    }
}

/// Adds what was being done to an error, as anyhow's `Context` does.
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T>;
    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.to_string(),
            inner: Box::new(e.into()),
        })
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context().to_string(),
            inner: Box::new(e.into()),
        })
    }
}

/// A missing value becomes an [`Error::Invalid`] that says what was missing.
impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(context.to_string()))
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(context().to_string()))
    }
}

/// Returns early with an [`Error::Invalid`] built by `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}

/// An [`Error::Invalid`] built by `format!`.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::error::Error::Invalid(format!($($arg)*))
    };
}

pub(crate) use {bail, err};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_said_in_words_and_name_the_destination() {
        let e = Error::io(
            "/s/.tmp-4242-beta.nii.gz",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.to_string(), "/s/beta.nii.gz: no such file");
        let e = Error::io("/d", std::io::Error::from_raw_os_error(21));
        assert_eq!(e.to_string(), "/d: is a directory");
        let e = Error::io(
            "/f",
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        );
        assert_eq!(e.to_string(), "/f: unexpected end of file (truncated?)");
        let e = Err::<(), _>(std::io::Error::from(std::io::ErrorKind::NotFound))
            .context("r.toml: cannot read the recipe")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.toml: cannot read the recipe: no such file"
        );
        // A name that only looks like a temporary is kept.
        assert_eq!(shown(Path::new(".tmp-x-a")), Path::new(".tmp-x-a"));
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(10_000_000);
        let c = cut(&long, 80);
        assert_eq!(c.chars().count(), 81);
        assert!(c.ends_with('…'));
        assert_eq!(cut("short", 80), "short");
        assert_eq!(cut("ééé", 2), "éé…");
    }
}
