//! `cortexflow simulate`: a BIDS-like dataset with planted structure and its ground truth.
//!
//! The story is the real Le Petit Prince text (one section per run). The artificial
//! neurons are a language model's taps (`--model`) or a synthetic population (see
//! `population.rs`); planted.json says which. The planted time course of group g is the
//! z-scored mean response of its ANs, and it drives the voxels of one Yeo-7 network in
//! every subject:
//!   y_v(t) = μ_v + σ·(γ_s·w_v·√snr·tc_g(t) + ε_v(t) + drift_v(t)),
//! ε AR(1) with unit variance, γ_s a per-subject gain (log-normal, sd 0.2), w_v ~ U(0.5, 1.5)
//! a per-voxel weight, the network shifted by a per-subject jitter (`--jitter`, at most that
//! many voxels in Manhattan distance), and drift a sum of three slow cosines. SNR is the
//! signal-to-AR-noise variance ratio at a voxel with γ_s·w_v = 1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};
use crate::io::nifti::{self, Grid, Mask};
use crate::io::parquet::{tr_metadata, write_table, write_table_with, Column};
use crate::io::stimulus::{self, Stimulus, Word};
use ndarray::{Array3, Array4, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use crate::io::embedded;
use crate::stages::artefacts;
use crate::stages::population::{Texts, Population, Story};
use crate::stages::voxel_model::{bold_run, jitter_offset, mix, subject_weights};
use crate::progress;
use crate::stages::responses::TapOptions;

/// Options of `cortexflow simulate` (see the CLI help for each).
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub out: PathBuf,
    pub subjects: usize,
    pub runs: usize,
    pub seed: u64,
    pub snr: f64,
    pub grid_mm: u8,
    pub tr: f64,
    pub scans: Option<usize>,
    pub networks: Vec<u16>,
    pub neurons: usize,
    pub group_size: usize,
    pub factors: usize,
    pub ar1: f64,
    pub jitter: i32,
    pub null: bool,
    /// A language model whose ANs drive the planted networks; None = synthetic ANs.
    pub model: Option<TapOptions>,
    pub layout: Layout,
    /// Which voxels carry BOLD: the atlas's cortex or the whole brain.
    pub extent: Extent,
    /// Seconds from the first scan to the story's first sound (None: the layout's default,
    /// [`Layout::stimulus_onset`]). When positive, each run gets BIDS events beside its
    /// BOLD holding the words in run time; `stimuli/` keeps the transcript in its own time
    /// (from 0, as TextGrids come).
    pub stimulus_onset: Option<f64>,
}

/// How the dataset is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Raw BIDS-like: `sub-S/func/sub-S_task-T_run-R_bold.nii.gz` and a mask at the top.
    #[default]
    Bids,
    /// fMRIPrep derivatives: `…_space-MNI152NLin6Asym_res-G_desc-preproc_bold.nii.gz`, a
    /// brain mask and a confounds table (+ sidecar) per run, with the artefacts those
    /// measure acting on the BOLD (see [`super::artefacts`]), and no mask at the top.
    Fmriprep,
}

/// Which voxels of the grid carry BOLD (the mask written with the dataset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Extent {
    /// The Yeo 2011 atlas's cortical voxels (8,268 at 4 mm, 65,984 at 2 mm).
    #[default]
    Cortex,
    /// The whole brain: the MNI152 T1 template above 0.2 of its maximum, nilearn's rule
    /// for `load_mni152_brain_mask` (235,473 voxels at 2 mm). Networks are planted in
    /// the cortex as before; the other voxels hold noise and drift only.
    Brain,
}

/// Of the template's maximum: nilearn's `load_mni152_brain_mask(threshold=0.2)`.
const BRAIN_THRESHOLD: f32 = 0.2;

/// The longest stimulus onset the simulator takes (s).
pub const MAX_STIMULUS_ONSET_S: f64 = 60.0;

impl Layout {
    /// The default stimulus onset (s): none in the raw layout; in the derivatives, the
    /// story starts 6 s (3 scans at TR 2 s) into each run, after the scanner's
    /// non-steady-state scans, as in real story-listening sessions.
    pub fn stimulus_onset(self) -> f64 {
        match self {
            Layout::Bids => 0.0,
            Layout::Fmriprep => 6.0,
        }
    }
}

