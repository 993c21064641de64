//! A one-shot update (`run`, `ingest`, `retract`, `status --refresh`) in waves of subjects.
//!
//! The runs of a few subjects at a time go through a fresh fitting dataflow (runs →
//! `fit_blocks` → gathered at worker 0); worker 0 hands the wave's fits to the writer
//! thread and goes on with the next wave while the writer lists the wave's new runs, writes
//! each subject's maps, adds its β to the group's running sums and drops it. The group test
//! is computed from those sums at the end, beside the last wave's maps. So memory is set
//! by the wave (subjects in flight × their runs × atoms × voxels) and the group sums and
//! test (atoms × voxels), never by the number of subjects or runs; the bytes are those of
//! one dataflow over everything (the sums are exact integers, the fits are per subject).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use differential_dataflow::input::Input;
use timely::worker::Worker;

use crate::engine::encoding::{self, fit_settings, FitRecord, GroupRecord, Job, Plan};
use crate::engine::local_inputs::Held;
use crate::engine::update::{list_runs, write_fits, Outcome};
use crate::error::{bail, err, Result};
use crate::operators::{block_null, BlockFit, BlockKey, BlockSums, BlockTests, FitBlocks, Gather, SubjectBeta};
use crate::store::{group_sums, Store};

/// The jobs of a few subjects, fitted together.
pub struct Wave {
    pub subjects: BTreeSet<String>,
    pub jobs: Vec<Job>,
}

/// The plan's jobs grouped by subject (label order), `per_wave` subjects a wave. Without
/// a shared file system (`held`), the subjects are taken from each process in turn (a
/// subject belongs to the process that holds its first new run, else to process 0), so
/// that a wave gives every process runs to reduce. The group's sums being exact integers,
/// the bytes do not depend on which subjects share a wave.
pub fn waves(jobs: &[Job], per_wave: usize, held: Option<&Held>) -> Vec<Wave> {
    let mut by_subject: BTreeMap<&str, Vec<Job>> = BTreeMap::new();
    for job in jobs {
        by_subject.entry(job.subject()).or_default().push(job.clone());
    }
    let mut subjects: Vec<(&str, Vec<Job>)> = by_subject.into_iter().collect();
    if let Some(held) = held {
        let owner = |jobs: &[Job]| jobs.iter().find(|j| matches!(j, Job::Reduce { .. })).map_or(0, |j| held.owner(j));
        let mut queues: BTreeMap<usize, std::collections::VecDeque<(&str, Vec<Job>)>> = BTreeMap::new();
        for (subject, jobs) in subjects {
            queues.entry(owner(&jobs)).or_default().push_back((subject, jobs));
        }
        subjects = Vec::new();
        while queues.values().any(|q| !q.is_empty()) {
            subjects.extend(queues.values_mut().filter_map(|q| q.pop_front()));
        }
    }
    subjects
        .chunks(per_wave.max(1))
        .map(|chunk| Wave {
            subjects: chunk.iter().map(|(s, _)| s.to_string()).collect(),
            jobs: chunk.iter().flat_map(|(_, j)| j.iter().cloned()).collect(),
        })
        .collect()
}

/// A run's statistics file sent to the writer: (run key, its bytes).
pub type Shipped = (String, Vec<u8>);

