//! The `cortexflow` command line.

mod basis;
mod cluster;
mod compare;
mod demo;
mod embedded;
mod encode;
mod figures;
mod group;
mod ingest;
mod inspect;
mod map;
mod population;
mod progress;
mod recipe;
mod recovery;
mod report;
mod responses;
mod simulate;
mod slices;
mod store;
mod stories;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use cluster::Cluster;

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
    Simulate(SimulateArgs),
    /// Token-level activations of a language model's feed-forward taps.
    ///
    /// For inspection and parity checks: one row per token and layer (token, token_text, word, layer, tap,
    /// values). Taps of different widths go to separate files OUT_STEM.<tap>.parquet.
    Activations {
        #[command(flatten)]
        taps: TapArgs,
        /// A stimulus (.TextGrid, .tsv, .csv) or a plain text file (.txt, split at white space).
        #[arg(long, alias = "stimulus", value_name = "FILE")]
        text: PathBuf,
        /// TextGrid tier holding the words [default: the first interval tier].
        #[arg(long)]
        tier: Option<String>,
        /// Output Parquet file.
        #[arg(long)]
        out: PathBuf,
    },
    /// One regressor per artificial neuron (AN) on the scan clock.
    ///
    /// Built as nilearn's compute_regressor builds it: each word's activation (mean of its tokens) is a stick
    /// at the word onset, convolved with the HRF on a 50× finer grid and sampled at k·TR.
    /// Writes OUT/neurons.parquet and OUT/responses/<stimulus stem>.parquet per run.
    Responses {
        #[command(flatten)]
        taps: TapArgs,
        /// Stimulus files, one per run (repeat the option or separate with commas).
        #[arg(long, required = true, value_delimiter = ',')]
        stimulus: Vec<PathBuf>,
        /// Repetition time in seconds.
        #[arg(long)]
        tr: f64,
        /// Scans per run: one value for every run, or one per stimulus (comma-separated).
        #[arg(long, required = true, value_delimiter = ',')]
        n_scans: Vec<usize>,
        /// HRF model.
        #[arg(long, value_enum, default_value = "spm")]
        hrf: HrfArg,
        /// FIR delays in scans (with --hrf fir), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5")]
        delays: Vec<usize>,
        /// z-score each regressor within its run.
        #[arg(long)]
        zscore: bool,
        /// TextGrid tier holding the words [default: the first interval tier].
        #[arg(long)]
        tier: Option<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Learn K temporal atoms from AN responses and the ANs' sparse codes.
    ///
    /// Stories are concatenated in time, each AN's series centred and ℓ2-normalised; online
    /// dictionary
    /// learning (Mairal et al. 2010), or incremental PCA. Writes OUT/atoms/<story>.parquet,
    /// OUT/codes.parquet (non-zero weights), OUT/subgroups.parquet (each AN's dominant atom),
    /// OUT/objective.tsv and OUT/state/ (atoms and statistics to continue).
    Basis {
        /// Responses files (one per story, as written by `cortexflow responses`), repeat the
        /// option or separate with commas.
        #[arg(long, required = true, value_delimiter = ',')]
        responses: Vec<PathBuf>,
        /// Basis method.
        #[arg(long, value_enum, default_value = "odl")]
        method: MethodArg,
        /// Number of atoms K.
        #[arg(long, default_value_t = 64)]
        atoms: usize,
        /// Sparsity penalty λ of ½‖x − D·a‖² + λ‖a‖₁ (samples have unit norm).
        #[arg(long, default_value_t = 0.1)]
        lambda: f64,
        /// Lasso solver for the codes: coordinate descent or LARS (same solutions).
        #[arg(long, value_enum, default_value = "cd")]
        lasso: LassoArg,
        /// Constrain codes to be non-negative.
        #[arg(long)]
        positive: bool,
        /// Most passes over the ANs.
        #[arg(long, default_value_t = 20)]
        epochs: usize,
        /// Stop when the mean objective of a pass changes by less than this fraction.
        #[arg(long, default_value_t = 1e-4)]
        tol: f64,
        /// ANs per mini-batch.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Random seed (initial atoms, sample order): the same seed gives the same basis.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Instead of fitting, extend the atoms of the basis in --out to the stories of
        /// --responses with the codes held fixed (least squares; earlier stories untouched).
        #[arg(long)]
        extend: bool,
        /// Output directory (with --extend: the existing basis).
        #[arg(long)]
        out: PathBuf,
    },
    /// Voxel-wise encoding models of each subject's BOLD with the atoms as fixed regressors.
    ///
    /// OLS on atoms + confounds + per-run cosine drift and intercept (β, t, z per atom), and
    /// ridge with a per-voxel α by leave-one-run-out cross-validation (cv_r, cv_r2, alpha).
    /// The i-th BOLD run of a subject (subject from the sub-<label> in its name) uses the
    /// i-th regressors file. Writes OUT/sub-<label>/{beta,t,z,cv_r,cv_r2,alpha}.nii.gz and
    /// OUT/voxel_fits.parquet.
    Encode {
        /// Atoms files (from `cortexflow basis`), one per run in run order, comma-separated.
        #[arg(long, required = true, value_delimiter = ',')]
        regressors: Vec<PathBuf>,
        /// BOLD runs (4D NIfTI), all subjects, comma-separated or repeated.
        #[arg(long, required = true, value_delimiter = ',')]
        bold: Vec<PathBuf>,
        /// Analysis mask on the BOLD grid.
        #[arg(long)]
        mask: PathBuf,
        /// Confounds TSVs (numeric columns with a header), one per BOLD run in the same order.
        #[arg(long, value_delimiter = ',')]
        confounds: Vec<PathBuf>,
        /// Ridge penalties, comma-separated [default: 10 values log-spaced from 1e-2 to 1e5].
        #[arg(long, value_delimiter = ',')]
        alphas: Vec<f64>,
        /// High-pass cut-off of the cosine drift basis, in Hz (0 for an intercept only).
        #[arg(long, default_value_t = 0.01)]
        high_pass: f64,
        /// z-score each voxel's BOLD within each run.
        #[arg(long)]
        zscore: bool,
        /// OLS only: skip the cross-validated ridge (needed with a single run).
        #[arg(long)]
        no_cv: bool,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Random-effects group maps of every atom from the subjects' β maps.
    ///
    /// Per atom and voxel a one-sample t over subjects (exact sums: adding then removing a
    /// subject changes nothing), two-sided p and z, thresholded by Benjamini–Hochberg FDR
    /// over each atom's voxels (or a |z| cut) and a minimum cluster size (face-connected).
    /// Also the split-half reproducibility (Dice) of each atom's thresholded map, subjects
    /// alternately in two halves. Writes OUT/{mean_beta,t,z,p,n,thresholded_z}.nii.gz (one
    /// volume per atom), OUT/mask.nii.gz, OUT/atoms.tsv and OUT/group.json.
    Group {
        /// Output directory of `cortexflow encode` (holding sub-*/beta.nii.gz).
        #[arg(long)]
        encode: PathBuf,
        /// The analysis mask given to `encode`.
        #[arg(long)]
        mask: PathBuf,
        /// FDR level (Benjamini–Hochberg, per atom map).
        #[arg(long, default_value_t = 0.05, conflicts_with = "z_cut")]
        fdr: f64,
        /// Threshold |z| ≥ this value instead of FDR.
        #[arg(long)]
        z_cut: Option<f64>,
        /// Drop significant clusters smaller than this many voxels (0 keeps all).
        #[arg(long, default_value_t = 0)]
        min_cluster: usize,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Match each atom's group map to functional brain networks and tie AN sub-groups to them.
    ///
    /// Per atom and network: overlap rate |M∩T|/|T|, Dice, IoU of the thresholded map M with
    /// the template T, and the spatial r of the z map with T. An atom is assigned its best
    /// network when the score passes --assign-threshold; each AN takes the network of its
    /// dominant atom (largest |code|). Writes OUT/atom_fbn.parquet, OUT/subgroups.parquet
    /// and OUT/metrics.parquet (organisation metrics per model and layer; see the README).
    Map {
        /// Output directory of `cortexflow group`.
        #[arg(long)]
        group: PathBuf,
        /// Network atlas: yeo7, yeo17, seitzman2018, dosenbach2010, or a file (3-D label or
        /// 4-D probability NIfTI, names from a `label,name` CSV of the same stem; or a table
        /// of ROI centres with x, y, z and network columns).
        #[arg(long, default_value = "yeo7")]
        atlas: String,
        /// 4-D atlases: a voxel belongs to a network when its value is at least this.
        #[arg(long, default_value_t = 0.5)]
        atlas_threshold: f64,
        /// Coordinate atlases without a radius column: sphere radius in mm [default: 5].
        #[arg(long)]
        sphere_radius: Option<f64>,
        /// The measure that ranks networks and decides assignment.
        #[arg(long, value_enum, default_value = "iou")]
        score: map::Score,
        /// An atom is assigned its best network when the score is at least this.
        #[arg(long, default_value_t = 0.2)]
        assign_threshold: f64,
        /// The codes table of the basis (`cortexflow basis` OUT/codes.parquet).
        #[arg(long)]
        codes: PathBuf,
        /// The neurons table of the ANs (from `responses` or `simulate`) [default: the coded
        /// ANs only, layer from the AN id].
        #[arg(long)]
        neurons: Option<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Compare the organisation metrics of several analyses (e.g. two models).
    ///
    /// Reads each DIR/metrics.parquet (or DIR/map/metrics.parquet) and writes
    /// OUT/compare.tsv (one row per metric, one column per model) and OUT/compare.svg (the
    /// AN share per network, one bar per model).
    Compare {
        /// Output directories of `cortexflow map` (or analyses holding map/).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create an analysis store (a directory) for a recipe.
    ///
    /// The store keeps the recipe, the mask, the ANs and basis, every ingested run as
    /// statistics, and the results; `ingest` and `retract` update it incrementally.
    Init {
        /// Recipe file (dataflows/paper.toml, dataflows/demo.toml, or your own).
        #[arg(long)]
        recipe: PathBuf,
        /// Analysis mask (can also be given at the first `ingest`).
        #[arg(long)]
        mask: Option<PathBuf>,
        /// Store directory.
        store: PathBuf,
    },
    /// Add stories, BOLD runs or a whole dataset to a store and update its results.
    ///
    /// Stories come as `responses` tables (--responses, with --neurons) and learn the basis
    /// (later stories extend it); BOLD runs (named sub-<S>_task-<T>_run-<R>_bold.nii.gz) are
    /// reduced to statistics against their story task-<T>_run-<R>, then the subject, the
    /// group maps and the network mapping are refitted. A run already in is skipped.
    Ingest {
        /// Store directory.
        store: PathBuf,
        /// Responses tables (one story each), comma-separated.
        #[arg(long, value_delimiter = ',')]
        responses: Vec<PathBuf>,
        /// The neurons table of those responses.
        #[arg(long)]
        neurons: Option<PathBuf>,
        /// Stimuli (timed words: TextGrid, TSV or CSV), comma-separated: streamed through
        /// the recipe's model into responses, one story each, named after the file.
        #[arg(long, value_delimiter = ',')]
        stimulus: Vec<PathBuf>,
        /// With --stimulus: repetition time in seconds.
        #[arg(long, requires = "stimulus")]
        tr: Option<f64>,
        /// With --stimulus: scans per run, one value or one per stimulus.
        #[arg(long, value_delimiter = ',', requires = "stimulus")]
        n_scans: Vec<usize>,
        /// BOLD runs, comma-separated.
        #[arg(long, value_delimiter = ',')]
        bold: Vec<PathBuf>,
        /// Every run of a BIDS-like dataset (and its mask.nii.gz, if the store has none).
        #[arg(long)]
        bids: Option<PathBuf>,
        /// Analysis mask, if the store has none yet.
        #[arg(long)]
        mask: Option<PathBuf>,
    },
    /// Remove a run from a store; the results become those of never having ingested it.
    Retract {
        /// Store directory.
        store: PathBuf,
        /// The run, as sub-<S>/task-<T>/run-<R> (`status` lists them).
        #[arg(long)]
        run: String,
    },
    /// Show what a store holds and whether its results are up to date.
    Status {
        /// Store directory.
        store: PathBuf,
        /// Bring stale results up to date (after an interrupted command).
        #[arg(long)]
        refresh: bool,
    },
    /// Keep a store up to date with a folder: BOLD runs copied in are ingested, runs whose
    /// file is deleted are retracted, each as one incremental update of the dataflow.
    Watch {
        /// Store directory.
        store: PathBuf,
        /// Folder to watch (any depth; BIDS names sub-<S>_task-<T>[_run-<R>]_bold.nii[.gz]).
        dir: PathBuf,
        /// Polling interval in milliseconds (a file is taken once its size holds for one
        /// interval).
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Stop after this many updates [default: run until stopped].
        #[arg(long)]
        updates: Option<usize>,
    },
    /// The main job: simulated Le Petit Prince fMRI with structure planted by a real
    /// language model's ANs, the whole analysis into a store, the report, and how well the
    /// planted networks were recovered.
    Demo {
        /// Output directory (data/, store/, recipe.toml, report.html).
        #[arg(long, default_value = "cortexflow-demo")]
        out: PathBuf,
        /// The language model (its checkpoint from scripts/fetch-models).
        #[arg(long, value_enum, default_value = "minilm")]
        model: DemoModelArg,
        /// Number of subjects.
        #[arg(long, default_value_t = 6)]
        subjects: usize,
        /// Random seed of the simulation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// One self-contained HTML report of a store (figures inlined; readable offline); with
    /// several stores, their models compared.
    Report {
        /// Store directories (the first is reported in full).
        #[arg(required = true)]
        stores: Vec<PathBuf>,
        /// Output file [default: STORE/report.html].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write every figure to this folder (figNN.svg, figNN.png).
        #[arg(long)]
        figures: Option<PathBuf>,
    },
    /// The whole analysis of a dataset into a new store: init, stories, every run.
    Run {
        /// Recipe file.
        recipe: PathBuf,
        /// Dataset root (sub-*/func/*_bold.nii.gz and mask.nii.gz, as `simulate` writes).
        #[arg(long)]
        data: PathBuf,
        /// Folder of `responses` tables, one per story, with neurons.parquet beside the
        /// folder [default: DATA/truth/responses, the simulator's ANs].
        #[arg(long)]
        responses: Option<PathBuf>,
        /// Store directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Report the runs, stimuli and mask found in a BIDS-like dataset, and what is missing.
    Discover {
        /// Dataset root (holding sub-*/ folders).
        dir: PathBuf,
    },
    /// Print what a NIfTI image (.nii, .nii.gz) or stimulus (.TextGrid, .tsv, .csv) holds.
    Inspect {
        /// Files to inspect.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// TextGrid tier holding the words [default: the first interval tier].
        #[arg(long)]
        tier: Option<String>,
    },
    /// Print the schema of an output table (all tables when no name is given).
    Schema {
        /// Table name: activations, neurons, responses, atoms, codes, voxel_fits, atom_fbn,
        /// subgroups, metrics, planted_timecourses.
        table: Option<String>,
    },
}

/// Options shared by the commands that run a language model.
#[derive(Debug, clap::Args)]
struct TapArgs {
    /// Model: a Hugging Face folder (config.json with model_type bert or llama,
    /// tokenizer.json, *.safetensors) or a llama GGUF file. scripts/fetch-models puts
    /// MiniLM-L6 and SmolLM2-135M in models/.
    #[arg(long)]
    model: PathBuf,
    /// Taps, comma-separated: ffn.out (output of the FFN's second linear layer) and/or
    /// ffn.inner (its input, after GELU or SiLU(gate)⊙up).
    #[arg(long, value_delimiter = ',', default_value = "ffn.out,ffn.inner")]
    taps: Vec<String>,
    /// Layers (0-based): `all`, or indices and ranges such as 0,3,6-11.
    #[arg(long, default_value = "all")]
    layers: String,
    /// Story tokens per context window (special tokens excluded). Windows overlap by
    /// half; an encoder keeps each token from the window where it is most central, a
    /// decoder from the one with the most left context.
    #[arg(long, default_value_t = 256)]
    context: usize,
    /// Context windows per forward pass: larger batches make larger matrix products
    /// (faster) and hold batch × context × taps activations in memory.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// How a word's activation is made from its tokens'.
    #[arg(long, value_enum, default_value = "mean")]
    pooling: PoolingArg,
}

impl TapArgs {
    fn options(&self) -> Result<responses::TapOptions> {
        Ok(responses::TapOptions {
            model: self.model.clone(),
            taps: self
                .taps
                .iter()
                .map(|t| t.parse())
                .collect::<Result<_, _>>()?,
            layers: responses::parse_layers(&self.layers)?,
            context: self.context,
            batch: self.batch,
            pooling: match self.pooling {
                PoolingArg::Mean => cortexflow::model::extract::Pooling::Mean,
                PoolingArg::Last => cortexflow::model::extract::Pooling::Last,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DemoModelArg {
    /// all-MiniLM-L6-v2 (BERT family, 6 layers × 384).
    Minilm,
    /// SmolLM2-135M-Instruct, GGUF Q4_1 (Llama family, 30 layers × 576).
    Smollm2,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LassoArg {
    /// Coordinate descent on the Gram matrix.
    Cd,
    /// LARS-lasso homotopy.
    Lars,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MethodArg {
    /// Online dictionary learning (sparse codes).
    Odl,
    /// Incremental PCA (dense scores; sub-group = dominant component).
    Pca,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PoolingArg {
    /// Mean of the word's tokens.
    Mean,
    /// The word's last token.
    Last,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HrfArg {
    /// SPM canonical HRF.
    Spm,
    /// Glover HRF.
    Glover,
    /// Finite impulse response at --delays (one regressor per delay).
    Fir,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GridRes {
    /// 4 mm isotropic, 45×54×45 (8,268 cortical voxels).
    #[value(name = "4mm")]
    Mm4,
    /// 2 mm isotropic, 91×109×91 (65,984 cortical voxels; ~1 GB per run in memory).
    #[value(name = "2mm")]
    Mm2,
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Output directory (created; existing files are replaced atomically).
    #[arg(long)]
    out: PathBuf,
    /// Number of subjects.
    #[arg(long, default_value_t = 3)]
    subjects: usize,
    /// Number of runs per subject: LPP sections 1..R (at most 9).
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Random seed: the same seed gives the same dataset, byte for byte.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Signal-to-noise ratio: variance of the planted signal over the variance of the AR(1)
    /// noise, at a voxel of unit gain and weight.
    #[arg(long, default_value_t = 0.5)]
    snr: f64,
    /// Voxel grid of the Yeo 2011 atlas (MNI152NLin6).
    #[arg(long, value_enum, default_value = "4mm")]
    grid: GridRes,
    /// Repetition time in seconds.
    #[arg(long, default_value_t = 2.0)]
    tr: f64,
    /// Scans per run; words after the last scan are cut [default: the whole section,
    /// ceil(duration / TR)].
    #[arg(long)]
    scans: Option<usize>,
    /// Yeo-7 labels of the planted networks, comma-separated (1 Visual, 2 Somatomotor,
    /// 3 Dorsal attention, 4 Ventral attention, 5 Limbic, 6 Frontoparietal, 7 Default).
    #[arg(long, value_delimiter = ',', default_value = "7,6,2")]
    networks: Vec<u16>,
    /// Number of artificial neurons in the synthetic population (without --model).
    #[arg(long, default_value_t = 384)]
    neurons: usize,
    /// ANs per planted group.
    #[arg(long, default_value_t = 24)]
    group_size: usize,
    /// Unplanted latent factors shared by the remaining synthetic ANs (they drive no voxel).
    #[arg(long, default_value_t = 4)]
    factors: usize,
    /// AR(1) coefficient of the voxel noise.
    #[arg(long, default_value_t = 0.3)]
    ar1: f64,
    /// Per-subject spatial jitter of the planted networks: a random integer voxel shift of
    /// at most this Manhattan length (1 = none or one voxel along one axis; 0 = none).
    #[arg(long, default_value_t = 1)]
    jitter: i32,
    /// A language model (Hugging Face folder or llama GGUF) whose ANs drive the planted
    /// networks: groups of ANs with correlated responses to the story. Without it the ANs are
    /// a synthetic population (--neurons, --factors).
    #[arg(long)]
    model: Option<PathBuf>,
    /// With --model: taps whose units are the ANs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ffn.out")]
    model_taps: Vec<String>,
    /// With --model: layers (0-based), `all` or indices and ranges such as 0,3,6-11.
    #[arg(long, default_value = "all")]
    model_layers: String,
    /// Plant nothing: BOLD is noise and drift only (for false-positive checks). The truth
    /// files still name the groups that would have been planted.
    #[arg(long)]
    null: bool,
}

impl SimulateArgs {
    fn options(&self) -> Result<simulate::SimulateOptions> {
        let a = self;
        Ok(simulate::SimulateOptions {
            out: a.out.clone(),
            subjects: a.subjects,
            runs: a.runs,
            seed: a.seed,
            snr: a.snr,
            grid_mm: match a.grid {
                GridRes::Mm4 => 4,
                GridRes::Mm2 => 2,
            },
            tr: a.tr,
            scans: a.scans,
            networks: a.networks.clone(),
            neurons: a.neurons,
            group_size: a.group_size,
            factors: a.factors,
            ar1: a.ar1,
            jitter: a.jitter,
            null: a.null,
            model: match &a.model {
                Some(path) => Some(responses::TapOptions {
                    model: path.clone(),
                    taps: a
                        .model_taps
                        .iter()
                        .map(|t| t.parse())
                        .collect::<Result<_, _>>()?,
                    layers: responses::parse_layers(&a.model_layers)?,
                    context: 256,
                    batch: 4,
                    pooling: cortexflow::model::extract::Pooling::Mean,
                }),
                None => None,
            },
        })
    }
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `cortexflow … | head` would panic on the next print; the
    // default action ends the process quietly, as for any Unix filter.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORTEXFLOW_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = Cluster::extract(&mut args).map(|(c, given)| (Cli::parse_from(args), c, given));
    match parsed.and_then(|(cli, c, given)| run(cli, c, given)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_lines(lines: Vec<String>) {
    lines.iter().for_each(|l| println!("{l}"));
}

fn run(cli: Cli, cluster: Cluster, cluster_given: bool) -> Result<()> {
    let computes = matches!(
        cli.command,
        Command::Ingest { .. }
            | Command::Retract { .. }
            | Command::Status { .. }
            | Command::Run { .. }
            | Command::Watch { .. }
    );
    if cluster_given && !computes {
        anyhow::bail!(
            "the cluster options ({}) apply to run, ingest, retract, status and watch",
            cluster::FLAGS
        );
    }
    match cli.command {
        Command::Simulate(a) => {
            let opt = a.options()?;
            let summary = simulate::run(&opt)?;
            println!(
                "simulated {} subjects × {} runs ({} scans each, {} masked voxels) in {}",
                a.subjects,
                a.runs,
                summary
                    .scans
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
                summary.n_voxels,
                a.out.display()
            );
            for f in &summary.files {
                println!("  {}", f.strip_prefix(&a.out).unwrap_or(f).display());
            }
        }
        Command::Activations {
            taps,
            text,
            tier,
            out,
        } => {
            for f in responses::activations(&taps.options()?, &text, tier.as_deref(), &out)? {
                println!("wrote {}", f.display());
            }
        }
        Command::Responses {
            taps,
            stimulus,
            tr,
            n_scans,
            hrf,
            delays,
            zscore,
            tier,
            out,
        } => {
            if n_scans.len() != 1 && n_scans.len() != stimulus.len() {
                anyhow::bail!(
                    "--n-scans gives {} values for {} stimuli: give one, or one per stimulus",
                    n_scans.len(),
                    stimulus.len()
                );
            }
            let runs: Vec<responses::RunSpec> = stimulus
                .iter()
                .enumerate()
                .map(|(i, s)| responses::RunSpec {
                    stimulus: s.clone(),
                    n_scans: n_scans[if n_scans.len() == 1 { 0 } else { i }],
                })
                .collect();
            let hrf = match hrf {
                HrfArg::Spm => cortexflow::kernels::hrf::HrfModel::Spm,
                HrfArg::Glover => cortexflow::kernels::hrf::HrfModel::Glover,
                HrfArg::Fir => cortexflow::kernels::hrf::HrfModel::Fir { delays },
            };
            let ro = responses::ResponseOptions {
                tr,
                hrf,
                zscore,
                tier,
            };
            for f in responses::responses(&taps.options()?, &runs, &ro, &out)? {
                println!("wrote {}", f.display());
            }
        }
        Command::Basis {
            responses,
            method,
            atoms,
            lambda,
            lasso,
            positive,
            epochs,
            tol,
            batch,
            seed,
            extend,
            out,
        } => {
            if extend {
                let summary = basis::extend(&out, &responses)?;
                summary.lines.iter().for_each(|l| println!("{l}"));
                summary
                    .files
                    .iter()
                    .for_each(|f| println!("wrote {}", f.display()));
                return Ok(());
            }
            let opt = basis::BasisOptions {
                method: match method {
                    MethodArg::Odl => basis::Method::Odl,
                    MethodArg::Pca => basis::Method::Pca,
                },
                odl: cortexflow::kernels::dictionary::OdlOptions {
                    atoms,
                    lambda,
                    positive_codes: positive,
                    batch,
                    max_epochs: epochs,
                    tol,
                    seed,
                    shards: 1,
                    lasso: match lasso {
                        LassoArg::Cd => {
                            cortexflow::kernels::lasso::LassoAlgorithm::CoordinateDescent
                        }
                        LassoArg::Lars => cortexflow::kernels::lasso::LassoAlgorithm::Lars,
                    },
                },
            };
            let summary = basis::run(&responses, &opt, &out)?;
            for l in &summary.lines {
                println!("{l}");
            }
            for f in &summary.files {
                println!("wrote {}", f.display());
            }
        }
        Command::Encode {
            regressors,
            bold,
            mask,
            confounds,
            alphas,
            high_pass,
            zscore,
            no_cv,
            out,
        } => {
            let alphas = if alphas.is_empty() {
                cortexflow::kernels::cv::alpha_grid(-2.0, 5.0, 10)
            } else {
                alphas
            };
            let opt = encode::EncodeOptions {
                alphas,
                high_pass: (high_pass > 0.0).then_some(high_pass),
                zscore,
                cv: !no_cv,
            };
            let (files, lines) = encode::run(&regressors, &bold, &mask, &confounds, &opt, &out)?;
            lines.iter().for_each(|l| println!("{l}"));
            files.iter().for_each(|f| println!("wrote {}", f.display()));
        }
        Command::Group {
            encode,
            mask,
            fdr,
            z_cut,
            min_cluster,
            out,
        } => {
            let threshold = match z_cut {
                Some(z) => cortexflow::kernels::group::Threshold::ZCut(z),
                None => cortexflow::kernels::group::Threshold::Fdr(fdr),
            };
            let opt = group::GroupOptions {
                threshold,
                min_cluster,
            };
            let (files, lines) = group::run(&encode, &mask, &opt, &out)?;
            lines.iter().for_each(|l| println!("{l}"));
            files.iter().for_each(|f| println!("wrote {}", f.display()));
        }
        Command::Map {
            group,
            atlas,
            atlas_threshold,
            sphere_radius,
            score,
            assign_threshold,
            codes,
            neurons,
            out,
        } => {
            let opt = map::MapOptions {
                atlas,
                atlas_threshold,
                sphere_radius_mm: sphere_radius,
                score,
                assign_threshold,
            };
            let s = map::run(&group, &codes, neurons.as_deref(), &opt, &out)?;
            s.lines.iter().for_each(|l| println!("{l}"));
            s.files
                .iter()
                .for_each(|f| println!("wrote {}", f.display()));
        }
        Command::Compare { dirs, out } => {
            let (files, table) = compare::run(&dirs, &out)?;
            print!("{table}");
            files.iter().for_each(|f| println!("wrote {}", f.display()));
        }
        Command::Init {
            recipe,
            mask,
            store,
        } => {
            let s = store::Store::init(&store, &recipe::Recipe::load(&recipe)?, mask.as_deref())?;
            print!("{}", s.status());
        }
        Command::Ingest {
            store,
            responses,
            neurons,
            stimulus,
            tr,
            n_scans,
            bold,
            bids,
            mask,
        } => {
            if !stimulus.is_empty() && (tr.is_none() || n_scans.is_empty()) {
                anyhow::bail!("--stimulus needs --tr and --n-scans (the fMRI clock of those runs)");
            }
            let mut bold = bold;
            let mut mask = mask;
            if let Some(root) = &bids {
                let ds = cortexflow::io::bids::discover(root)?;
                bold.extend(ds.runs.iter().map(|r| r.bold.clone()));
                if mask.is_none() {
                    mask = ds.mask.clone();
                }
            }
            if responses.is_empty() && bold.is_empty() && stimulus.is_empty() {
                anyhow::bail!("nothing to ingest: give --stimulus, --responses, --bold or --bids");
            }
            let dir = store.clone();
            let prepare: ingest::Prepare = Box::new(move || {
                let mut s = store::Store::open(&dir)?;
                if let Some(m) = &mask {
                    s.set_mask(m)?;
                }
                if responses.is_empty() {
                    return Ok(Vec::new());
                }
                s.ingest_responses(&responses, neurons.as_deref())
            });
            let stimuli = (!stimulus.is_empty()).then(|| stories::StimulusSpec {
                files: stimulus,
                tr: tr.expect("checked"),
                scans: n_scans,
            });
            print_lines(ingest::run_update(
                &cluster, &store, stimuli, bold, prepare,
            )?);
        }
        Command::Retract { store, run } => {
            let dir = store.clone();
            let prepare: ingest::Prepare =
                Box::new(move || store::Store::open(&dir)?.retract_entry(&run));
            print_lines(ingest::run_update(
                &cluster,
                &store,
                None,
                Vec::new(),
                prepare,
            )?);
        }
        Command::Status { store, refresh } => {
            if refresh {
                let prepare: ingest::Prepare = Box::new(|| Ok(Vec::new()));
                print_lines(ingest::run_update(
                    &cluster,
                    &store,
                    None,
                    Vec::new(),
                    prepare,
                )?);
            }
            if cluster.is_writer() {
                print!("{}", store::Store::open_reader(&store)?.status());
            }
        }
        Command::Demo {
            out,
            model,
            subjects,
            seed,
        } => {
            // The simulator's own defaults, with the demo's choices: no per-subject jitter
            // (the README explains why 6 subjects need it) and the model's ANs.
            let parsed = Cli::try_parse_from([
                "cortexflow".to_string(),
                "simulate".into(),
                "--out".into(),
                out.join("data").display().to_string(),
                "--subjects".into(),
                subjects.to_string(),
                "--seed".into(),
                seed.to_string(),
                "--jitter".into(),
                "0".into(),
                "--model".into(),
                "models".into(),
            ])?;
            let Command::Simulate(args) = parsed.command else {
                unreachable!("parsed as simulate")
            };
            let model = match model {
                DemoModelArg::Minilm => demo::DemoModel::Minilm,
                DemoModelArg::Smollm2 => demo::DemoModel::Smollm2,
            };
            print_lines(demo::run(&out, model, args.options()?)?);
        }
        Command::Report {
            stores,
            out,
            figures,
        } => {
            let out = out.unwrap_or_else(|| stores[0].join("report.html"));
            let r = report::run(&stores, &out, figures.as_deref())?;
            r.notes.iter().for_each(|n| println!("note: {n}"));
            println!("wrote {} ({} figures)", r.path.display(), r.figures);
        }
        Command::Watch {
            store,
            dir,
            poll_ms,
            updates,
        } => {
            let opt = watch::WatchOptions {
                poll: std::time::Duration::from_millis(poll_ms.max(10)),
                updates,
            };
            watch::watch(&store, &dir, &opt, &cluster)?;
        }
        Command::Run {
            recipe,
            data,
            responses,
            out,
        } => {
            let r = recipe::Recipe::load(&recipe)?;
            let responses = responses.unwrap_or_else(|| data.join("truth/responses"));
            print_lines(store::run_all(&r, &data, &responses, &out, &cluster)?);
        }
        Command::Discover { dir } => print!("{}", inspect::discover(&dir)?),
        Command::Inspect { files, tier } => {
            for f in files {
                println!("{}", inspect::inspect(&f, tier.as_deref())?);
            }
        }
        Command::Schema { table } => {
            let names: Vec<&str> = match &table {
                Some(t) => vec![t.as_str()],
                None => cortexflow::io::schema::TABLES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect(),
            };
            for n in names {
                let t = cortexflow::io::schema::table(n)?;
                println!("{}: {}", t.name, t.doc);
                for c in &t.columns {
                    let size = c
                        .size
                        .as_ref()
                        .map(|s| format!("[{s}]"))
                        .unwrap_or_default();
                    let null = if c.nullable { ", nullable" } else { "" };
                    println!("  {:<14} {}{size}{null}  {}", c.name, c.ty, c.doc);
                }
            }
        }
    }
    Ok(())
}
