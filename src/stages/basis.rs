//! `cortexflow basis`: from AN responses (one `responses` file per story) to K temporal
//! atoms and sparse AN codes, by online dictionary learning (default) or incremental PCA.
//!
//! The samples are the ANs' time series over all stories (stories concatenated in time,
//! each column centred and ℓ2-normalised); atoms are written back per story.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{err, bail, Result};
use crate::io::parquet::{read_codes, read_responses, tr_metadata, write_table, write_table_with, Codes, Column, ATOM_GRAM_KEY};
use crate::kernels::courses;
use crate::io::atomic::write_file_atomically;
use crate::kernels::dictionary::{self, normalise_columns, OdlOptions, SkipReason};
use crate::kernels::ipca::Ipca;
use crate::kernels::lasso::LassoOptions;
use ndarray::{s, Array2, ArrayView2, ShapeBuilder};

/// The basis method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Odl,
    Pca,
}

/// Options of `basis`.
#[derive(Debug, Clone, PartialEq)]
pub struct BasisOptions {
    pub method: Method,
    pub odl: OdlOptions,
}

/// What `basis` learned, for the summary.
pub struct BasisSummary {
    pub files: Vec<PathBuf>,
    pub lines: Vec<String>,
}

/// The stories' responses concatenated in time (T × N) with the story names and lengths
/// and the AN ids; every file must hold the same ANs in the same order.
/// A story of the basis: its name and scan clock (scans, and the TR when recorded).
#[derive(Debug, Clone)]
pub struct Story {
    pub name: String,
    pub scans: usize,
    pub tr: Option<f64>,
}

fn read_stories(inputs: &[PathBuf]) -> Result<(Vec<Story>, Vec<u64>, Array2<f64>)> {
    let mut stories: Vec<Story> = Vec::new();
    let mut blocks = Vec::new();
    let mut ids: Option<(PathBuf, Vec<u64>)> = None;
    for path in inputs {
        let table = read_responses(path)?;
        if table.delays.iter().any(Option::is_some) {
            bail!("{}: FIR responses (one row per delay) are not a basis input; use responses made with --hrf spm or glover", path.display());
        }
        match &ids {
            None => ids = Some((path.clone(), table.an_ids.clone())),
            Some((first, prev)) if *prev != table.an_ids => {
                bail!("{}: its ANs differ from those of {} (every story needs the same ANs, in the same order)", path.display(), first.display())
            }
            _ => {}
        }
        stories.push(Story {
            name: table.story.clone(),
            scans: table.values.ncols(),
            tr: table.tr,
        });
        blocks.push(table.values.t().mapv(f64::from)); // T_s × N
    }
    let Some((_, an_ids)) = ids else {
        bail!("--responses: give at least one responses file");
    };
    // Column-major (each AN's series contiguous), as the dictionary fit gathers its
    // mini-batches by AN.
    let scans: usize = blocks.iter().map(|b| b.nrows()).sum();
    let mut x = Array2::zeros((scans, an_ids.len()).f());
    let mut row = 0;
    for b in &blocks {
        x.slice_mut(s![row..row + b.nrows(), ..]).assign(b);
        row += b.nrows();
    }
    Ok((stories, an_ids, x))
}

/// The fitted basis: atoms (T × K), codes (K × N used), the objective trace, and a note.
struct Fitted {
    atoms: Array2<f64>,
    codes: Array2<f64>,
    trace: Vec<f64>,
    note: String,
}

fn fit(xs: ArrayView2<f64>, opt: &BasisOptions, out: &Path, stories: &[Story]) -> Result<Fitted> {
    let k = opt.odl.atoms;
    let lasso = LassoOptions {
        lambda: opt.odl.lambda,
        positive: opt.odl.positive_codes,
        tol: 1e-6,
        max_sweeps: 1000,
        algorithm: opt.odl.lasso,
    };
    match opt.method {
        Method::Odl => {
            let fit = dictionary::fit(xs, &opt.odl)?;
            let (objective, codes) = dictionary::objective(fit.atoms.view(), xs, &lasso);
            let note = format!("online dictionary learning: {} epochs, {} steps, final objective ½‖X − D·A‖² + λ‖A‖₁ = {objective:.6}", fit.epochs, fit.steps);
            let mut trace = fit.objective_trace.clone();
            trace.push(objective / xs.ncols() as f64);
            write_state(out, &fit, opt, stories)?;
            Ok(Fitted { atoms: fit.atoms, codes, trace, note })
        }
        Method::Pca => {
            let mut ipca = Ipca::new(xs.nrows(), k);
            for lo in (0..xs.ncols()).step_by(opt.odl.batch.max(k)) {
                let hi = (lo + opt.odl.batch.max(k)).min(xs.ncols());
                ipca.partial_fit(xs.slice(s![.., lo..hi]))?;
            }
            let codes = ipca.transform(xs);
            let explained: f64 = ipca.singular_values.iter().map(|s| s * s).sum();
            let note = format!(
                "incremental PCA: {} components, Σσ² = {explained:.6}",
                ipca.components.ncols()
            );
            Ok(Fitted { atoms: ipca.components.clone(), codes, trace: vec![], note })
        }
    }
}