impl Default for SimulateOptions {
    /// The simulator's defaults (the `simulate` command's): 3 subjects × 2 runs on the 4 mm
    /// grid, TR 2 s, SNR 0.5, AR(1) 0.3, one-voxel jitter, Default/Frontoparietal/
    /// Somatomotor planted by 24 synthetic ANs each.
    fn default() -> Self {
        SimulateOptions {
            out: PathBuf::new(),
            subjects: 3,
            runs: 2,
            seed: 0,
            snr: 0.5,
            grid_mm: 4,
            tr: 2.0,
            scans: None,
            networks: vec![7, 6, 2],
            neurons: 384,
            group_size: 24,
            factors: 4,
            ar1: 0.3,
            jitter: 1,
            null: false,
            model: None,
            layout: Layout::Bids,
            extent: Extent::Cortex,
            stimulus_onset: None,
        }
    }
}

const TASK: &str = "lpp";

/// What `simulate` wrote, for the summary line and the tests.
#[derive(Debug)]
pub struct SimulationSummary {
    pub files: Vec<PathBuf>,
    pub n_voxels: usize,
    pub scans: Vec<usize>,
}

#[derive(Serialize)]
struct Planted {
    model: String,
    tap: String,
    model_note: String,
    atlas: &'static str,
    task: &'static str,
    tr: f64,
    snr: f64,
    ar1: f64,
    seed: u64,
    null: bool,
    n_neurons: usize,
    equivalent_r: f64,
    /// The story section whose responses test equivalence beyond the simulated text
    /// (none when every section is simulated).
    held_out_section: Option<usize>,
    networks: Vec<PlantedNetwork>,
    subjects: Vec<PlantedSubject>,
    runs: Vec<PlantedRun>,
}

#[derive(Serialize)]
struct PlantedNetwork {
    label: u16,
    name: String,
    /// Index of this network's volume in `maps.nii.gz`.
    volume: usize,
    an_ids: Vec<u64>,
    /// The ANs equivalent to the planted group (|r| ≥ `equivalent_r` with its course on the
    /// simulated stories and on the held-out section): the truth the ANs a store ties to
    /// the network are scored against.
    equivalent_an_ids: Vec<u64>,
    n_voxels: usize,
}

#[derive(Serialize)]
struct PlantedSubject {
    id: String,
    gain: f64,
    shift_voxels: [i32; 3],
}

#[derive(Serialize)]
struct PlantedRun {
    run: String,
    n_scans: usize,
    n_words: usize,
    stimulus: String,
    /// Seconds from the first scan to the story's time 0 (the words of `stimulus` are in
    /// the story's own time; a run's events, when written, in run time).
    stimulus_onset: f64,
}

/// The grid: the atlas (written with the dataset: it defines the grid and the planted
/// networks), its labels and the cortical mask.
struct Grid3 {
    grid: Grid,
    labels: Array3<f32>,
    mask: Mask,
}

fn write_grid(opt: &SimulateOptions, files: &mut Vec<PathBuf>) -> Result<Grid3> {
    let out = &opt.out;
    let (atlas_bytes, atlas_name, t1_bytes) = match opt.grid_mm {
        4 => (embedded::YEO7_4MM, "Yeo-7_space-MNI152NLin6_res-4x4x4.nii.gz", embedded::MNI_T1_4MM),
        _ => (embedded::YEO7_2MM, "Yeo-7_space-MNI152NLin6_res-2x2x2.nii.gz", embedded::MNI_T1_2MM),
    };
    let atlas_path = out.join("atlas").join(atlas_name);
    crate::io::atomic::write_file_atomically(&atlas_path, |w| w.write_all(atlas_bytes))?;
    let atlas = nifti::read_image(&atlas_path)?;
    let grid = atlas.header.grid.clone();
    let labels = atlas.data.index_axis(Axis(3), 0).to_owned();
    let mask = match opt.extent {
        Extent::Cortex => Mask::from_image(&atlas, |v| v > 0.0),
        Extent::Brain => {
            let t1 = embedded::image(t1_bytes, "the embedded MNI152 T1 template")?;
            let top = t1.data.iter().copied().fold(0.0f32, f32::max);
            t1.header.grid.ensure_same(Path::new("the MNI152 T1 template"), &grid, &atlas_path)?;
            Mask::from_image(&t1, |v| v > BRAIN_THRESHOLD * top)
        }
    };
    files.push(atlas_path);
    if opt.layout == Layout::Bids {
        let mask_path = out.join("mask.nii.gz");
        write_mask(&mask_path, &grid, &mask, &vec![true; mask.len()])?;
        files.push(mask_path);
    }
    Ok(Grid3 { grid, labels, mask })
}