/// Wave `wave` through a fresh dataflow: this worker's share of the jobs in, the fits
/// gathered at worker 0 out (empty elsewhere). The dataflow runs to completion even when
/// feeding fails, so no worker is left waiting. Without a shared file system, the
/// statistics files of the runs reduced outside process 0 come to worker 0 too.
pub fn fit_wave(worker: &mut Worker, plan: &Plan, jobs: &[Job], wave: usize) -> Result<(Vec<FitRecord>, Vec<Shipped>)> {
    let settings = fit_settings(&plan.recipe);
    let (mut input, fits, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, runs) = scope.new_collection();
        let (fits, probe) = runs.fit_blocks(settings).gather();
        (input, fits, probe)
    });
    let mine = plan.dealt(jobs, wave, worker.index(), worker.peers());
    let started = std::time::Instant::now();
    let fed = encoding::feed_jobs(plan, &mine, &mut input);
    input.close();
    let reduced = started.elapsed().as_secs_f64();
    // Read while the blocks are fitted: the files this worker wrote into its store copy.
    let shipping = plan.held.as_ref().filter(|h| h.process_of(worker.index()) != 0);
    let ship = match (&fed, shipping) {
        (Ok(()), Some(_)) => {
            let keys: Vec<String> = mine.iter().filter(|j| matches!(j, Job::Reduce { .. })).map(|j| j.key()).collect();
            crate::engine::local_inputs::take_stats(&plan.dir, &keys)
        }
        _ => Ok(Vec::new()),
    };
    worker.step_or_park_while(None, || !probe.done());
    let fitted = started.elapsed().as_secs_f64() - reduced;
    tracing::info!(wave, worker = worker.index(), reduce_seconds = reduced, fit_seconds = fitted, "wave: runs read and reduced, subjects fitted");
    let (ship, unread) = match ship {
        Ok(files) => (files, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let shipped = match plan.held.is_some() {
        true => crate::operators::send_to_first(worker, ship).into_iter().map(|(_, s)| s).collect(),
        false => Vec::new(),
    };
    fed?;
    if let Some(e) = unread {
        return Err(e);
    }
    Ok((fits.take(), shipped))
}

/// A wave's subjects, their fits, and the statistics files of its runs reduced in other
/// processes.
type WaveFits = (BTreeSet<String>, Vec<(BlockKey, BlockFit)>, Vec<Shipped>);

/// The writer thread's end of a one-shot update (worker 0 of process 0).
pub struct Writer {
    send: Option<SyncSender<WaveFits>>,
    abort: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<String>>>>,
}

impl Writer {
    /// Starts the writer on the store the plan was made from: it adds the stored subjects'
    /// β to the group sums (as many maps read at once as rayon has threads), then takes
    /// the waves' fits one at a time (the workers fit the next wave meanwhile), and ends
    /// with the subjects that have no runs left, the group and the map. `group`: the
    /// subjects of the group after the update, in label order.
    pub fn spawn(plan: Plan, mut outcome: Outcome, group: Vec<String>) -> Writer {
        let (send, receive) = sync_channel::<WaveFits>(0);
        let abort = Arc::new(AtomicBool::new(false));
        let aborted = abort.clone();
        let thread = std::thread::spawn(move || -> Result<Vec<String>> {
            let mut store = Store::open(&plan.dir)?;
            let mut group = GroupSums::new(&plan, group);
            let rebuild = !outcome.refit.is_empty() || !plan.stored.is_empty();
            let mut sums_line = None;
            if rebuild {
                let started = std::time::Instant::now();
                let (read, from_sums) = group.start(&store, &plan, &outcome.refit)?;
                tracing::info!(maps = read, seconds = started.elapsed().as_secs_f64(), "group sums: stored maps read");
                sums_line = match (from_sums, read) {
                    (true, _) => Some(format!("group: updated from its stored sums ({read} stored subject map(s) read)")),
                    (false, 0) => None,
                    (false, _) => Some(format!("group: sums rebuilt from {read} stored subject map(s)")),
                };
            }
            let (mut ingested, mut written) = (Vec::new(), BTreeMap::new());
            let (mut busy, mut count) = (0.0, 0);
            let fitted: BTreeSet<String> = plan.jobs.iter().map(|j| j.subject().to_string()).collect();
            // The last wave's maps are written beside the group test, which needs only the
            // sums: the maps' gzip leaves a core idle that the test's atoms fill.
            let mut last = None;
            for (subjects, fits, shipped) in receive {
                if let Some((subjects, fits)) = last.take() {
                    busy += write_wave(&mut store, fits, subjects, &mut written)?;
                }
                let started = std::time::Instant::now();
                count += subjects.len();
                let new: Vec<_> = outcome.new.iter().filter(|(r, _)| subjects.contains(&r.subject)).cloned().collect();
                write_shipped(&store, &new, shipped)?;
                ingested.extend(list_runs(&mut store, new, &subjects, &outcome.listings)?);
                // Into the sums first: writing the maps then consumes the fits.
                for ((subject, block), fit) in &fits {
                    if let Some(beta) = fit.beta_block(subject) {
                        group.add(*block, beta)?;
                    }
                }
                busy += started.elapsed().as_secs_f64();
                let subjects: Vec<String> = subjects.into_iter().collect();
                match count >= fitted.len() {
                    true => last = Some((subjects, fits)),
                    false => busy += write_wave(&mut store, fits, subjects, &mut written)?,
                }
            }
            if aborted.load(Ordering::SeqCst) {
                if let Some((subjects, fits)) = last.take() {
                    write_wave(&mut store, fits, subjects, &mut written)?;
                }
                bail!("stopped: another worker failed before the group was written; see its error");
            }
            // Refitted subjects with no runs left (all retracted): their maps go.
            let empty: Vec<String> = outcome.refit.iter().filter(|s| !fitted.contains(s.as_str())).cloned().collect();
            written.extend(empty.iter().cloned().zip(write_fits(&mut store, Vec::new(), &empty)?));
            // Every run is listed: `run`'s noise ceiling can begin beside the group (not
            // after an update that reduced nothing, whose runs were not kept).
            if count > 0 {
                crate::stages::ceiling::start_ahead(&plan.dir);
            }
            let test = || {
                let started = std::time::Instant::now();
                let tested = group.finish();
                tracing::info!(seconds = started.elapsed().as_secs_f64(), "group tested from its sums");
                tested
            };
            let (records, sums) = match last.take() {
                Some((subjects, fits)) => std::thread::scope(|s| {
                    let tested = s.spawn(test);
                    busy += write_wave(&mut store, fits, subjects, &mut written)?;
                    tested.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })?,
                None => test()?,
            };
            tracing::info!(subjects = count, seconds = busy, "writer: subjects written and added to the group sums");
            let mut lines = std::mem::take(&mut outcome.lines);
            lines.extend(ingested);
            lines.extend(written.into_values());
            lines.extend(sums_line);
            let started = std::time::Instant::now();
            lines.extend(store.refresh_results(records, sums)?);
            tracing::info!(seconds = started.elapsed().as_secs_f64(), "group maps and networks written");
            Ok(lines)
        });
        Writer {
            send: Some(send),
            abort,
            thread: Some(thread),
        }
    }

    /// Hands a wave's fits to the writer once it has written the previous wave; false when
    /// the writer has stopped.
    pub fn write(&self, subjects: BTreeSet<String>, fits: Vec<(BlockKey, BlockFit)>, shipped: Vec<Shipped>) -> bool {
        self.send.as_ref().is_some_and(|s| s.send((subjects, fits, shipped)).is_ok())
    }

    /// Whether the writer is still running (it stops early only on an error).
    pub fn healthy(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the writer: the lines of the update, or the writer's error.
    pub fn finish(mut self) -> Result<Vec<String>> {
        drop(self.send.take());
        self.thread
            .take()
            .expect("finished once")
            .join()
            .map_err(|_| err!("the writer thread stopped unexpectedly"))?
    }

    /// Stops the writer after the wave it is writing, without the group (the update
    /// failed elsewhere: the store keeps the waves written, its results stale); its own
    /// error if it had one.
    pub fn abort(self) -> Result<Vec<String>> {
        self.abort.store(true, Ordering::SeqCst);
        self.finish()
    }
}

/// Writes into the store the statistics files other processes sent for the wave's new
/// runs `new` (each must be one of them: a key from the network never names another file).
fn write_shipped(store: &Store, new: &[(crate::io::bids::Run, String)], shipped: Vec<Shipped>) -> Result<()> {
    for (key, bytes) in shipped {
        if !new.iter().any(|(r, _)| r.key() == key) {
            bail!("another process sent statistics of run '{key}', which is not a new run of this wave");
        }
        let path = store.paths().stats(&key);
        crate::io::atomic::write_file_atomically(&path, |w| w.write_all(&bytes))?;
    }
    Ok(())
}

/// Writes a wave's subject maps (their lines into `written`); the seconds it took.
fn write_wave(store: &mut Store, fits: Vec<(BlockKey, BlockFit)>, subjects: Vec<String>, written: &mut BTreeMap<String, String>) -> Result<f64> {
    let started = std::time::Instant::now();
    written.extend(subjects.iter().cloned().zip(write_fits(store, fits, &subjects)?));
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(subjects = %subjects.join(","), seconds, "subjects' maps written");
    Ok(seconds)
}

impl Drop for Writer {
    /// A writer dropped unfinished (its worker unwound: a lost peer makes timely's threads
    /// panic) stops like [`Writer::abort`]: the waves it took stay written, and the group,
    /// maps and noise ceiling of a partial update are not begun.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.abort.store(true, Ordering::SeqCst);
        }
    }
}

