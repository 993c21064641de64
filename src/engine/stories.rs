//! New stories through the recipe's model, on every worker of every process: each worker
//! runs its share of the forward passes (batches of context windows, dealt by position),
//! `pool_words` pools each story's words at worker 0 once the frontier has passed it, and
//! the writer turns them into responses on the scan clock and learns or extends the basis.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{bail, err, Error, Result};
use crate::io::activation_cache::{ActivationCache, CachedStory, StoryKey};
use crate::io::stimulus::Stimulus;
use crate::model::align::{tokenize_words, StoryTokens};
use crate::model::extract::{batches, forward_windows, NeuronLayout, RunOptions};
use crate::model::LanguageModel;
use crate::operators::{agree, least, PoolWords, StoryShape, StoryWords, TokenRow};
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

/// What every worker prepares: the model, the checked stimuli and their tokens, and each
/// story's activation-cache key when the cache is on.
struct Loaded {
    model: Box<dyn LanguageModel>,
    run: RunOptions,
    layout: NeuronLayout,
    specs: Vec<RunSpec>,
    stimuli: Vec<Stimulus>,
    tokens: Vec<StoryTokens>,
    ro: ResponseOptions,
    cache: Option<(ActivationCache, Vec<StoryKey>)>,
}

fn load(dir: &Path, spec: &StimulusSpec) -> Result<Loaded> {
    let store = Store::open_reader(dir)?;
    let (taps, ro) = settings(&store.recipe, dir, spec.tr)?;
    let specs = spec.runs()?;
    let stimuli = responses::check_all(&specs, &ro)?;
    let (model, run, layout) = taps.load()?;
    let words: Vec<Vec<String>> = stimuli.iter().map(|s| s.words.iter().map(|w| w.text.clone()).collect()).collect();
    let tokens = words.iter().map(|w| tokenize_words(model.tokenizer(), w)).collect::<Result<_>>()?;
    let cache = match ActivationCache::from_env()? {
        Some(cache) => {
            // Everything but the model's path, which the key spells by its files.
            let settings = format!(
                "taps {:?} layers {:?} context {} batch {} pooling {:?} dtype {:?}",
                taps.taps, layout.blocks, taps.context, taps.batch, taps.pooling, taps.dtype
            );
            let keys = words.iter().map(|w| StoryKey::new(&taps.model, &settings, w)).collect::<Result<_>>()?;
            Some((cache, keys))
        }
        None => None,
    };
    Ok(Loaded {
        model,
        run,
        layout,
        specs,
        stimuli,
        tokens,
        ro,
        cache,
    })
}

