//! `cortexflow activations` and `cortexflow responses`: a story through a language model,
//! token-level taps for inspection, and one regressor per artificial neuron on the scan
//! clock (nilearn `compute_regressor`: word activations as stick amplitudes at word
//! onsets, oversampling 50, the chosen HRF, sampled at k·TR).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, bail, Context, Result};
use crate::io::parquet::{tr_metadata, write_table, Column, TableWriter};
use crate::io::stimulus::{read_stimulus, Stimulus};
use crate::kernels::hrf::{frame_times, EventDesign, HrfModel, RegressorOptions};
use crate::model::align::tokenize_words;
use crate::model::extract::{run_story, word_activations, NeuronLayout, Pooling, RunOptions};
use crate::model::stored::WeightDtype;
use crate::model::{self, LanguageModel, Tap, TapRequest};
use ndarray::{s, Array2};

use crate::progress;

/// ANs per block when turning word activations into regressors (bounds f64 scratch).
const COLUMN_BLOCK: usize = 4096;

/// What to tap, shared by both commands.
#[derive(Debug, Clone)]
pub struct TapOptions {
    pub model: PathBuf,
    pub taps: Vec<Tap>,
    /// None = every layer.
    pub layers: Option<Vec<usize>>,
    pub context: usize,
    pub batch: usize,
    pub pooling: Pooling,
    /// Whether f16/bf16 weights stay as stored or are copied to f32 at load.
    pub dtype: WeightDtype,
}

impl TapOptions {
    /// Context windows per forward pass unless said otherwise.
    pub const BATCH: usize = 4;

    pub fn load(&self) -> Result<(Box<dyn LanguageModel>, RunOptions, NeuronLayout)> {
        let m = model::load_as(&self.model, self.dtype)?;
        let layers = self
            .layers
            .clone()
            .unwrap_or_else(|| (0..m.n_layers()).collect());
        let request = TapRequest::new(layers, self.taps.clone());
        request.check(m.as_ref())?;
        let layout = NeuronLayout::new(m.as_ref(), &request);
        Ok((
            m,
            RunOptions {
                request,
                context: self.context,
                batch: self.batch,
                pooling: self.pooling,
            },
            layout,
        ))
    }
}

/// Parses `--layers`: `all`, or comma-separated indices and ranges (`0,3,6-11`).
pub fn parse_layers(spec: &str) -> Result<Option<Vec<usize>>> {
    if spec.trim() == "all" {
        return Ok(None);
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--layers: '{part}' is not a layer index or range (e.g. 0,3,6-11)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().with_context(bad)?,
                    b.trim().parse().with_context(bad)?,
                );
                if a > b {
                    return Err(Error::Invalid(bad()));
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().with_context(bad)?),
        }
    }
    if out.is_empty() {
        bail!("--layers is empty");
    }
    Ok(Some(out))
}

/// The words of a run: a stimulus file, or a plain text file split at white space.
fn words_of(path: &Path, tier: Option<&str>) -> Result<Vec<String>> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "txt" {
        // A device or FIFO named *.txt would be read forever.
        crate::io::regular_file(path)?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read text", path.display()))?;
        let words: Vec<String> = text.split_whitespace().map(String::from).collect();
        if words.is_empty() {
            bail!("{}: no words", path.display());
        }
        return Ok(words);
    }
    Ok(read_stimulus(path, tier)?
        .words
        .into_iter()
        .map(|w| w.text)
        .collect())
}