/// The group sums for the store, encoded, one per voxel block.
type Packed = Vec<Vec<u8>>;

/// What an update does with a stored subject's β map in the group's sums (positions in
/// label order say the half).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    /// Not in the sums: added at its position in the group after the update.
    Add(usize),
    /// Refitted or out of the group: taken out from its position before.
    Remove(usize),
    /// In both, at positions of different halves.
    Move(usize, usize),
}

/// Stored subject maps read at once: one per rayon thread.
fn maps_at_once() -> usize {
    rayon::current_num_threads().max(1)
}

/// The stored group maps of `changes`' subjects, block by block, read side by side.
fn read_maps(store: &Store, plan: &Plan, changes: &[(String, Change)]) -> Result<Vec<Vec<(u32, SubjectBeta)>>> {
    use rayon::prelude::*;
    changes
        .par_iter()
        .map(|(subject, _)| encoding::stored_beta(plan, subject, &store.paths().subject_map(subject, store.group_map())))
        .collect()
}

/// The group's running sums, block by block, over the subjects of the group after the
/// update (their positions in label order say which half each is in); with permutations,
/// each block also keeps its subjects' β, which the sign flips need.
struct GroupSums {
    positions: BTreeMap<String, usize>,
    blocks: Vec<Option<BlockSums>>,
    errors: BTreeMap<u32, crate::operators::BlockError>,
    tests: BlockTests,
    betas: Vec<Vec<SubjectBeta>>,
}

