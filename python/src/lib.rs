//! `cortexflow._native`: the command line and the store's layout for the Python package.
//!
//! The package's `cortexflow` command and its API run the same code as the binary: the
//! command-line files (`dataflows/`) are compiled into this extension, so a Python call
//! parses its options with the same definitions (defaults, checks, messages) and returns
//! the lines the command prints. The GIL is released while Rust computes.

use std::ffi::OsString;
use std::path::Path;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use cortexflow::store::Store;

#[path = "../../dataflows/main.rs"]
mod cli;

// Named as the package exports them (cortexflow.CortexflowError in tracebacks).
create_exception!(
    cortexflow,
    CortexflowError,
    PyException,
    "A cortexflow command failed; the message is the command line's one-line error."
);

create_exception!(
    cortexflow,
    UsageError,
    PyValueError,
    "Options a command does not take, or values it refuses (clap's message, one line)."
);

/// Runs the command line on ``argv`` (the program's name first) and returns its exit
/// status: 0 done, 1 failed (the error printed on stderr), 2 a usage error.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| {
        let _one = ONE_COMMAND.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cli::cli(argv.into_iter().map(OsString::from))
    })
}

/// Runs one command (``argv`` without the program's name) and returns the lines it would
/// print. Raises CortexflowError with the command's message (and ``.lines``, what it said
/// before failing), UsageError for bad options. Commands of one process run one at a time.
#[pyfunction]
fn command(py: Python<'_>, argv: Vec<String>) -> PyResult<Vec<String>> {
    let args = std::iter::once(OsString::from("cortexflow")).chain(argv.into_iter().map(OsString::from));
    let args: Vec<OsString> = args.collect();
    // One command at a time in a process: the store's lock is held per process (a
    // command's own workers re-enter it), so threads must not write side by side.
    let done = py.detach(|| {
        let _one = ONE_COMMAND.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cli::captured(args)
    });
    done.map_err(|e| match e {
        cli::CliError::Usage(text) => UsageError::new_err(text),
        cli::CliError::Failed(text, lines) => {
            let err = CortexflowError::new_err(text);
            // What the command said before it failed (`status`: each damaged file).
            if let Err(e) = err.value(py).setattr("lines", lines) {
                return e;
            }
            err
        }
    })
}

static ONE_COMMAND: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The files of a store that the readers open, after its manifest is read and checked:
/// ``{"neurons", "codes", "subgroups", "an_fbn", "atom_fbn", "metrics", "mask", "group":
/// dir, "atoms": {story: path}, "subjects": {subject: dir}}``.
#[pyfunction]
fn store_files<'py>(py: Python<'py>, store: &str) -> PyResult<Bound<'py, PyDict>> {
    let opened = py.detach(|| Store::open_reader(Path::new(store))).map_err(failed)?;
    let paths = opened.paths();
    let text = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    let files = PyDict::new(py);
    files.set_item("neurons", text(paths.neurons()))?;
    files.set_item("codes", text(paths.codes()))?;
    for table in ["subgroups", "an_fbn", "atom_fbn", "metrics"] {
        files.set_item(table, text(paths.map().join(format!("{table}.parquet"))))?;
    }
    files.set_item("mask", text(paths.mask()))?;
    files.set_item("group", text(paths.group()))?;
    let atoms = PyDict::new(py);
    for story in opened.manifest.stories.keys() {
        atoms.set_item(story, text(paths.atoms(story)))?;
    }
    files.set_item("atoms", atoms)?;
    let subjects = PyDict::new(py);
    for subject in opened.subjects() {
        subjects.set_item(&subject, text(paths.subject(&subject)))?;
    }
    files.set_item("subjects", subjects)?;
    Ok(files)
}

/// Writes the store's voxel_fits table (as ``encode`` writes it) to ``out`` from its
/// subjects' maps and returns the number of rows.
#[pyfunction]
fn store_voxel_fits(py: Python<'_>, store: &str, out: &str) -> PyResult<usize> {
    py.detach(|| cortexflow::engine::encode::store_voxel_fits(Path::new(store), Path::new(out))).map_err(failed)
}

fn failed(e: impl std::fmt::Display) -> PyErr {
    CortexflowError::new_err(e.to_string())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CortexflowError", m.py().get_type::<CortexflowError>())?;
    m.add("UsageError", m.py().get_type::<UsageError>())?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(command, m)?)?;
    m.add_function(wrap_pyfunction!(store_files, m)?)?;
    m.add_function(wrap_pyfunction!(store_voxel_fits, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