/// `activations`: token-level taps, one Parquet file per tap width.
pub fn activations(
    opt: &TapOptions,
    input: &Path,
    tier: Option<&str>,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let (m, run, layout) = opt.load()?;
    let words = words_of(input, tier)?;
    let story = tokenize_words(m.tokenizer(), &words)?;
    // Taps of one width share a file: `out` itself when all taps have one width.
    let widths: Vec<usize> = run.request.taps.iter().map(|&t| m.tap_width(t)).collect();
    let one_file = widths.iter().all(|&w| w == widths[0]);
    let mut writers = Vec::new();
    for (&tap, &w) in run.request.taps.iter().zip(&widths) {
        let path = if one_file {
            out.to_path_buf()
        } else {
            with_suffix(out, tap.name())
        };
        if one_file && !writers.is_empty() {
            continue;
        }
        writers.push((
            tap,
            path.clone(),
            TableWriter::create(&path, "activations", Some(w))?,
        ));
    }
    let bar = progress::bar(story.ids.len() as u64, "tokens");
    let start = Instant::now();
    progress::with_layers(&bar, || run_story(
        m.as_ref(),
        &story,
        &run,
        &layout,
        |window, rows| {
            for (tap_of_file, _, writer) in &mut writers {
                let blocks: Vec<_> = layout
                    .blocks
                    .iter()
                    .filter(|b| one_file || b.1 == *tap_of_file)
                    .collect();
                let (mut token, mut text, mut word, mut layer, mut tap, mut values) =
                    (vec![], vec![], vec![], vec![], vec![], vec![]);
                for (r, t) in window.keep.clone().enumerate() {
                    for &&(l, tp, col, w) in &blocks {
                        token.push(t as u32);
                        text.push(story.texts[t].clone());
                        word.push(story.word_of[t] as u32);
                        layer.push(l as u16);
                        tap.push(tp.name().to_string());
                        values.extend(rows.slice(s![r, col..col + w]).iter());
                    }
                }
                let size = blocks.first().map_or(0, |b| b.3);
                writer.write(vec![
                    Column::U32(token),
                    Column::Utf8(text),
                    Column::U32(word),
                    Column::U16(layer),
                    Column::Utf8(tap),
                    Column::F32List { size, values },
                ])?;
            }
            Ok(())
        },
        |done| bar.set_position(done as u64),
    ))?;
    bar.finish_and_clear();
    report_throughput(m.name(), story.ids.len(), start);
    writers
        .into_iter()
        .map(|(_, path, w)| w.finish().map(|_| path))
        .collect()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or("activations".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.{suffix}.parquet"))
}

fn report_throughput(model: &str, tokens: usize, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{model}: {tokens} tokens in {secs:.2} s ({:.0} tokens/s)",
        tokens as f64 / secs.max(1e-9)
    );
}

/// One run of `responses`.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub stimulus: PathBuf,
    pub n_scans: usize,
    /// The story's name (its stimulus file's name without extension, unless told).
    pub story: String,
}

impl RunSpec {
    /// Stimuli with their scan counts: one count for every stimulus, or one each.
    pub fn pair(stimuli: &[PathBuf], scans: &[usize]) -> Result<Vec<RunSpec>> {
        if scans.len() != 1 && scans.len() != stimuli.len() {
            bail!(
                "--n-scans gives {} values for {} stimuli: give one, or one per stimulus",
                scans.len(),
                stimuli.len()
            );
        }
        Ok(stimuli
            .iter()
            .enumerate()
            .map(|(i, f)| RunSpec {
                stimulus: f.clone(),
                n_scans: scans[if scans.len() == 1 { 0 } else { i }],
                story: story_key(f),
            })
            .collect())
    }
}

/// Settings of the regressors.
#[derive(Debug, Clone)]
pub struct ResponseOptions {
    pub tr: f64,
    pub hrf: HrfModel,
    pub zscore: bool,
    pub tier: Option<String>,
    /// Seconds into the run at which the stimulus's time 0 falls: every word moves by it.
    pub onset: f64,
}

/// `responses`: writes OUT/neurons.parquet and OUT/responses/<story>.parquet per run.
pub fn responses(
    opt: &TapOptions,
    runs: &[RunSpec],
    ro: &ResponseOptions,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    // Check every stimulus before the model work starts.
    let stims: Vec<Stimulus> = check_all(runs, ro)?;
    let (m, run, layout) = opt.load()?;
    let mut files = vec![write_neurons(out, m.name(), &layout)?];
    for (spec, stim) in runs.iter().zip(&stims) {
        let story = spec.story.clone();
        let words: Vec<String> = stim.words.iter().map(|w| w.text.clone()).collect();
        let n_tokens = tokenize_words(m.tokenizer(), &words)?.ids.len();
        let bar = progress::bar(n_tokens as u64, &story);
        let start = Instant::now();
        let (acts, empty) = progress::with_layers(&bar, || {
            word_activations(m.as_ref(), &words, &run, &layout, |done| bar.set_position(done as u64))
        })?;
        bar.finish_and_clear();
        report_throughput(m.name(), n_tokens, start);
        if empty > 0 {
            tracing::warn!(
                "{}: {empty} words have no token and get zero activation",
                spec.stimulus.display()
            );
        }
        files.push(write_story(out, spec, stim, &acts, &layout, ro)?);
    }
    Ok(files)
}

