//! The `cortexflow` command line: one file per command (its clap `Args`, one library call,
//! printing); the application is the `cortexflow` library.

/// `println!` for the commands' results: to stdout, or to the Python caller (see [`say_line`]).
macro_rules! say {
    ($($arg:tt)*) => {
        super::say_line(format!($($arg)*))
    };
}

mod activations;
mod basis;
mod ceiling;
mod cluster_args;
mod compare;
mod demo;
mod discover;
mod encode;
mod group;
mod ingest;
mod init;
mod intersect_masks;
mod inspect;
mod map;
mod parcellate;
mod report;
mod responses;
mod recovery;
mod retract;
mod run;
mod schema;
mod simulate;
mod status;
mod tap_args;
mod watch;

#[cfg(test)]
mod tests;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Model forward passes allocate and free multi-megabyte tensors at a high rate; glibc
// returns such blocks to the OS and pays page faults on every reuse, mimalloc keeps them
// (attention ran 2.7× faster in a measurement with it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// cortexflow maps groups of artificial neurons (ANs) inside language models onto
/// functional brain networks: a story streams through a model, each AN becomes a regressor
/// on the fMRI clock, a basis of temporal patterns is learned, voxel-wise encoding models
/// fit the patterns to fMRI, and group maps of each pattern are matched to brain networks.
#[derive(Debug, Parser)]
#[command(name = "cortexflow", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a BIDS-like dataset with planted structure and its ground truth.
    ///
    /// The story is the English Le Petit Prince (one section per run, embedded in the
    /// binary); BOLD lies on the MNI grid of the Yeo 2011 atlas; a few AN groups drive a few
    /// Yeo-7 networks. Written under OUT: sub-*/func/*_bold.nii.gz, stimuli/*.tsv,
    /// mask.nii.gz, atlas/, dataset_description.json and truth/ (planted.json, maps.nii.gz,
    /// timecourses/*.parquet, neurons.parquet, responses/*.parquet).
    Simulate(simulate::Args),
    /// Token-level activations of a language model's feed-forward taps.
    ///
    /// For inspection and parity checks: one row per token and layer (token, token_text, word, layer, tap,
    /// values). Taps of different widths go to separate files OUT_STEM.<tap>.parquet.
    Activations(activations::Args),
    /// One regressor per artificial neuron (AN) on the scan clock.
    ///
    /// Built as nilearn's compute_regressor builds it: each word's activation (mean of its tokens) is a stick
    /// at the word onset, convolved with the HRF on a 50× finer grid and sampled at k·TR.
    /// Writes OUT/neurons.parquet and OUT/responses/<stimulus stem>.parquet per run.
    Responses(responses::Args),
    /// Learn K temporal atoms from AN responses and the ANs' sparse codes.
    ///
    /// Stories are concatenated in time, each AN's series centred and ℓ2-normalised; online
    /// dictionary
    /// learning (Mairal et al. 2010), or incremental PCA. Writes OUT/atoms/<story>.parquet,
    /// OUT/codes.parquet (non-zero weights), OUT/subgroups.parquet (each AN's dominant atom),
    /// OUT/objective.tsv and OUT/state/ (atoms and statistics to continue).
    Basis(basis::Args),
    /// Voxel-wise encoding models of each subject's BOLD with the atoms as fixed regressors.
    ///
    /// OLS on atoms + confounds + per-run cosine drift and intercept (β, t, z per atom), and
    /// ridge with a per-voxel α by leave-one-run-out cross-validation (cv_r, cv_r2, alpha).
    /// The i-th BOLD run of a subject (subject from the sub-<label> in its name) uses the
    /// i-th regressors file. Writes OUT/sub-<label>/{beta,t,z,cv_r,cv_r2,alpha}.nii.gz (and
    /// beta_<estimator>.nii.gz for `--estimator ridge|marginal`) and OUT/voxel_fits.parquet.
    Encode(encode::Args),
    /// Random-effects group maps of every atom from the subjects' β maps.
    ///
    /// Per atom and voxel a one-sample t over subjects (exact sums: adding then removing a
    /// subject changes nothing), two-sided p and z, thresholded by Benjamini–Hochberg FDR
    /// over each atom's voxels (or a |z| cut, or the family-wise error of sign-flip
    /// permutations' maximum |t|) and a minimum cluster size (face-connected). Also the
    /// split-half reproducibility (Dice) of each atom's thresholded map, subjects alternately
    /// in two halves. Writes OUT/{mean_beta,t,z,p,n,thresholded_z}.nii.gz (one volume per
    /// atom; p_fwer.nii.gz too with --permutations), OUT/mask.nii.gz, OUT/atoms.tsv and
    /// OUT/group.json.
    Group(group::Args),
    /// Match each atom's group map to functional brain networks and tie AN sub-groups to them.
    ///
    /// Per atom and network: overlap rate |M∩T|/|T|, Dice, IoU of the thresholded map M with
    /// the template T, and the spatial r of the z map with T. An atom is assigned its best
    /// network when the score passes --assign-threshold; each AN takes the network of its
    /// dominant atom (largest |code|). With --surrogates, each score gets a spatial-null p
    /// (p_spatial, FDR q_spatial) from variogram-matched surrogate maps. Writes
    /// OUT/atom_fbn.parquet, OUT/subgroups.parquet and OUT/metrics.parquet (organisation
    /// metrics per model and layer; see the README).
    Map(map::Args),
    /// Compare the organisation metrics of several analyses (e.g. two models).
    ///
    /// Reads each DIR/metrics.parquet (or DIR/map/metrics.parquet) and writes
    /// OUT/compare.tsv (one row per metric, one column per model) and OUT/compare.svg (the
    /// AN share per network, one bar per model).
    Compare(compare::Args),
    /// Create an analysis store (a directory) for a recipe.
    ///
    /// The store keeps the recipe, the mask, the ANs and basis, every ingested run as
    /// statistics, and the results; `ingest` and `retract` update it incrementally.
    Init(init::Args),
    /// Add stories, BOLD runs or a whole dataset to a store and update its results.
    ///
    /// Stories come as `responses` tables (--responses, with --neurons) and learn the basis
    /// (later stories extend it); BOLD runs (named sub-<S>_task-<T>_run-<R>_bold.nii.gz) are
    /// reduced to statistics against their story task-<T>_run-<R>, then the subject, the
    /// group maps and the network mapping are refitted. A run already in is skipped.
    #[command(disable_help_flag = true)]
    Ingest(ingest::Args),
    /// Remove a run from a store; the results become those of never having ingested it.
    #[command(disable_help_flag = true)]
    Retract(retract::Args),
    /// The noise ceiling of a store: how far its encoding models could go.
    ///
    /// For stories heard by two or more subjects, the mean pairwise inter-subject
    /// correlation (ISC) of each voxel's cleaned BOLD (cleaned as for the fits: smoothing,
    /// confounds, drift; with censoring, over the scans every run kept; a subject's
    /// sessions averaged), pooled over stories; the ceiling of a held-out r is √ISC, and
    /// the subjects' mean cv_r is reported as a fraction of it. Reads every run's BOLD
    /// again. Writes STORE/ceiling/{isc,ceiling,fraction}.nii.gz, voxels.parquet and
    /// ceiling.json (with the store epoch it reflects).
    Ceiling(ceiling::Args),
    /// Show what a store holds and whether its results are up to date.
    #[command(disable_help_flag = true)]
    Status(status::Args),
    /// Keep a store up to date with a folder: BOLD runs copied in are ingested, runs whose
    /// file is deleted are retracted, each as one incremental update of the dataflow.
    #[command(disable_help_flag = true)]
    Watch(watch::Args),
    /// The main job: simulated Le Petit Prince fMRI with structure planted by a real
    /// language model's ANs, the whole analysis into a store, the report, and how well the
    /// planted networks were recovered.
    Demo(demo::Args),
    /// One self-contained HTML report of a store (figures inlined; readable offline); with
    /// several stores, their models compared.
    Report(report::Args),
    /// The whole analysis of a dataset into a new store: init, stories, every run; with
    /// several recipes, a store each from one pass over the BOLD, and their comparison.
    ///
    /// With CORTEXFLOW_ACTIVATION_CACHE=DIR set, each story's word activations are kept in
    /// DIR and reused while the model files, taps, layers, context, pooling and words are
    /// unchanged (also by `ingest --stimulus` and `demo`).
    #[command(disable_help_flag = true)]
    Run(run::Args),
    /// Report the runs, stimuli and mask found in a BIDS-like dataset, and what is missing.
    Discover(discover::Args),
    /// Print what a NIfTI image (.nii, .nii.gz) or stimulus (.TextGrid, .tsv, .csv) holds.
    Inspect(inspect::Args),
    /// A group mask from subjects' brain masks, as nilearn's intersect_masks.
    ///
    /// A voxel is kept when more than --threshold of the masks hold it (0: union, 1:
    /// intersection), then only the largest face-connected component. Give the result to
    /// `init --mask` or `ingest --mask`.
    IntersectMasks(intersect_masks::Args),
    /// Score a store against the simulation it analysed (truth/planted.json): per planted
    /// network, the atoms assigned to it, the best Dice with the planted map and the AN
    /// sub-group F1; and atoms assigned where nothing was planted.
    Recovery(recovery::Args),
    /// Reduce BOLD runs to region time series with a label image: the mean of each
    /// region's voxels per scan, as nilearn's NiftiLabelsMasker(strategy="mean").
    Parcellate(parcellate::Args),
    /// Print the schema of an output table (all tables when no name is given).
    Schema(schema::Args),
}