/// Streams the stories of `spec` through the model on this worker; worker 0 then writes
/// their responses and ingests them (basis). Every worker returns once all agree; worker
/// 0's lines come back. `only`: the batches go to the first `only` workers (process 0's,
/// in a cluster without a shared file system, where the others [`take_part`]).
pub fn ingest(
    worker: &mut Worker,
    dir: &Path,
    spec: &StimulusSpec,
    only: Option<usize>,
) -> Result<Vec<String>> {
    let loaded = load(dir, spec);
    if !agree(worker, loaded.is_ok()) {
        return Err(loaded.err().unwrap_or_else(|| {
            err!("stopped: another worker could not load the model or the stimuli")
        }));
    }
    let l = loaded.expect("agreed");
    // Workers that take part without the stories learn how many there are.
    least(worker, l.tokens.len() as u64);
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
    let (index, peers) = (worker.index(), only.unwrap_or(worker.peers()).min(worker.peers()));
    // Stories the writer found in the activation cache skip the forward pass on every
    // worker (each says yes but the writer, whose cache decides).
    let hits: Vec<Option<CachedStory>> = (0..l.tokens.len())
        .map(|s| match (&l.cache, index) {
            (Some((cache, keys)), 0) => cache.get(&keys[s], l.tokens[s].n_words, l.layout.n_columns),
            _ => None,
        })
        .collect();
    let cached: Vec<bool> = hits.iter().map(|h| agree(worker, index != 0 || h.is_some())).collect();
    let total: usize = l.tokens.iter().zip(&cached).filter(|(_, &c)| !c).map(|(t, _)| t.ids.len()).sum();
    let bar = progress::bar(total as u64, "tokens (all workers)");
    let mut fed: Result<()> = Ok(());
    for (s, story) in l.tokens.iter().enumerate() {
        let mut run = || -> Result<()> {
            let all = batches(l.model.as_ref(), story, &l.run)?;
            for chunk in all.iter().skip(index).step_by(peers) {
                let rows = progress::with_layers(&bar, || forward_windows(l.model.as_ref(), story, chunk, &l.run, &l.layout))?;
                for (window, rows) in chunk.iter().zip(rows) {
                    for (r, t) in window.keep.clone().enumerate() {
                        input.send((t as u32, rows.row(r).to_vec()));
                    }
                    bar.inc(window.keep.len() as u64);
                }
            }
            Ok(())
        };
        // A cached story sends nothing, but its time passes like any other's.
        if fed.is_ok() && !cached[s] {
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
    for (s, hit) in hits.into_iter().enumerate() {
        if let Some(h) = hit {
            pooled.borrow_mut().push((s as u64, h.values, h.empty));
        }
    }
    let written = match (fed, index) {
        (Err(e), _) => Err(e),
        (Ok(()), 0) => write(dir, &l, &pooled.borrow(), &cached),
        (Ok(()), _) => Ok(Vec::new()),
    };
    if !agree(worker, written.is_ok()) {
        return Err(written
            .err()
            .unwrap_or_else(|| err!("stopped: another worker failed on the stories")));
    }
    Ok(written.expect("agreed"))
}

/// A worker's part in [`ingest`] where it has neither the store nor the stimuli (a
/// process other than 0 without a shared file system): the same barriers and dataflow,
/// no batches.
pub fn take_part(worker: &mut Worker) -> Result<()> {
    if !agree(worker, true) {
        return Err(err!("stopped: another worker could not load the model or the stimuli"));
    }
    let stories = least(worker, u64::MAX);
    let (input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, rows) = scope.new_input::<Vec<TokenRow>>();
        let (probe, _) = rows.pool_words(Rc::new(Vec::new()), crate::model::extract::Pooling::Mean).inspect(|_| {}).probe();
        (input, probe)
    });
    for _ in 0..stories {
        agree(worker, true);
    }
    drop(input);
    worker.step_or_park_while(None, || !probe.done());
    match agree(worker, true) {
        true => Ok(()),
        false => Err(err!("stopped: another worker failed on the stories")),
    }
}

/// At worker 0: the responses tables of the pooled stories (those computed kept in the
/// activation cache when it is on), then the store's basis.
fn write(dir: &Path, l: &Loaded, pooled: &[StoryWords], cached: &[bool]) -> Result<Vec<String>> {
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
        if let (Some((cache, keys)), false) = (&l.cache, cached[s]) {
            // The cache only saves time: a failure to keep an entry is said, not fatal.
            if let Err(e) = cache.put(&keys[s], acts, *empty, stim.words.len(), l.layout.n_columns) {
                tracing::warn!("activation cache: story '{}' not kept ({e})", spec.story);
            }
        }
        let acts = Array2::from_shape_vec((stim.words.len(), l.layout.n_columns), acts.clone())?;
        tables.push(responses::write_story(
            &work, spec, stim, &acts, &l.layout, &l.ro,
        )?);
    }
    let neurons = responses::write_neurons(&work, l.model.name(), &l.layout)?;
    let through = |c: bool| l.tokens.iter().zip(cached).filter(move |(_, &h)| h == c);
    let hits = through(true).count();
    let from_cache = match hits {
        0 => String::new(),
        n => format!(" ({n} from the activation cache)"),
    };
    let mut lines = vec![format!(
        "{}: {} stories, {} tokens through the model{from_cache}",
        l.model.name(),
        l.tokens.len(),
        through(false).map(|(t, _)| t.ids.len()).sum::<usize>()
    )];
    lines.extend(Store::open(dir)?.ingest_responses(&tables, Some(&neurons))?);
    std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    Ok(lines)
}