/// Checks the clock and every stimulus (words within the scans).
pub fn check_all(runs: &[RunSpec], ro: &ResponseOptions) -> Result<Vec<Stimulus>> {
    if !(ro.tr.is_finite() && ro.tr > 0.0) {
        bail!("--tr must be a positive number of seconds, got {}", ro.tr);
    }
    for r in runs {
        // The story (named after the file) becomes a file name: checked before the model runs.
        crate::io::name::check("story", &r.story)
            .map_err(|e| crate::error::Error::format(&r.stimulus, e.to_string()))?;
    }
    runs.iter().map(|r| check_fits(r, ro)).collect()
}

/// OUT/neurons.parquet: one row per AN of the layout.
pub fn write_neurons(out: &Path, model: &str, layout: &NeuronLayout) -> Result<PathBuf> {
    let path = out.join("neurons.parquet");
    let (ids, layer, tap, unit): (Vec<u64>, Vec<u16>, Vec<String>, Vec<u32>) =
        layout.neurons().fold(
            (vec![], vec![], vec![], vec![]),
            |mut acc, (id, l, t, u)| {
                acc.0.push(id);
                acc.1.push(l as u16);
                acc.2.push(t.name().to_string());
                acc.3.push(u as u32);
                acc
            },
        );
    let n = ids.len();
    write_table(
        &path,
        "neurons",
        None,
        vec![
            Column::U64(ids),
            Column::Utf8(vec![model.to_string(); n]),
            Column::U16(layer),
            Column::Utf8(tap),
            Column::U32(unit),
        ],
    )?;
    Ok(path)
}

/// OUT/responses/<story>.parquet from a story's word activations (words × ANs): each AN's
/// word amplitudes convolved with the HRF on the scan clock.
pub fn write_story(
    out: &Path,
    spec: &RunSpec,
    stim: &Stimulus,
    acts: &Array2<f32>,
    layout: &NeuronLayout,
    ro: &ResponseOptions,
) -> Result<PathBuf> {
    let story = spec.story.clone();
    let ids: Vec<u64> = layout.neurons().map(|n| n.0).collect();
    let n = ids.len();
    let onsets: Vec<f64> = stim.words.iter().map(|w| w.onset).collect();
    let opts = RegressorOptions {
        model: ro.hrf.clone(),
        ..Default::default()
    };
    let designs = EventDesign::new(
        &onsets,
        &vec![0.0; onsets.len()],
        &frame_times(spec.n_scans, ro.tr, 0.0),
        &opts,
    )?;
    let path = out.join("responses").join(format!("{story}.parquet"));
    let mut writer =
        TableWriter::create_with(&path, "responses", Some(spec.n_scans), &tr_metadata(ro.tr))?;
    let delays: Vec<Option<u16>> = match &ro.hrf {
        HrfModel::Fir { delays } => delays.iter().map(|&d| Some(d as u16)).collect(),
        _ => vec![None],
    };
    for (design, delay) in designs.iter().zip(&delays) {
        for c0 in (0..n).step_by(COLUMN_BLOCK) {
            let c1 = (c0 + COLUMN_BLOCK).min(n);
            let amps = acts.slice(s![.., c0..c1]).mapv(f64::from);
            let mut reg = design.apply(amps.view()); // T × block
            if ro.zscore {
                zscore_columns(&mut reg);
            }
            let values: Vec<f32> = reg.t().iter().map(|&v| v as f32).collect();
            writer.write(vec![
                Column::U64(ids[c0..c1].to_vec()),
                Column::Utf8(vec![story.clone(); c1 - c0]),
                Column::OptU16(vec![*delay; c1 - c0]),
                Column::F32List {
                    size: spec.n_scans,
                    values,
                },
            ])?;
        }
    }
    writer.finish()?;
    Ok(path)
}