/// The voxels of `mask` that are `on`, as a 3-D mask image.
fn write_mask(path: &Path, grid: &Grid, mask: &Mask, on: &[bool]) -> Result<()> {
    let values: Vec<f32> = on.iter().map(|&b| f32::from(u8::from(b))).collect();
    nifti::write_map(path, grid, &mask.unmask(&values).insert_axis(Axis(3)), None)
}

/// The stories: LPP sections 1..R, cut to the requested scan count, as stimuli/*.tsv in
/// their own time; the stories returned hold the words in run time (moved by the
/// stimulus onset), which drive the BOLD and go into each run's events.
fn write_stories(opt: &SimulateOptions, files: &mut Vec<PathBuf>) -> Result<Vec<Story>> {
    let onset = stimulus_onset(opt);
    let mut stories = Vec::new();
    for r in 1..=opt.runs {
        let name = format!("lppEN_section{r}.TextGrid");
        let bytes = embedded::lpp_section(r).context("embedded LPP section")?;
        let full = stimulus::parse_stimulus(Path::new(&name), bytes, Some("TokensAlign"))?;
        let n_scans = opt.scans.unwrap_or(((full.end + onset) / opt.tr).ceil() as usize);
        let words: Vec<Word> = full
            .words
            .iter()
            .filter(|w| w.onset + onset < n_scans as f64 * opt.tr)
            .cloned()
            .collect();
        let path = opt.out.join("stimuli").join(format!("task-{TASK}_run-{r}.tsv"));
        stimulus::write_tsv(&path, &words)?;
        files.push(path.clone());
        let words = words
            .into_iter()
            .map(|w| Word { onset: w.onset + onset, offset: w.offset + onset, ..w })
            .collect();
        stories.push((
            r,
            n_scans,
            Stimulus {
                path,
                words,
                end: n_scans as f64 * opt.tr,
            },
        ));
    }
    Ok(stories)
}

fn stimulus_onset(opt: &SimulateOptions) -> f64 {
    opt.stimulus_onset.unwrap_or(opt.layout.stimulus_onset())
}

/// The section after the simulated ones, whole and in its own time, to test equivalence
/// to a planted course on text the simulation did not use; none when every section runs.
fn held_out_story(opt: &SimulateOptions) -> Result<Option<Story>> {
    let r = opt.runs + 1;
    let Some(bytes) = embedded::lpp_section(r) else {
        return Ok(None);
    };
    let name = format!("lppEN_section{r}.TextGrid");
    let stim = stimulus::parse_stimulus(Path::new(&name), bytes, Some("TokensAlign"))?;
    let n_scans = (stim.end / opt.tr).ceil() as usize;
    Ok(Some((r, n_scans, stim)))
}

/// The AN population (a real model's taps, or synthetic) with its planted groups.
fn population(opt: &SimulateOptions, stories: &[Story], held_out: Option<&Story>) -> Result<Population> {
    let n_groups = opt.networks.len();
    let texts = Texts { simulated: stories, held_out };
    match &opt.model {
        Some(taps) => Population::from_model(
            taps,
            &texts,
            opt.tr,
            n_groups,
            opt.group_size,
            mix(opt.seed, 3, 0),
        ),
        None => Population::synthetic(
            &texts,
            opt.tr,
            opt.neurons,
            n_groups,
            opt.group_size,
            opt.factors,
            mix(opt.seed, 3, 0),
        ),
    }
}

