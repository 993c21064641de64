//! `cortexflow responses`: one regressor per artificial neuron on the scan clock.

use std::path::PathBuf;

use cortexflow::stages::responses::{self, ResponseOptions, RunSpec};
use cortexflow::store::recipe::{HrfSetting, ModelSection};

use super::tap_args::TapArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub taps: TapArgs,
    /// Stimulus files, one per run (repeat the option or separate with commas).
    #[arg(long, required = true, value_delimiter = ',')]
    pub stimulus: Vec<PathBuf>,
    /// Repetition time in seconds.
    #[arg(long)]
    pub tr: f64,
    /// Scans per run: one value for every run, or one per stimulus (comma-separated).
    #[arg(long, required = true, value_delimiter = ',')]
    pub n_scans: Vec<usize>,
    /// HRF model.
    #[arg(long, value_enum, default_value_t = ModelSection::default().hrf)]
    pub hrf: HrfSetting,
    /// FIR delays in scans (with --hrf fir), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = super::default_text(delays()))]
    pub delays: Vec<usize>,
    /// z-score each regressor within its run.
    #[arg(long, default_value_t = ModelSection::default().zscore_responses)]
    pub zscore: bool,
    /// TextGrid tier holding the words [default: the first interval tier].
    #[arg(long)]
    pub tier: Option<String>,
    /// Seconds into each run at which the stimulus's time 0 falls (every word moves by
    /// it); 0 for BIDS events, whose onsets count from the run's start.
    #[arg(long, default_value_t = ModelSection::default().stimulus_onset)]
    pub stimulus_onset: f64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

fn delays() -> String {
    let d: Vec<String> = ModelSection::default()
        .fir_delays
        .iter()
        .map(|d| d.to_string())
        .collect();
    d.join(",")
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let runs = RunSpec::pair(&a.stimulus, &a.n_scans)?;
    let ro = ResponseOptions {
        tr: a.tr,
        hrf: a.hrf.model(&a.delays),
        zscore: a.zscore,
        tier: a.tier,
        onset: a.stimulus_onset,
    };
    let section = ModelSection { stimulus_onset: a.stimulus_onset, ..ModelSection::default() };
    section.check()?;
    for f in responses::responses(&a.taps.options()?, &runs, &ro, &a.out)? {
        say!("wrote {}", f.display());
    }
    Ok(())
}