impl GroupSums {
    fn new(plan: &Plan, group: Vec<String>) -> GroupSums {
        let blocks = plan.mask.as_ref().map_or(0, |m| m.len().div_ceil(crate::operators::BLOCK_VOXELS));
        GroupSums {
            positions: group.into_iter().enumerate().map(|(i, s)| (s, i)).collect(),
            blocks: vec![None; blocks],
            errors: BTreeMap::new(),
            tests: plan.recipe.group.block_tests(),
            betas: vec![Vec::new(); if plan.recipe.group.permutations().is_some() { blocks } else { 0 }],
        }
    }

    /// Brings in the stored subjects before the waves' fits arrive. From the store's sums
    /// when they can be trusted (not with permutations, which need every β) and that
    /// reads fewer maps: only the maps of subjects refitted or gone (taken out), moved to
    /// the other half, or missing from the sums (added) are read. Otherwise, or if the
    /// sums cannot be read or a map cannot be taken out, every stored subject of the
    /// group is added. Returns how many maps were read, and whether the sums were used.
    fn start(&mut self, store: &Store, plan: &Plan, refit: &BTreeSet<String>) -> Result<(usize, bool)> {
        let voxels = plan.mask.as_ref().map_or(0, |m| m.len());
        if let Some(index) = self.tests.perm.is_none().then(|| store.trusted_group_sums(voxels)).flatten() {
            let changes = self.changes(&index.subjects, plan, refit);
            let used = match changes.len() < plan.stored.len() {
                true => {
                    // The sums (here) and the first maps to apply (on a thread) are read
                    // side by side: neither needs the other, and an update waits for both.
                    // Should the sums fail, those maps are read again with the rest.
                    let first = &changes[..changes.len().min(maps_at_once())];
                    let (blocks, maps) = std::thread::scope(|s| {
                        let maps = s.spawn(|| read_maps(store, plan, first));
                        (store.group_sums_blocks(&index), maps.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                    });
                    blocks.and_then(|blocks| {
                        self.blocks = blocks.into_iter().map(Some).collect();
                        self.apply_read(first, maps?)?;
                        self.apply(store, plan, &changes[first.len()..])
                    })
                }
                false => Err(err!("they would need {} map(s) read, {} without them", changes.len(), plan.stored.len())),
            };
            match used {
                Ok(()) => return Ok((changes.len(), true)),
                Err(e) => {
                    tracing::info!("the group's stored sums are not used ({e}); every stored subject is added");
                    self.blocks.iter_mut().for_each(|b| *b = None);
                    self.errors.clear();
                }
            }
        }
        let every: Vec<(String, Change)> = plan.stored.iter().map(|(s, _)| (s.clone(), Change::Add(self.positions[s]))).collect();
        self.apply(store, plan, &every)?;
        Ok((every.len(), false))
    }

    /// What changes for each subject between the stored sums over `old` (label order,
    /// with their maps' checksums) and the group after the update.
    fn changes(&self, old: &[(String, String)], plan: &Plan, refit: &BTreeSet<String>) -> Vec<(String, Change)> {
        let mut changes = Vec::new();
        for (before, (s, _)) in old.iter().enumerate() {
            match self.positions.get(s) {
                Some(&after) if !refit.contains(s) => {
                    if before % 2 != after % 2 {
                        changes.push((s.clone(), Change::Move(before, after)));
                    }
                }
                _ => changes.push((s.clone(), Change::Remove(before))),
            }
        }
        let old: BTreeSet<&str> = old.iter().map(|(s, _)| s.as_str()).collect();
        changes.extend(plan.stored.iter().filter(|(s, _)| !old.contains(s.as_str())).map(|(s, _)| (s.clone(), Change::Add(self.positions[s]))));
        changes
    }

    /// Reads the stored maps of `changes` (as many at once as rayon has threads) and
    /// applies each. Taking out or moving a map that the sums do not hold is an error.
    fn apply(&mut self, store: &Store, plan: &Plan, changes: &[(String, Change)]) -> Result<()> {
        for chunk in changes.chunks(maps_at_once()) {
            let read = read_maps(store, plan, chunk)?;
            self.apply_read(chunk, read)?;
        }
        Ok(())
    }

    /// Applies `changes` with their maps' β, as [`read_maps`] gives them.
    fn apply_read(&mut self, changes: &[(String, Change)], read: Vec<Vec<(u32, SubjectBeta)>>) -> Result<()> {
        for ((_, change), blocks) in changes.iter().zip(read) {
            for (block, beta) in blocks {
                match *change {
                    Change::Add(_) => self.add(block, beta)?,
                    Change::Remove(at) => self.block(block, &beta)?.remove(at, &beta).map_err(|e| err!("group/sums.bin: {}", e.0))?,
                    Change::Move(from, to) => self.block(block, &beta)?.move_half(from, to, &beta).map_err(|e| err!("group/sums.bin: {}", e.0))?,
                }
            }
        }
        Ok(())
    }

    /// The sums of a block the stored sums hold.
    fn block(&mut self, block: u32, beta: &SubjectBeta) -> Result<&mut BlockSums> {
        match self.blocks.get_mut(block as usize) {
            Some(Some(sums)) => Ok(sums),
            _ => bail!("group/sums.bin: sub-{}: voxel block {block} is not in the stored sums", beta.0),
        }
    }

    fn add(&mut self, block: u32, beta: SubjectBeta) -> Result<()> {
        let Some(&position) = self.positions.get(&beta.0) else {
            bail!("sub-{}: a β for the group, but the subject is not in it (did a worker fail?)", beta.0);
        };
        let Some(slot) = self.blocks.get_mut(block as usize) else {
            bail!("sub-{}: a β for voxel block {block}, beyond the mask (did a worker fail?)", beta.0);
        };
        if self.errors.contains_key(&block) {
            return Ok(());
        }
        let (atoms, len) = (beta.1 as usize, beta.2 .0.len());
        let sums = slot.get_or_insert_with(|| BlockSums::new(atoms, len / atoms.max(1)));
        match sums.add(position, &beta) {
            Ok(()) if self.tests.perm.is_some() => self.betas[block as usize].push(beta),
            Ok(()) => {}
            Err(e) => {
                self.errors.insert(block, e);
            }
        }
        Ok(())
    }

    /// Every block's tests (or the error of a subject that could not enter), as the
    /// dataflow's group operator gives them; and the sums for the store, encoded, when
    /// every block has them, none failed and there are no permutations (whose flips need
    /// every β). Blocks go side by side (rayon), each block's sums dropped once tested
    /// and encoded, so the sums and all the tests are never held at once.
    fn finish(self) -> Result<(Vec<GroupRecord>, Option<Packed>)> {
        use rayon::prelude::*;
        let GroupSums { blocks, mut errors, tests, betas, positions } = self;
        let keep = tests.perm.is_none() && errors.is_empty() && blocks.iter().all(Option::is_some) && positions.len() >= 2;
        let mut betas = betas.into_iter();
        let items: Vec<_> = blocks.into_iter().enumerate().map(|(b, sums)| (b as u32, sums, errors.remove(&(b as u32)), betas.next().unwrap_or_default())).collect();
        let done: Vec<(Option<GroupRecord>, Option<Vec<u8>>)> = items
            .into_par_iter()
            .map(|(b, sums, error, mut betas)| -> Result<_> {
                if let Some(e) = error {
                    return Ok((Some((b, Err(e))), None));
                }
                let Some(sums) = sums else { return Ok((None, None)) };
                let null = tests.perm.map(|p| {
                    betas.sort_by(|x, y| x.0.cmp(&y.0));
                    block_null(&betas.iter().collect::<Vec<_>>(), p)
                });
                let packed = keep.then(|| group_sums::encode(&sums));
                Ok((Some((b, Ok(sums.test(null, tests.halves_pass)))), packed))
            })
            .collect::<Result<_>>()?;
        let (records, packed): (Vec<_>, Vec<_>) = done.into_iter().unzip();
        let packed: Option<Packed> = keep.then(|| packed.into_iter().flatten().collect());
        Ok((records.into_iter().flatten().collect(), packed))
    }
}