/// Per run, the ANs' responses and the planted time courses (truth/responses/,
/// truth/timecourses/); returns the time courses (run × group × scan).
fn write_truth_runs(
    truth: &Path,
    tr: f64,
    population: &Population,
    stories: &[Story],
    planted: &[PlantedNetwork],
    files: &mut Vec<PathBuf>,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let mut courses = Vec::new();
    for (s_idx, (r, n_scans, _)) in stories.iter().enumerate() {
        let responses = &population.responses[s_idx];
        let run_key = format!("task-{TASK}_run-{r}");
        let path = truth.join("responses").join(format!("{run_key}.parquet"));
        let n_an = population.neurons.len();
        write_table_with(
            &path,
            "responses",
            Some(*n_scans),
            vec![
                Column::U64(population.neurons.iter().map(|n| n.0).collect()),
                Column::Utf8(vec![run_key.clone(); n_an]),
                Column::OptU16(vec![None; n_an]),
                Column::F32List {
                    size: *n_scans,
                    values: responses.t().iter().map(|&v| v as f32).collect(),
                },
            ],
            &tr_metadata(tr),
        )?;
        files.push(path);
        let tcs: Vec<Vec<f64>> = (0..planted.len()).map(|g| population.course(g, s_idx)).collect();
        let path = truth.join("timecourses").join(format!("{run_key}.parquet"));
        write_table(
            &path,
            "planted_timecourses",
            Some(*n_scans),
            vec![
                Column::Utf8(planted.iter().map(|p| p.name.clone()).collect()),
                Column::U16(planted.iter().map(|p| p.label).collect()),
                Column::Utf8(vec![run_key.clone(); planted.len()]),
                Column::F32List {
                    size: *n_scans,
                    values: tcs.iter().flatten().map(|&v| v as f32).collect(),
                },
            ],
        )?;
        files.push(path);
        courses.push(tcs);
    }
    Ok(courses)
}

/// The template space of the fMRIPrep layout's file names.
fn space(opt: &SimulateOptions) -> String {
    format!("space-MNI152NLin6Asym_res-{}", opt.grid_mm)
}

/// BOLD, subject by subject (each subject's and run's random stream seeded on its own).
fn write_bold(
    opt: &SimulateOptions,
    g: &Grid3,
    stories: &[Story],
    courses: &[Vec<Vec<f64>>],
    files: &mut Vec<PathBuf>,
) -> Result<Vec<PlantedSubject>> {
    let bar = progress::bar((opt.subjects * opt.runs) as u64, "simulating BOLD");
    let mut subjects = Vec::new();
    for s in 1..=opt.subjects {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(opt.seed, 1, s as u64));
        let gain = (0.2 * rng.sample::<f64, _>(StandardNormal)).exp();
        let shift = jitter_offset(&mut rng, opt.jitter);
        let subject = format!("{s:02}");
        let weights = subject_weights(&mut rng, &g.labels, &g.mask, shift, &opt.networks);
        let baseline: Vec<f64> = (0..g.mask.len())
            .map(|_| 100.0 * (1.0 + 0.1 * rng.sample::<f64, _>(StandardNormal)))
            .collect();
        let fmriprep = opt.layout == Layout::Fmriprep;
        let brain = match fmriprep {
            true => artefacts::subject_mask(&mut ChaCha8Rng::seed_from_u64(mix(opt.seed, 4, s as u64)), &g.mask),
            false => Vec::new(),
        };
        let [nx, ny, _] = g.grid.shape;
        let inside: Vec<bool> = match fmriprep {
            true => g.mask.ijk().map(|[i, j, k]| brain[i + nx * (j + ny * k)]).collect(),
            false => Vec::new(),
        };
        for ((r, n_scans, story), tcs) in stories.iter().zip(courses) {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(opt.seed, 2, (s * 1000 + r) as u64));
            let stem = format!("sub-{subject}/func/sub-{subject}_task-{TASK}_run-{r}");
            let path = match fmriprep {
                true => opt.out.join(format!("{stem}_{}_desc-preproc_bold.nii.gz", space(opt))),
                false => opt.out.join(format!("{stem}_bold.nii.gz")),
            };
            let signal_scale = if opt.null { 0.0 } else { gain * opt.snr.sqrt() };
            let data = bold_run(
                &mut rng,
                &g.mask,
                &weights,
                &baseline,
                tcs,
                *n_scans,
                signal_scale,
                opt.ar1,
            )?;
            let mut data = data;
            if fmriprep {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(opt.seed, 3, (s * 1000 + r) as u64));
                let art = artefacts::draw(&mut rng, *n_scans);
                artefacts::apply(&mut rng, &mut data, &g.mask, &inside, &baseline, &art);
                let confounds = opt.out.join(format!("{stem}_desc-confounds_timeseries.tsv"));
                artefacts::write_confounds(&mut rng, &confounds, &data, &inside, &art, opt.tr)?;
                let mask_path = opt.out.join(format!("{stem}_{}_desc-brain_mask.nii.gz", space(opt)));
                let [nx, ny, nz] = g.grid.shape;
                let image = Array4::from_shape_fn((nx, ny, nz, 1), |(i, j, k, _)| f32::from(u8::from(brain[i + nx * (j + ny * k)])));
                nifti::write_map(&mask_path, &g.grid, &image, None)?;
                files.extend([confounds.with_extension("json"), confounds, mask_path]);
            }
            if stimulus_onset(opt) > 0.0 {
                let events = opt.out.join(format!("{stem}_events.tsv"));
                stimulus::write_events(&events, &story.words)?;
                files.push(events);
            }
            nifti::write_series(&path, &g.mask, data.view(), opt.tr)?;
            files.push(path);
            bar.inc(1);
        }
        subjects.push(PlantedSubject {
            id: subject,
            gain,
            shift_voxels: shift,
        });
    }
    bar.finish_and_clear();
    Ok(subjects)
}