/// One atoms table per story (its rows of the atoms).
fn write_atoms(out: &Path, atoms: &Array2<f64>, stories: &[Story]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut row = 0;
    for story in stories {
        let rows = atoms.slice(s![row..row + story.scans, ..]);
        files.push(write_story_atoms(out, story, rows)?);
        row += story.scans;
    }
    Ok(files)
}

/// `out/atoms/<story>.parquet`: the story's atoms (T × K), with its TR when known.
fn write_story_atoms(out: &Path, story: &Story, atoms: ArrayView2<f64>) -> Result<PathBuf> {
    let path = out.join("atoms").join(format!("{}.parquet", story.name));
    let (t, k) = atoms.dim();
    let values: Vec<f32> = (0..k)
        .flat_map(|j| atoms.column(j).to_vec())
        .map(|v| v as f32)
        .collect();
    let meta = story.tr.map(tr_metadata);
    write_table_with(
        &path,
        "atoms",
        Some(t),
        vec![
            Column::U32(vec![1; k]),
            Column::U16((0..k as u16).collect()),
            Column::Utf8(vec![story.name.clone(); k]),
            Column::F32List { size: t, values },
        ],
        meta.as_ref().map_or(&[], |m| m.as_slice()),
    )?;
    Ok(path)
}

/// The codes table (non-zeros) and each AN's dominant atom (subgroups); returns the
/// files, the number of coded ANs and the sub-group size of each atom.
fn write_codes(
    out: &Path,
    codes: &Array2<f64>,
    keep: &[usize],
    an_ids: &[u64],
) -> Result<(Vec<PathBuf>, usize, Vec<usize>)> {
    let mut c = Codes::default();
    let mut sizes = vec![0usize; codes.nrows()];
    let mut coded = 0;
    for (i, &col) in keep.iter().enumerate() {
        let before = c.an_ids.len();
        for (j, &w) in codes.column(i).iter().enumerate() {
            if w != 0.0 {
                c.an_ids.push(an_ids[col]);
                c.atoms.push(j as u16);
                c.weights.push(w as f32);
                sizes[j] += 1;
            }
        }
        coded += usize::from(c.an_ids.len() > before);
    }
    let codes_path = out.join("codes.parquet");
    write_table(
        &codes_path,
        "codes",
        None,
        vec![
            Column::U64(c.an_ids.clone()),
            Column::U16(c.atoms.clone()),
            Column::F32(c.weights.clone()),
        ],
    )?;
    // No network yet: `map` fills it.
    let subgroups_path = out.join("subgroups.parquet");
    crate::stages::mapping::write_subgroups(&subgroups_path, &c, &|_| None)?;
    Ok((vec![codes_path, subgroups_path], coded, sizes))
}

