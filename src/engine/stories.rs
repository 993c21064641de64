//! New stories through the recipe's model, on every worker of every process: each worker
//! runs its share of the forward passes (batches of context windows, dealt by position),
//! `pool_words` pools each story's words at worker 0 once the frontier has passed it, and
//! the writer turns them into responses on the scan clock and learns or extends the basis.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{bail, err, Error, Result};
use crate::io::stimulus::Stimulus;
use crate::model::align::{tokenize_words, StoryTokens};
use crate::model::extract::{batches, forward_windows, NeuronLayout, RunOptions};
use crate::model::LanguageModel;
use crate::operators::{agree, PoolWords, StoryShape, StoryWords, TokenRow};
use ndarray::Array2;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::worker::Worker;

use crate::progress;
use crate::store::{Layout, Recipe};
use crate::stages::responses::{self, ResponseOptions, RunSpec, TapOptions};
use crate::store::Store;

/// Stories to ingest from stimulus files: their clock (TR), scans per run (one value, or
/// one per file) and names (none: each file's name without its extension).
#[derive(Debug, Clone)]
pub struct StimulusSpec {
    pub files: Vec<PathBuf>,
    pub tr: f64,
    pub scans: Vec<usize>,
    pub names: Vec<String>,
}

impl StimulusSpec {
    fn runs(&self) -> Result<Vec<RunSpec>> {
        let mut runs = RunSpec::pair(&self.files, &self.scans)?;
        for (run, name) in runs.iter_mut().zip(&self.names) {
            run.story = name.clone();
        }
        Ok(runs)
    }
}

/// The recipe's model and response settings.
fn settings(recipe: &Recipe, dir: &Path, tr: f64) -> Result<(TapOptions, ResponseOptions)> {
    let m = &recipe.model;
    let Some(model) = m.path.clone() else {
        bail!(
            "{}: the recipe names no model (model.path); ingest --responses instead",
            dir.display()
        );
    };
    let taps = m.tap_options(model)?;
    let hrf = m.hrf.model(&m.fir_delays);
    let ro = ResponseOptions {
        tr,
        hrf,
        zscore: m.zscore_responses,
        tier: None,
        onset: m.stimulus_onset,
    };
    Ok((taps, ro))
}

/// What every worker prepares: the model, the checked stimuli and their tokens.
struct Loaded {
    model: Box<dyn LanguageModel>,
    run: RunOptions,
    layout: NeuronLayout,
    specs: Vec<RunSpec>,
    stimuli: Vec<Stimulus>,
    tokens: Vec<StoryTokens>,
    ro: ResponseOptions,
}

fn load(dir: &Path, spec: &StimulusSpec) -> Result<Loaded> {
    let store = Store::open_reader(dir)?;
    let (taps, ro) = settings(&store.recipe, dir, spec.tr)?;
    let specs = spec.runs()?;
    let stimuli = responses::check_all(&specs, &ro)?;
    let (model, run, layout) = taps.load()?;
    let tokens = stimuli
        .iter()
        .map(|s| {
            let words: Vec<String> = s.words.iter().map(|w| w.text.clone()).collect();
            tokenize_words(model.tokenizer(), &words)
        })
        .collect::<Result<_>>()?;
    Ok(Loaded {
        model,
        run,
        layout,
        specs,
        stimuli,
        tokens,
        ro,
    })
}

/// Streams the stories of `spec` through the model on this worker; worker 0 then writes
/// their responses and ingests them (basis). Every worker returns once all agree; worker
/// 0's lines come back.
pub fn ingest(
    worker: &mut Worker,
    dir: &Path,
    spec: &StimulusSpec,
) -> Result<Vec<String>> {
    let loaded = load(dir, spec);
    if !agree(worker, loaded.is_ok()) {
        return Err(loaded.err().unwrap_or_else(|| {
            err!("stopped: another worker could not load the model or the stimuli")
        }));
    }
    let l = loaded.expect("agreed");
    let shapes: Rc<Vec<StoryShape>> = Rc::new(
        l.tokens
            .iter()
            .map(|t| StoryShape {
                word_of: t.word_of.clone(),
                n_words: t.n_words,
                n_columns: l.layout.n_columns,
            })
            .collect(),
    );
    let pooled: Rc<RefCell<Vec<StoryWords>>> = Rc::default();
    let sink = pooled.clone();
    let pooling = l.run.pooling;
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, rows) = scope.new_input::<Vec<TokenRow>>();
        let (probe, _) = rows
            .pool_words(shapes, pooling)
            .inspect(move |w| sink.borrow_mut().push(w.clone()))
            .probe();
        (input, probe)
    });
    let (index, peers) = (worker.index(), worker.peers());
    let total: usize = l.tokens.iter().map(|t| t.ids.len()).sum();
    let bar = progress::bar(total as u64, "tokens (all workers)");
    let mut fed: Result<()> = Ok(());
    for (s, story) in l.tokens.iter().enumerate() {
        let mut run = || -> Result<()> {
            let all = batches(l.model.as_ref(), story, &l.run)?;
            for chunk in all.iter().skip(index).step_by(peers) {
                let rows = forward_windows(l.model.as_ref(), story, chunk, &l.run, &l.layout)?;
                for (window, rows) in chunk.iter().zip(rows) {
                    for (r, t) in window.keep.clone().enumerate() {
                        input.send((t as u32, rows.row(r).to_vec()));
                    }
                    bar.inc(window.keep.len() as u64);
                }
            }
            Ok(())
        };
        if fed.is_ok() {
            fed = run();
        }
        // Story s is complete here: the frontier passes it once every worker is done.
        input.advance_to(s as u64 + 1);
        let time = *input.time();
        worker.step_or_park_while(None, || probe.less_than(&time));
    }
    input.close();
    worker.step_or_park_while(None, || !probe.done());
    bar.finish_and_clear();
    let written = match (fed, index) {
        (Err(e), _) => Err(e),
        (Ok(()), 0) => write(dir, &l, &pooled.borrow()),
        (Ok(()), _) => Ok(Vec::new()),
    };
    if !agree(worker, written.is_ok()) {
        return Err(written
            .err()
            .unwrap_or_else(|| err!("stopped: another worker failed on the stories")));
    }
    Ok(written.expect("agreed"))
}

/// At worker 0: the responses tables of the pooled stories, then the store's basis.
fn write(dir: &Path, l: &Loaded, pooled: &[StoryWords]) -> Result<Vec<String>> {
    let work = Layout::new(dir).incoming();
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    }
    let mut tables = Vec::new();
    for (s, (spec, stim)) in l.specs.iter().zip(&l.stimuli).enumerate() {
        let Some((_, acts, empty)) = pooled.iter().find(|p| p.0 == s as u64) else {
            bail!(
                "{}: no token reached the model (an empty story?)",
                spec.stimulus.display()
            );
        };
        if *empty > 0 {
            tracing::warn!(
                "{}: {empty} words have no token and get zero activation",
                spec.stimulus.display()
            );
        }
        let acts = Array2::from_shape_vec((stim.words.len(), l.layout.n_columns), acts.clone())?;
        tables.push(responses::write_story(
            &work, spec, stim, &acts, &l.layout, &l.ro,
        )?);
    }
    let neurons = responses::write_neurons(&work, l.model.name(), &l.layout)?;
    let mut lines = vec![format!(
        "{}: {} stories, {} tokens through the model",
        l.model.name(),
        l.tokens.len(),
        l.tokens.iter().map(|t| t.ids.len()).sum::<usize>()
    )];
    lines.extend(Store::open(dir)?.ingest_responses(&tables, Some(&neurons))?);
    std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    Ok(lines)
}