/// Writes the dataset under `opt.out`: atlas and mask, stimuli, the truth (responses, time
/// courses, maps, planted.json), every subject's BOLD, and dataset_description.json.
pub fn run(opt: &SimulateOptions) -> Result<SimulationSummary> {
    validate(opt)?;
    let out = &opt.out;
    let mut files = Vec::new();
    let g = write_grid(opt, &mut files)?;
    let stories = write_stories(opt, &mut files)?;
    let held_out = held_out_story(opt)?;
    let population = population(opt, &stories, held_out.as_ref())?;
    let names = embedded::yeo7_names();
    let planted_groups: Vec<PlantedNetwork> = opt
        .networks
        .iter()
        .enumerate()
        .map(|(i, &label)| PlantedNetwork {
            label,
            name: names
                .iter()
                .find(|(k, _)| *k == label)
                .map(|(_, n)| n.clone())
                .unwrap_or_default(),
            volume: i,
            an_ids: population.group_ids(i),
            equivalent_an_ids: population.equivalent_ids(i),
            n_voxels: g.labels.iter().filter(|&&v| v as u16 == label).count(),
        })
        .collect();
    let truth = out.join("truth");
    let neurons_path = truth.join("neurons.parquet");
    population.write_neurons(&neurons_path)?;
    files.push(neurons_path);
    let courses = write_truth_runs(&truth, opt.tr, &population, &stories, &planted_groups, &mut files)?;
    let maps_path = truth.join("maps.nii.gz");
    write_truth_maps(&maps_path, &g.grid, &g.labels, &opt.networks)?;
    files.push(maps_path);
    let subjects = write_bold(opt, &g, &stories, &courses, &mut files)?;
    let planted = Planted {
        model: population.model.clone(),
        tap: population.tap.clone(),
        model_note: population.note.clone(),
        atlas: "yeo7",
        task: TASK,
        tr: opt.tr,
        snr: opt.snr,
        ar1: opt.ar1,
        seed: opt.seed,
        null: opt.null,
        n_neurons: population.neurons.len(),
        equivalent_r: crate::stages::population::EQUIVALENT_R,
        held_out_section: held_out.as_ref().map(|h| h.0),
        networks: planted_groups,
        subjects,
        runs: stories
            .iter()
            .map(|(r, n, s)| PlantedRun {
                run: r.to_string(),
                n_scans: *n,
                n_words: s.words.len(),
                stimulus: relative(out, &s.path),
                stimulus_onset: stimulus_onset(opt),
            })
            .collect(),
    };
    let planted_path = truth.join("planted.json");
    let json = serde_json::to_string_pretty(&planted)?;
    crate::io::atomic::write_file_atomically(&planted_path, |w| w.write_all(json.as_bytes()))?;
    files.push(planted_path);
    let kind = match opt.layout {
        Layout::Bids => "raw",
        Layout::Fmriprep => "derivative",
    };
    let description = serde_json::json!({"Name": "cortexflow simulation", "BIDSVersion": "1.9.0", "DatasetType": kind, "GeneratedBy": [{"Name": "cortexflow simulate", "Version": env!("CARGO_PKG_VERSION")}]});
    let desc_path = out.join("dataset_description.json");
    crate::io::atomic::write_file_atomically(&desc_path, |w| {
        w.write_all(description.to_string().as_bytes())
    })?;
    files.push(desc_path);
    Ok(SimulationSummary {
        files,
        n_voxels: g.mask.len(),
        scans: stories.iter().map(|s| s.1).collect(),
    })
}