/// Each used AN's correlations with the atoms and norm per half of the time axis, and the
/// atoms' Gram matrices in the table's metadata (an_atom.parquet): what `map` needs to
/// correlate ANs with a network's course (see `kernels::courses`).
fn write_an_atom(out: &Path, xs: ArrayView2<f64>, atoms: ArrayView2<f64>, stories: &[Story], ids: &[u64]) -> Result<PathBuf> {
    let lengths: Vec<usize> = stories.iter().map(|s| s.scans).collect();
    let stats = courses::an_atom_stats(xs, atoms, &lengths);
    if stats.gram.iter().any(|g| g.iter().any(|v| !v.is_finite())) {
        bail!("the atoms hold values that are not numbers: no an_atom table can be written");
    }
    // Symmetrised, so the reader's symmetry check holds bit for bit: (G + Gᵀ)/2.
    let grams: Vec<Vec<Vec<f64>>> = stats
        .gram
        .iter()
        .map(|g| g.rows().into_iter().enumerate().map(|(i, r)| r.iter().enumerate().map(|(j, v)| 0.5 * (v + g[[j, i]])).collect()).collect())
        .collect();
    let k = atoms.ncols();
    let rows: Vec<(usize, usize)> = (0..ids.len()).flat_map(|u| [(u, 0), (u, 1)]).collect();
    let path = out.join("an_atom.parquet");
    write_table_with(
        &path,
        "an_atom",
        Some(k),
        vec![
            Column::U64(rows.iter().map(|&(u, _)| ids[u]).collect()),
            Column::U16(rows.iter().map(|&(_, h)| h as u16).collect()),
            Column::F32(rows.iter().map(|&(u, h)| stats.norms[h][u] as f32).collect()),
            Column::F32List { size: k, values: rows.iter().flat_map(|&(u, h)| stats.r[h].row(u).to_vec()).map(|v| v as f32).collect() },
        ],
        &[(ATOM_GRAM_KEY, serde_json::to_string(&grams)?)],
    )?;
    Ok(path)
}

/// The mean objective of each epoch, the last row the final codes' objective.
fn write_objective(out: &Path, trace: &[f64]) -> Result<PathBuf> {
    let path = out.join("objective.tsv");
    write_file_atomically(&path, |w| {
        writeln!(w, "epoch\tmean_objective")?;
        for (e, v) in trace.iter().enumerate() {
            let label = if e + 1 == trace.len() {
                "final".to_string()
            } else {
                (e + 1).to_string()
            };
            writeln!(w, "{label}\t{v}")?;
        }
        Ok(())
    })?;
    Ok(path)
}

/// Learns the basis of the responses tables `inputs` and writes it under `out`: atoms per
/// story, codes, sub-groups, the objective trace and (ODL) the state to continue from.
pub fn run(inputs: &[PathBuf], opt: &BasisOptions, out: &Path) -> Result<BasisSummary> {
    if inputs.is_empty() {
        bail!("--responses: give at least one responses file");
    }
    let k = opt.odl.atoms;
    if k == 0 {
        bail!("--atoms must be at least 1");
    }
    if opt.method == Method::Odl && !(opt.odl.lambda.is_finite() && opt.odl.lambda > 0.0) {
        bail!("--lambda must be a positive number, got {}", opt.odl.lambda);
    }
    if opt.odl.max_epochs == 0 || opt.odl.batch == 0 {
        bail!("--epochs and --batch must be at least 1");
    }
    let (stories, an_ids, mut x) = read_stories(inputs)?;
    let skipped = normalise_columns(&mut x);
    let keep: Vec<usize> = {
        let bad: std::collections::HashSet<usize> = skipped.iter().map(|s| s.0).collect();
        (0..x.ncols()).filter(|c| !bad.contains(c)).collect()
    };
    let constant = skipped
        .iter()
        .filter(|s| s.1 == SkipReason::Constant)
        .count();
    let non_finite = skipped.len() - constant;
    if k > keep.len() {
        bail!("--atoms {k} is larger than the {} usable AN time series ({constant} constant and {non_finite} non-finite left out)", keep.len());
    }
    let xs = dictionary::gather_columns(x.view(), &keep);
    drop(x);
    let start = Instant::now();
    let fitted = fit(xs.view(), opt, out, &stories)?;
    let secs = start.elapsed().as_secs_f64();
    let mut files = write_atoms(out, &fitted.atoms, &stories)?;
    let (code_files, coded, sizes) = write_codes(out, &fitted.codes, &keep, &an_ids)?;
    files.extend(code_files);
    let used: Vec<u64> = keep.iter().map(|&c| an_ids[c]).collect();
    files.push(write_an_atom(out, xs.view(), fitted.atoms.view(), &stories, &used)?);
    if !fitted.trace.is_empty() {
        files.push(write_objective(out, &fitted.trace)?);
    }
    let scans: usize = stories.iter().map(|s| s.scans).sum();
    let lines = vec![
        fitted.note,
        format!("{} ANs: {} used, {constant} constant and {non_finite} non-finite left out; {} stories, {} scans", an_ids.len(), keep.len(), stories.len(), scans),
        format!("{coded} of {} ANs ({:.1}%) have a non-zero code; mean sub-group size {:.1}", keep.len(), 100.0 * coded as f64 / keep.len() as f64, sizes.iter().sum::<usize>() as f64 / sizes.len() as f64),
        format!("fitted in {secs:.2} s"),
    ];
    Ok(BasisSummary { files, lines })
}