/// Reads a run's stimulus, moved to its onset in the run, and errors when words start
/// after the last scan.
fn check_fits(spec: &RunSpec, ro: &ResponseOptions) -> Result<Stimulus> {
    let mut stim = read_stimulus(&spec.stimulus, ro.tier.as_deref())?;
    for w in &mut stim.words {
        w.onset += ro.onset;
        w.offset += ro.onset;
    }
    stim.end += ro.onset;
    if spec.n_scans < 2 {
        bail!("{}: --n-scans must be at least 2", spec.stimulus.display());
    }
    let most = most_scans(stim.end, ro.tr);
    if spec.n_scans > most {
        bail!(
            "{}: --n-scans {} is more than the stimulus implies: it lasts {:.1} s, {} scans at TR {} s; at most {most} (twice that plus {SCAN_EXTRA}, never more than {MAX_SCANS})",
            spec.stimulus.display(),
            spec.n_scans,
            stim.end,
            (stim.end / ro.tr).ceil(),
            ro.tr
        );
    }
    if let HrfModel::Fir { delays } = &ro.hrf {
        // A delay as long as the run gives an all-zero regressor (and a typo such as
        // 1000000 a million of them).
        if let Some(d) = delays.iter().find(|&&d| d >= spec.n_scans) {
            bail!(
                "{}: FIR delay {d} scans is not shorter than the run ({} scans)",
                spec.stimulus.display(),
                spec.n_scans
            );
        }
    }
    let end = spec.n_scans as f64 * ro.tr;
    let late = stim.words.iter().filter(|w| w.onset >= end).count();
    if late > 0 {
        bail!(
            "{}: {late} of {} words start at or after the end of the scans ({} scans × TR {} s = {end} s; the last word starts at {} s): check --tr and --n-scans",
            spec.stimulus.display(),
            stim.words.len(),
            spec.n_scans,
            ro.tr,
            stim.words.last().map_or(0.0, |w| w.onset)
        );
    }
    Ok(stim)
}

/// Scans a run may have beyond its story (rest after the last word), and the most a run
/// may have at all: the regressors are ANs × scans in memory, so a typo such as
/// `--n-scans 1000000` must be refused, not allocated.
const SCAN_EXTRA: usize = 100;
const MAX_SCANS: usize = 100_000;

/// The most scans a run of a story lasting `end` seconds may have at `tr`: twice the
/// scans the story implies plus [`SCAN_EXTRA`], at most [`MAX_SCANS`].
fn most_scans(end: f64, tr: f64) -> usize {
    let implied = (end / tr).ceil();
    if implied.is_finite() && implied < MAX_SCANS as f64 {
        (2 * implied as usize + SCAN_EXTRA).min(MAX_SCANS)
    } else {
        MAX_SCANS
    }
}

/// The story key of a stimulus file: its name without extension.
pub fn story_key(path: &Path) -> String {
    path.file_stem()
        .map_or("story".into(), |s| s.to_string_lossy().into_owned())
}

/// z-scores every column (population sd); constant columns become zero.
fn zscore_columns(x: &mut Array2<f64>) {
    let n = x.nrows() as f64;
    for mut col in x.columns_mut() {
        let mean = col.sum() / n;
        let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        col.mapv_inplace(|v| if sd > 0.0 { (v - mean) / sd } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run may outlast its story (rest after the last word), but not by a typo's worth.
    #[test]
    fn scans_are_bounded_by_the_story() {
        assert_eq!(most_scans(600.0, 2.0), 2 * 300 + SCAN_EXTRA);
        assert_eq!(most_scans(1.0, 2.0), 2 + SCAN_EXTRA);
        assert_eq!(most_scans(1e9, 2.0), MAX_SCANS);
        assert_eq!(most_scans(600.0, 1e-300), MAX_SCANS);
    }
}