#[allow(dead_code)] // the wheel's extension includes this file and runs `cli` instead
fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `cortexflow … | head` would panic on the next print; the
    // default action ends the process quietly, as for any Unix filter.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match command_line(std::env::args_os()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The error is the last line: printed with stderr held, and the process ends
            // holding it, so a thread still running (a worker finishing its run when a
            // peer was lost) cannot log after it. Every destructor of the command has run.
            use std::io::Write as _;
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {e:#}");
            std::process::exit(1)
        }
    }
}

/// The command line on `args` (the program's name first), as the Python package's
/// `cortexflow` command runs it: 0 when done, 1 after printing the error, 2 for a usage
/// error (clap's).
#[allow(dead_code)] // the binary's `main` prints its error itself
pub fn cli(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    command_line(args).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        1
    })
}

/// Runs the command line on `args`: its exit status (0, or clap's for usage, help and
/// version, which clap has printed), or the command's error, not yet printed.
fn command_line(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<u8> {
    // A second call in one process (the Python package) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORTEXFLOW_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        // Colour codes only on a terminal, not in logs and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let command = match Cli::try_parse_from(args) {
        Ok(cli) => cli.command,
        Err(e) => {
            // --help and --version come here too, with exit code 0.
            let _ = e.print();
            return Ok(e.exit_code().clamp(0, 255) as u8);
        }
    };
    run(command).and_then(|()| unwritten()).map(|()| 0)
}