/// The state needed to continue an online fit: atoms and statistics as little-endian f64
/// files, and a manifest with shapes, seed and version.
fn write_state(
    out: &Path,
    fit: &dictionary::OdlFit,
    opt: &BasisOptions,
    stories: &[Story],
) -> Result<()> {
    let dir = out.join("state");
    let f64_file = |name: &str, a: &Array2<f64>| -> Result<()> {
        let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_file_atomically(&dir.join(name), |w| w.write_all(&bytes))?;
        Ok(())
    };
    f64_file("atoms.f64", &fit.atoms)?;
    f64_file("stats_aa.f64", &fit.stats_aa)?;
    f64_file("stats_xa.f64", &fit.stats_xa)?;
    let manifest = serde_json::json!({
        "basis_version": 1,
        "method": "odl",
        "layout": "row-major little-endian f64: atoms T×K, stats_aa K×K (Σ a·aᵀ, forgetting-weighted), stats_xa T×K (Σ x·aᵀ)",
        "t": fit.atoms.nrows(), "k": fit.atoms.ncols(),
        "lambda": opt.odl.lambda, "positive": opt.odl.positive_codes, "batch": opt.odl.batch, "seed": opt.odl.seed,
        "epochs": fit.epochs, "steps": fit.steps,
        "stories": stories.iter().map(|s| serde_json::json!({"story": s.name, "scans": s.scans})).collect::<Vec<_>>(),
    });
    write_file_atomically(&dir.join("state.json"), |w| {
        w.write_all(
            serde_json::to_string_pretty(&manifest)
                .unwrap_or_default()
                .as_bytes(),
        )
    })?;
    Ok(())
}

/// `basis --extend DIR`: extends the atoms of an existing basis (DIR, written by `basis`)
/// to new stories with the codes held fixed (D_new = X_new·Aᵀ(A·Aᵀ + εI)⁻¹, ε = 1e-6·tr(A·Aᵀ)/K),
/// writing DIR/atoms/<story>.parquet for each; the atoms of earlier stories are untouched.
pub fn extend(dir: &Path, inputs: &[PathBuf]) -> Result<BasisSummary> {
    let codes_path = dir.join("codes.parquet");
    let codes = read_codes(&codes_path)?;
    let (ids, atoms_of, weights) = (codes.an_ids, codes.atoms, codes.weights);
    let k = atoms_of.iter().map(|&a| a as usize + 1).max().unwrap_or(0);
    if k == 0 {
        bail!("{}: no codes to extend with", codes_path.display());
    }
    let mut files = Vec::new();
    let mut lines = Vec::new();
    for path in inputs {
        let table = read_responses(path)?;
        let index: std::collections::HashMap<u64, usize> = table
            .an_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let mut x = table.values.t().mapv(f64::from); // T × N
        normalise_columns(&mut x);
        let mut a = Array2::<f64>::zeros((k, x.ncols()));
        let mut missing = 0;
        for ((&id, &atom), &w) in ids.iter().zip(&atoms_of).zip(&weights) {
            match index.get(&id) {
                Some(&col) => a[[atom as usize, col]] = w as f64,
                None => missing += 1,
            }
        }
        if missing > 0 {
            bail!(
                "{}: {missing} coded ANs of {} are not in this story's responses",
                path.display(),
                codes_path.display()
            );
        }
        let gram_trace: f64 = (0..k).map(|j| a.row(j).dot(&a.row(j))).sum();
        let new = dictionary::extend_atoms(x.view(), a.view(), 1e-6 * gram_trace / k as f64)
            .map_err(|e| err!("{}: {e}", path.display()))?;
        let t = new.nrows();
        let story = Story {
            name: table.story.clone(),
            scans: t,
            tr: table.tr,
        };
        let out = write_story_atoms(dir, &story, new.view())?;
        lines.push(format!(
            "extended {k} atoms to story '{}' ({t} scans)",
            table.story
        ));
        files.push(out);
    }
    Ok(BasisSummary { files, lines })
}