/// Sane limits of the simulator's sizes: beyond them a typo would run for hours, fill
/// the disk or ask for more memory than any machine has (said in the error).
const MAX_SUBJECTS: usize = 1000;
const MAX_SCANS: usize = 10_000;
const MAX_NEURONS: usize = 1_000_000;
const MAX_FACTORS: usize = 10_000;
/// In voxels: 8 × 4 mm = 32 mm, a third of the brain's width.
const MAX_JITTER: i32 = 8;

/// Voxels of the atlas grid at `grid_mm` (the BOLD volumes are written on all of them).
fn grid_voxels(grid_mm: u8) -> usize {
    match grid_mm {
        4 => 45 * 54 * 45,
        _ => 91 * 109 * 91,
    }
}

/// Bytes the largest step holds at once, at most: one BOLD run on the mask's voxels (f32;
/// bounded here by the whole grid, as the mask is not read yet) and every run's AN
/// responses (f64, twice). Volumes are written one at a time.
fn memory_needed(opt: &SimulateOptions, scans: usize) -> u128 {
    let run = grid_voxels(opt.grid_mm) as u128 * scans as u128 * 4;
    let responses = (opt.neurons as u128) * scans as u128 * opt.runs as u128 * 8 * 2;
    run + responses
}

/// (Longer than ~50 lines on purpose: every option's rule in one place, in the order of
/// the help, so a command line fails on its first bad option.)
pub(crate) fn validate(opt: &SimulateOptions) -> Result<()> {
    if opt.subjects == 0 || opt.runs == 0 {
        bail!("--subjects and --runs must be at least 1");
    }
    if opt.subjects > MAX_SUBJECTS {
        bail!("--subjects {}: at most {MAX_SUBJECTS}", opt.subjects);
    }
    if opt.runs > embedded::LPP_RUNS {
        bail!(
            "--runs {} exceeds the {} sections of the embedded story",
            opt.runs,
            embedded::LPP_RUNS
        );
    }
    if !(opt.snr.is_finite() && opt.snr >= 0.0) {
        bail!("--snr must be a finite number ≥ 0, got {}", opt.snr);
    }
    if !(opt.tr.is_finite() && nifti::PLAUSIBLE_TR_S.contains(&opt.tr)) {
        bail!("--tr {} s is outside {:?} s", opt.tr, nifti::PLAUSIBLE_TR_S);
    }
    if let Some(onset) = opt.stimulus_onset {
        if !(0.0..=MAX_STIMULUS_ONSET_S).contains(&onset) {
            bail!("--stimulus-onset {onset}: seconds in [0, {MAX_STIMULUS_ONSET_S}]");
        }
    }
    if opt.scans.is_some_and(|n| n < 10) {
        bail!("--scans must be at least 10");
    }
    if let Some(n) = opt.scans.filter(|&n| n > MAX_SCANS) {
        bail!("--scans {n}: at most {MAX_SCANS} scans per run");
    }
    if !(0..=MAX_JITTER).contains(&opt.jitter) {
        bail!(
            "--jitter {}: a shift of 0 to {MAX_JITTER} voxels",
            opt.jitter
        );
    }
    if opt.neurons > MAX_NEURONS {
        bail!("--neurons {}: at most {MAX_NEURONS}", opt.neurons);
    }
    if opt.factors > MAX_FACTORS {
        bail!("--factors {}: at most {MAX_FACTORS}", opt.factors);
    }
    // The longest LPP section lasts 736 s: without --scans a run has at most this many.
    let scans = opt.scans.unwrap_or((740.0 / opt.tr).ceil() as usize);
    let need = memory_needed(opt, scans);
    let have = crate::io::affordable_memory() as u128;
    if need > have {
        bail!(
            "these options need about {} of memory ({} scans per run on the {} mm grid, {} ANs), {} is available: give fewer --scans, --neurons or a coarser --grid",
            crate::io::human_bytes(need),
            scans,
            opt.grid_mm,
            opt.neurons,
            crate::io::human_bytes(have)
        );
    }
    if opt.ar1.is_nan() || opt.ar1.abs() >= 1.0 {
        bail!("--ar1 must be in (-1, 1), got {}", opt.ar1);
    }
    let names = embedded::yeo7_names();
    if let Some(bad) = opt
        .networks
        .iter()
        .find(|n| !names.iter().any(|(k, _)| k == *n))
    {
        bail!("--networks: {bad} is not a Yeo-7 label (1..7)");
    }
    if opt.networks.iter().collect::<BTreeSet<_>>().len() != opt.networks.len() {
        bail!("--networks lists a network twice");
    }
    if opt.group_size == 0 || opt.group_size * opt.networks.len() > opt.neurons {
        bail!(
            "--group-size {} × {} networks must be between 1 and --neurons {}",
            opt.group_size,
            opt.networks.len(),
            opt.neurons
        );
    }
    Ok(())
}