fn run(command: Command) -> anyhow::Result<()> {
    // Small pages while the command runs (io::pages says why, with the measurements).
    let _pages = cortexflow::io::pages::small_pages();
    match command {
        Command::Simulate(a) => simulate::run(a),
        Command::IntersectMasks(a) => intersect_masks::run(a),
        Command::Recovery(a) => recovery::run(a),
        Command::Parcellate(a) => parcellate::run(a),
        Command::Activations(a) => activations::run(a),
        Command::Responses(a) => responses::run(a),
        Command::Basis(a) => basis::run(a),
        Command::Encode(a) => encode::run(a),
        Command::Group(a) => group::run(a),
        Command::Map(a) => map::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Init(a) => init::run(a),
        Command::Ingest(a) => ingest::run(a),
        Command::Retract(a) => retract::run(a),
        Command::Status(a) => status::run(a),
        Command::Ceiling(a) => ceiling::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Report(a) => report::run(a),
        Command::Run(a) => run::run(a),
        Command::Discover(a) => discover::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Schema(a) => schema::run(a),
    }
}

/// Prints a command's result, one line each.
fn print_lines(lines: Vec<String>) {
    lines.into_iter().for_each(say_line);
}

thread_local! {
    /// The lines of a command run for the Python package, which returns them instead of
    /// printing them (a notebook does not show the process's stdout).
    static CAPTURED: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
    /// The first failed write to stdout (a full disk), reported when the command ends.
    static UNWRITTEN: std::cell::RefCell<Option<std::io::Error>> = const { std::cell::RefCell::new(None) };
}

/// One line of a command's result: printed, or kept for [`captured`].
fn say_line(line: String) {
    use std::io::Write as _;
    CAPTURED.with_borrow_mut(|kept| match kept {
        Some(lines) => lines.push(line),
        None => {
            if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
                UNWRITTEN.with_borrow_mut(|first| {
                    first.get_or_insert(e);
                });
            }
        }
    })
}

/// The first write to stdout that failed, as an error.
fn unwritten() -> anyhow::Result<()> {
    match UNWRITTEN.take() {
        Some(e) => Err(anyhow::anyhow!("writing the results to stdout: {e}")),
        None => Ok(()),
    }
}

/// Text of whole lines (each ending in a newline), as [`say_line`] says them.
fn say_text(text: &str) {
    text.lines().map(str::to_string).for_each(say_line);
}

/// Runs a parsed command on this thread and returns the lines it would have printed
/// (`--help` and `--version` return their text).
pub fn captured(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Vec<String>, CliError> {
    use clap::error::ErrorKind;
    let command = match Cli::try_parse_from(args) {
        Ok(cli) => cli.command,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return Ok(e.render().to_string().lines().map(str::to_string).collect());
        }
        // clap's first paragraph (what is wrong, with the arguments it names), one line.
        Err(e) => {
            let text = e.render().to_string();
            let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            return Err(CliError::Usage(first.join(" ").trim_start_matches("error: ").to_string()));
        }
    };
    CAPTURED.set(Some(Vec::new()));
    let done = run(command);
    let lines = CAPTURED.take().unwrap_or_default();
    match done {
        Ok(()) => Ok(lines),
        Err(e) => Err(CliError::Failed(format!("{e:#}"), lines)),
    }
}

/// Why a command run for the Python package did not finish.
#[derive(Debug)]
pub enum CliError {
    /// The arguments: clap's message, one line.
    Usage(String),
    /// The command's own error, as one line, and the lines it said before it failed (what
    /// `status` found damaged, say).
    Failed(String, Vec<String>),
}

/// A default computed from the recipe, as clap's `default_value` takes it (made once per
/// process, so leaking it costs nothing).
fn default_text(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}
