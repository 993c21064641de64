//! `cortexflow simulate`: a BIDS-like dataset with planted structure and its truth.

use std::path::PathBuf;

use clap::ValueEnum;
use cortexflow::stages::simulate::{self, Layout, SimulateOptions};
use cortexflow::store::recipe::ModelSection;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GridRes {
    /// 4 mm isotropic, 45×54×45 (8,268 cortical voxels).
    #[value(name = "4mm")]
    Mm4,
    /// 2 mm isotropic, 91×109×91 (65,984 cortical voxels, 235,473 in the whole brain).
    #[value(name = "2mm")]
    Mm2,
}

fn defaults() -> SimulateOptions {
    SimulateOptions::default()
}

fn networks() -> String {
    let n: Vec<String> = defaults().networks.iter().map(|n| n.to_string()).collect();
    n.join(",")
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (created; existing files are replaced atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of subjects.
    #[arg(long, default_value_t = defaults().subjects)]
    pub subjects: usize,
    /// Number of runs per subject: LPP sections 1..R (at most 9).
    #[arg(long, default_value_t = defaults().runs)]
    pub runs: usize,
    /// Random seed: the same seed gives the same dataset, byte for byte.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Signal-to-noise ratio: variance of the planted signal over the variance of the AR(1)
    /// noise, at a voxel of unit gain and weight.
    #[arg(long, default_value_t = defaults().snr)]
    pub snr: f64,
    /// Voxel grid of the Yeo 2011 atlas (MNI152NLin6).
    #[arg(long, value_enum, default_value = "4mm")]
    pub grid: GridRes,
    /// Voxels that carry BOLD and make the mask: `cortex` (the atlas's) or `brain` (the
    /// MNI152 template above 0.2 of its maximum, nilearn's brain-mask rule; networks are
    /// still planted in the cortex). A run is held as masked voxels × scans and written
    /// one volume at a time.
    #[arg(long, value_enum, default_value = "cortex")]
    pub extent: ExtentArg,
    /// Repetition time in seconds.
    #[arg(long, default_value_t = defaults().tr)]
    pub tr: f64,
    /// Scans per run; words after the last scan are cut [default: the whole section,
    /// ceil(duration / TR)].
    #[arg(long)]
    pub scans: Option<usize>,
    /// Yeo-7 labels of the planted networks, comma-separated (1 Visual, 2 Somatomotor,
    /// 3 Dorsal attention, 4 Ventral attention, 5 Limbic, 6 Frontoparietal, 7 Default).
    #[arg(long, value_delimiter = ',', default_value = super::default_text(networks()))]
    pub networks: Vec<u16>,
    /// Number of artificial neurons in the synthetic population (without --model).
    #[arg(long, default_value_t = defaults().neurons)]
    pub neurons: usize,
    /// ANs per planted group.
    #[arg(long, default_value_t = defaults().group_size)]
    pub group_size: usize,
    /// Unplanted latent factors shared by the remaining synthetic ANs (they drive no voxel).
    #[arg(long, default_value_t = defaults().factors)]
    pub factors: usize,
    /// AR(1) coefficient of the voxel noise.
    #[arg(long, default_value_t = defaults().ar1)]
    pub ar1: f64,
    /// Per-subject spatial jitter of the planted networks: a random integer voxel shift of
    /// at most this Manhattan length (1 = none or one voxel along one axis; 0 = none).
    #[arg(long, default_value_t = defaults().jitter)]
    pub jitter: i32,
    /// A language model (Hugging Face folder or llama GGUF) whose ANs drive the planted
    /// networks: groups of ANs with correlated responses to the story. Without it the ANs are
    /// a synthetic population (--neurons, --factors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model: taps whose units are the ANs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = super::default_text(ModelSection::default().taps.join(",")))]
    pub model_taps: Vec<String>,
    /// With --model: layers (0-based), `all` or indices and ranges such as 0,3,6-11.
    #[arg(long, default_value_t = ModelSection::default().layers)]
    pub model_layers: String,
    /// Plant nothing: BOLD is noise and drift only (for false-positive checks). The truth
    /// files still name the groups that would have been planted.
    #[arg(long)]
    pub null: bool,
    /// `bids`: raw BIDS-like runs and a mask at the top. `fmriprep`: fMRIPrep derivatives
    /// (preprocessed BOLD, a brain mask and a confounds table + JSON per run) whose head
    /// motion, spikes, physiological noise and non-steady-state scans act on the BOLD.
    #[arg(long, value_enum, default_value = "bids")]
    pub layout: LayoutArg,
    /// Seconds from a run's first scan to the story's first word [default: 0 with `bids`,
    /// 6 with `fmriprep`]. When positive each run gets a BIDS events.tsv with the words in
    /// run time; stimuli/ keeps the transcript in its own time.
    #[arg(long)]
    pub stimulus_onset: Option<f64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExtentArg {
    Cortex,
    Brain,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LayoutArg {
    Bids,
    Fmriprep,
}

impl Args {
    pub fn options(&self) -> anyhow::Result<SimulateOptions> {
        let model = match &self.model {
            Some(path) => {
                let section = ModelSection {
                    taps: self.model_taps.clone(),
                    layers: self.model_layers.clone(),
                    ..ModelSection::default()
                };
                Some(section.tap_options(path.clone())?)
            }
            None => None,
        };
        Ok(SimulateOptions {
            out: self.out.clone(),
            subjects: self.subjects,
            runs: self.runs,
            seed: self.seed,
            snr: self.snr,
            grid_mm: match self.grid {
                GridRes::Mm4 => 4,
                GridRes::Mm2 => 2,
            },
            extent: match self.extent {
                ExtentArg::Cortex => simulate::Extent::Cortex,
                ExtentArg::Brain => simulate::Extent::Brain,
            },
            tr: self.tr,
            scans: self.scans,
            networks: self.networks.clone(),
            neurons: self.neurons,
            group_size: self.group_size,
            factors: self.factors,
            ar1: self.ar1,
            jitter: self.jitter,
            null: self.null,
            model,
            layout: match self.layout {
                LayoutArg::Bids => Layout::Bids,
                LayoutArg::Fmriprep => Layout::Fmriprep,
            },
            stimulus_onset: self.stimulus_onset,
        })
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let summary = simulate::run(&a.options()?)?;
    let scans: Vec<String> = summary.scans.iter().map(|s| s.to_string()).collect();
    say!(
        "simulated {} subjects × {} runs ({} scans each, {} masked voxels) in {}",
        a.subjects,
        a.runs,
        scans.join("/"),
        summary.n_voxels,
        a.out.display()
    );
    for f in &summary.files {
        say!("  {}", f.strip_prefix(&a.out).unwrap_or(f).display());
    }
    Ok(())
}