/// One indicator volume per planted network (the atlas network, unshifted).
fn write_truth_maps(
    path: &Path,
    grid: &Grid,
    labels: &Array3<f32>,
    networks: &[u16],
) -> Result<()> {
    let [nx, ny, nz] = grid.shape;
    let mut maps = Array4::<f32>::zeros((nx, ny, nz, networks.len()));
    for ((i, j, k), &l) in labels.indexed_iter() {
        if let Some(g) = networks.iter().position(|&n| n as f32 == l) {
            maps[[i, j, k, g]] = 1.0;
        }
    }
    nifti::write_map(path, grid, &maps, None)?;
    Ok(())
}

fn relative(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes that would run for hours or exhaust memory are refused by validate, before
    /// anything is written, and the error says the limit.
    #[test]
    fn sizes_beyond_the_limits_are_refused() {
        let ok = SimulateOptions::default();
        validate(&ok).unwrap();
        let with = |edit: fn(&mut SimulateOptions)| {
            let mut o = ok.clone();
            edit(&mut o);
            o
        };
        let cases = [
            (with(|o| o.jitter = 1000), "--jitter 1000: a shift of 0 to 8"),
            (with(|o| o.jitter = -1), "--jitter -1"),
            (with(|o| o.scans = Some(1_000_000)), "at most 10000"),
            (with(|o| o.factors = 1_000_000), "--factors 1000000: at most"),
            (with(|o| o.subjects = 100_000), "--subjects 100000: at most"),
            (with(|o| o.neurons = 10_000_000), "--neurons 10000000"),
        ];
        for (opt, want) in cases {
            let e = validate(&opt).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn the_memory_estimate_grows_with_the_grid_and_the_scans() {
        let ok = SimulateOptions::default();
        let fine = SimulateOptions {
            grid_mm: 2,
            ..ok.clone()
        };
        assert!(memory_needed(&fine, 300) > 8 * memory_needed(&ok, 300) / 2);
        assert!(memory_needed(&ok, 3000) > 9 * memory_needed(&ok, 300));
    }
}
