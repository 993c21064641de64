//! `cortexflow map`: each atom's group map against the networks of an atlas (overlap rate,
//! Dice, IoU, spatial r), the atom's assignment to its best network, the AN sub-groups that
//! inherit it, and the organisation metrics of every model and layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{bail, Context, Result};
use crate::io::atlas::{self, Template};
use crate::io::nifti::{self, Mask};
use crate::io::parquet::{read_an_atom, read_codes, read_neurons, write_table, Codes, Column, Neuron};
use crate::kernels::organisation::{organisation, AnPlace, Place};
use crate::kernels::overlap::{best, Overlap, OverlapSums};
use ndarray::{ArrayView2, Axis, CowArray, Ix2};

use crate::io::embedded::{self, BuiltinAtlas};
use crate::stages::profiles::{subject_profiles, SubjectMap, Verify};
use crate::stages::ties::{network_ties, stability, TieRule};

/// The overlap measure that ranks networks and decides assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Score {
    Iou,
    Dice,
    OverlapRate,
    Corr,
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Score::Iou => "IoU",
            Score::Dice => "Dice",
            Score::OverlapRate => "overlap rate",
            Score::Corr => "spatial r",
        })
    }
}

impl Score {
    fn of(self, o: &Overlap) -> f64 {
        match self {
            Score::Iou => o.iou,
            Score::Dice => o.dice,
            Score::OverlapRate => o.overlap_rate,
            Score::Corr => o.corr,
        }
    }
}

/// Settings of `map`.
#[derive(Debug, Clone, PartialEq)]
pub struct MapOptions {
    pub atlas: String,
    pub atlas_threshold: f64,
    pub sphere_radius_mm: Option<f64>,
    pub score: Score,
    pub assign_threshold: f64,
    /// Variogram-matched surrogates of each non-empty atom map for the spatial null of its
    /// scores (0: no p values).
    pub surrogates: usize,
    pub surrogate_seed: u64,
    /// How ANs are tied to networks, and the |r| the `course` rule needs.
    pub ties: TieRule,
    pub tie_r: f64,
}

/// The templates of `--atlas` (a built-in name or a file) on the data mask. Built-in
/// atlases are written under `out/atlas/` so the results say what they were mapped to.
pub fn templates(opt: &MapOptions, mask: &Mask, out: &Path) -> Result<Vec<Template>> {
    let found = match embedded::atlas(&opt.atlas) {
        Some(BuiltinAtlas::Labels { grids, names }) => {
            // The grid that matches the data (4 mm, then 2 mm), else the finer one, resampled;
            // written under out/atlas/ and read back from there.
            let mut chosen = None;
            for (file, bytes) in grids {
                let path = out.join("atlas").join(file);
                crate::io::atomic::write_file_atomically(&path, |w| w.write_all(bytes))?;
                let image = nifti::read_image(&path)?;
                if let Some((unused, _)) = chosen.replace((path, image)) {
                    let _ = std::fs::remove_file(unused);
                }
                if chosen
                    .as_ref()
                    .is_some_and(|(_, i)| i.header.grid.matches(&mask.grid, 1e-4))
                {
                    break;
                }
            }
            let (path, image) = chosen.expect("two grids");
            let names = atlas::read_label_names(&path.with_extension("csv"), names)?;
            atlas::label_templates(&image, &names, mask)
        }
        Some(BuiltinAtlas::Coordinates {
            file,
            text,
            default_radius_mm,
        }) => {
            let rois = atlas::read_coordinates(
                Path::new(file),
                text,
                opt.sphere_radius_mm.unwrap_or(default_radius_mm),
            )?;
            atlas::sphere_templates(&rois, mask)
        }
        None => from_file(Path::new(&opt.atlas), opt, mask)?,
    };
    if found.iter().all(|t| t.size() == 0) {
        bail!(
            "{}: no voxel of any network falls inside the data mask ({} voxels) — is the atlas in the data's space (MNI)?",
            opt.atlas,
            mask.len()
        );
    }
    Ok(found)
}

/// A user atlas: a 3-D label or 4-D probability NIfTI (names from a `label,name` CSV beside
/// it with the same stem, when there is one), or a coordinate table.
fn from_file(path: &Path, opt: &MapOptions, mask: &Mask) -> Result<Vec<Template>> {
    let name = path.to_string_lossy().to_lowercase();
    if !path.is_file() {
        bail!(
            "--atlas {}: neither a built-in atlas ({}) nor a file",
            path.display(),
            embedded::ATLAS_NAMES.join(", ")
        );
    }
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        let stem = name.trim_end_matches(".gz").trim_end_matches(".nii").len();
        let csv = PathBuf::from(format!("{}.csv", &path.to_string_lossy()[..stem]));
        let names = if csv.is_file() {
            let text = std::fs::read_to_string(&csv)
                .with_context(|| format!("{}: cannot read", csv.display()))?;
            atlas::read_label_names(&csv, &text)?
        } else {
            BTreeMap::new()
        };
        let image = nifti::read_image(path)?;
        return Ok(if image.data.dim().3 > 1 {
            atlas::probability_templates(&image, &names, opt.atlas_threshold, mask)
        } else {
            atlas::label_templates(&image, &names, mask)
        });
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let rois = atlas::read_coordinates(path, &text, opt.sphere_radius_mm.unwrap_or(5.0))?;
    Ok(atlas::sphere_templates(&rois, mask))
}

/// Split-half Dice per atom from `group`'s atoms.tsv.
fn split_half(group: &Path, atoms: usize) -> Result<Vec<f64>> {
    let path = group.join("atoms.tsv");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let dice: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split('\t')
                .nth(2)
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect();
    if dice.len() != atoms {
        bail!("{}: {} rows for {atoms} atoms", path.display(), dice.len());
    }
    Ok(dice)
}

/// What `map` found, for the summary and the tests.
pub struct MapSummary {
    pub files: Vec<PathBuf>,
    pub assignment: Assignment,
    /// One line per atom: its network and score, or why it is unassigned.
    pub lines: Vec<String>,
}

/// How many atoms were assigned a network, and by which rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub atoms: usize,
    pub networks: usize,
    pub atlas: String,
    pub score: Score,
    pub threshold: f64,
    pub assigned: usize,
}

impl std::fmt::Display for Assignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} atoms against {} networks of {} ({} ≥ {}): {} assigned",
            self.atoms, self.networks, self.atlas, self.score, self.threshold, self.assigned
        )
    }
}

impl Assignment {
    /// The assignment recorded in an `atom_fbn` table made with `opt`.
    pub fn of_table(rows: &[crate::io::parquet::AtomFbn], opt: &MapOptions) -> Assignment {
        let atoms: std::collections::BTreeSet<u16> = rows.iter().map(|r| r.atom).collect();
        let networks: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r.fbn.as_str()).collect();
        Assignment {
            atoms: atoms.len(),
            networks: networks.len(),
            atlas: opt.atlas.clone(),
            score: opt.score,
            threshold: opt.assign_threshold,
            assigned: rows.iter().filter(|r| r.assigned).count(),
        }
    }
}

/// Every atom against every network: the overlap rows (atom, network, measures,
/// assigned), each atom's assigned network and its best score, and (with surrogates) each
/// row's spatial-null p and its Benjamini–Hochberg q over all rows.
struct Matches {
    rows: Vec<(usize, usize, Overlap, bool)>,
    p_spatial: Vec<f64>,
    q_spatial: Vec<f64>,
    assigned: Vec<Option<usize>>,
    best_score: Vec<f64>,
}

fn match_atoms(z: ArrayView2<f64>, sig: ArrayView2<f64>, temps: &[Template], opt: &MapOptions) -> Matches {
    let atoms = z.nrows();
    let mut rows: Vec<(usize, usize, Overlap, bool)> = Vec::new();
    let mut assigned: Vec<Option<usize>> = vec![None; atoms];
    let mut best_score = vec![f64::NAN; atoms];
    for (a, (zr, sr)) in z.axis_iter(Axis(0)).zip(sig.axis_iter(Axis(0))).enumerate() {
        let (zr, m): (Vec<f64>, Vec<bool>) = zr
            .iter()
            .zip(sr)
            .map(|(&z, &s)| (z, s != 0.0 && s.is_finite()))
            .unzip();
        let measures: Vec<Overlap> = temps
            .iter()
            .map(|t| OverlapSums::over(&zr, &m, &t.voxels).measures())
            .collect();
        let scores: Vec<f64> = measures.iter().map(|o| opt.score.of(o)).collect();
        if let Some((t, pass)) = best(&scores, opt.assign_threshold) {
            best_score[a] = scores[t];
            if pass {
                assigned[a] = Some(t);
            }
        }
        for (t, o) in measures.into_iter().enumerate() {
            rows.push((a, t, o, assigned[a] == Some(t)));
        }
    }
    let nan = vec![f64::NAN; rows.len()];
    Matches {
        rows,
        p_spatial: nan.clone(),
        q_spatial: nan,
        assigned,
        best_score,
    }
}

/// The spatial null of every row's score: each atom's z map's surrogates (variogram-matched,
/// [`crate::kernels::surrogates`]) on the voxels where every atom's z is a number,
/// thresholded to as many voxels as its map (the largest |z|: what FDR, z cuts and max-t
/// keep; a `min_cluster` filter is not applied to them) and scored against every network
/// as the map was. An empty map, or a score that is not a number, is not tested (p NaN); q
/// is Benjamini–Hochberg over the tested rows. Returns a note when no smoothing width fits
/// the grid (the surrogates are then plain permutations).
fn spatial_null(m: &mut Matches, z: ArrayView2<f64>, sig: ArrayView2<f64>, mask: &Mask, temps: &[Template], opt: &MapOptions) -> Option<String> {
    use crate::kernels::surrogates::{p_value, rng_for, Scratch, SpatialNull};
    use rayon::prelude::*;
    let all: Vec<[usize; 3]> = mask.ijk().collect();
    let keep: Vec<usize> = (0..z.ncols()).filter(|&v| z.column(v).iter().all(|x| x.is_finite())).collect();
    let ijk: Vec<[usize; 3]> = keep.iter().map(|&v| all[v]).collect();
    let networks: Vec<Vec<bool>> = temps.iter().map(|t| keep.iter().map(|&v| t.voxels[v]).collect()).collect();
    let null = SpatialNull::new(mask.grid.shape, mask.grid.affine.linear(), &ijk, opt.surrogate_seed);
    let bar = crate::progress::bar(z.nrows() as u64, "spatial null of the atom maps");
    // Atoms in parallel: each has its own seeded stream, so the result is the same on any
    // number of threads.
    let per_atom: Vec<Vec<f64>> = (0..z.nrows())
        .into_par_iter()
        .map(|a| {
            bar.inc(1);
            let size = keep.iter().filter(|&&v| sig[[a, v]] != 0.0 && sig[[a, v]].is_finite()).count();
            if size == 0 {
                return vec![f64::NAN; temps.len()];
            }
            let values: Vec<f64> = keep.iter().map(|&v| z[[a, v]]).collect();
            let mut rng = rng_for(opt.surrogate_seed, a as u64);
            let mut scratch = Scratch::default();
            let fit = null.fit(&values, &mut rng, &mut scratch);
            let scores = |map: &[f64]| -> Vec<f64> {
                // The `size` largest |values|, ties to the lower voxel: the first `size` of a
                // stable sort by |value|, found by selection (linear) rather than a sort.
                let mut order: Vec<usize> = (0..map.len()).collect();
                if size < order.len() {
                    order.select_nth_unstable_by(size, |&x, &y| map[y].abs().total_cmp(&map[x].abs()).then(x.cmp(&y)));
                }
                let mut top = vec![false; map.len()];
                order[..size].iter().for_each(|&v| top[v] = true);
                networks.iter().map(|t| opt.score.of(&OverlapSums::over(map, &top, t).measures())).collect()
            };
            let observed: Vec<f64> = m.rows.iter().filter(|r| r.0 == a).map(|r| opt.score.of(&r.2)).collect();
            let null_scores: Vec<Vec<f64>> = (0..opt.surrogates)
                .map(|_| scores(&null.surrogate(&fit, &values, &mut rng, &mut scratch)))
                .collect();
            (0..temps.len())
                .map(|t| p_value(observed[t], &null_scores.iter().map(|s| s[t]).collect::<Vec<_>>()))
                .collect()
        })
        .collect();
    bar.finish_and_clear();
    m.p_spatial = m.rows.iter().map(|r| per_atom[r.0][r.1]).collect();
    let tested: Vec<usize> = (0..m.p_spatial.len()).filter(|&i| !m.p_spatial[i].is_nan()).collect();
    let q = crate::kernels::fdr::adjusted(&tested.iter().map(|&i| m.p_spatial[i]).collect::<Vec<_>>());
    m.q_spatial = vec![f64::NAN; m.p_spatial.len()];
    tested.iter().zip(q).for_each(|(&i, q)| m.q_spatial[i] = q);
    (!null.smooths()).then(|| "note: no smoothing width fits this grid: the spatial-null surrogates are plain permutations and keep no autocorrelation (their p values are too small)".to_string())
}

fn write_atom_fbn(path: &Path, m: &Matches, temps: &[Template]) -> Result<()> {
    let rows = &m.rows;
    let f32s = |f: fn(&Overlap) -> f64| Column::F32(rows.iter().map(|r| f(&r.2) as f32).collect());
    write_table(
        path,
        "atom_fbn",
        None,
        vec![
            Column::U16(rows.iter().map(|r| r.0 as u16).collect()),
            Column::Utf8(rows.iter().map(|r| temps[r.1].name.clone()).collect()),
            f32s(|o| o.overlap_rate),
            f32s(|o| o.dice),
            f32s(|o| o.iou),
            f32s(|o| o.corr),
            Column::Bool(rows.iter().map(|r| r.3).collect()),
            Column::F64(m.p_spatial.clone()),
            Column::F64(m.q_spatial.clone()),
        ],
    )?;
    Ok(())
}

/// The `subgroups` table of `codes`: each coded AN, its dominant atom, that atom's network
/// (`fbn_of`) and the atom's share of the AN's code.
pub fn write_subgroups(path: &Path, codes: &Codes, fbn_of: &dyn Fn(u16) -> Option<String>) -> Result<()> {
    let dominant = dominant_atoms(codes);
    write_table(
        path,
        "subgroups",
        None,
        vec![
            Column::U64(dominant.keys().copied().collect()),
            Column::U16(dominant.values().map(|d| d.0).collect()),
            Column::OptUtf8(dominant.values().map(|d| fbn_of(d.0)).collect()),
            Column::F32(dominant_shares(codes, &dominant)),
        ],
    )?;
    Ok(())
}

/// Each coded AN's share of its code held by its dominant atom: |w_dominant| / Σ_k |w_k|
/// (1: the AN is that atom's alone; near 1/K: it is spread over many atoms).
fn dominant_shares(codes: &Codes, dominant: &BTreeMap<u64, (u16, f32)>) -> Vec<f32> {
    let mut total: BTreeMap<u64, f64> = BTreeMap::new();
    for (&id, &w) in codes.an_ids.iter().zip(&codes.weights) {
        *total.entry(id).or_default() += (w as f64).abs();
    }
    dominant
        .iter()
        .map(|(id, d)| ((d.1 as f64).abs() / total[id]) as f32)
        .collect()
}

/// Each coded AN's dominant atom (largest |weight|, lower atom on ties) with its weight.
fn dominant_atoms(codes: &Codes) -> BTreeMap<u64, (u16, f32)> {
    let mut dominant: BTreeMap<u64, (u16, f32)> = BTreeMap::new();
    for ((&id, &a), &w) in codes.an_ids.iter().zip(&codes.atoms).zip(&codes.weights) {
        let e = dominant.entry(id).or_insert((a, w));
        if w.abs() > e.1.abs() || (w.abs() == e.1.abs() && a < e.0) {
            *e = (a, w);
        }
    }
    dominant
}

/// How many ANs each network got, and by which rule, as a summary line.
fn tie_line(ties: &crate::stages::ties::Ties, temps: &[crate::io::atlas::Template], opt: &MapOptions) -> String {
    let counts: Vec<String> = ties
        .networks
        .iter()
        .enumerate()
        .map(|(j, &t)| {
            let n = ties.tied.iter().filter(|&&x| x == Some(t)).count();
            match &ties.stability {
                Some((_, jaccard)) => format!("{} {n} (stability {:.2})", temps[t].name, jaccard[j]),
                None => format!("{} {n}", temps[t].name),
            }
        })
        .collect();
    let rule = match opt.ties {
        TieRule::Course => format!("|r| with the network's fitted course ≥ {} in both halves of the stories", opt.tie_r),
        TieRule::Dominant => "the network of the dominant atom".into(),
    };
    match counts.is_empty() {
        true => "ANs tied to networks: none (no atom is assigned)".into(),
        false => format!("ANs tied to networks ({rule}): {}", counts.join(", ")),
    }
}

/// Where every AN of the neurons table (or of the basis) lands: in the network
/// `network_of` gives it, else coded but in no network, else uncoded.
fn places(
    neurons: &[Neuron],
    codes: &Codes,
    network_of: &dyn Fn(u64) -> Option<String>,
) -> Vec<AnPlace> {
    let mut coded: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for (&id, &a) in codes.an_ids.iter().zip(&codes.atoms) {
        coded.entry(id).or_default().push(a);
    }
    neurons
        .iter()
        .map(|n| AnPlace {
            model: n.model.clone(),
            layer: n.layer,
            coded_atoms: coded.get(&n.an_id).cloned().unwrap_or_default(),
            place: match (network_of(n.an_id), coded.contains_key(&n.an_id)) {
                (Some(net), _) => Place::Network(net),
                (None, true) => Place::Unassigned,
                (None, false) => Place::Uncoded,
            },
        })
        .collect()
}

/// One line per atom: its network and score, or why it is unassigned.
/// The spatial-null p and q of an assignment, as the lines and the report say it (nothing
/// without surrogates).
pub fn spatial_note(p: f64, q: f64) -> String {
    match p.is_nan() {
        true => String::new(),
        false => format!("; spatial-null p {p:.3}, FDR q {q:.3}"),
    }
}

fn atom_lines(sig: ArrayView2<f64>, m: &Matches, temps: &[Template], opt: &MapOptions) -> Vec<String> {
    (0..sig.nrows())
        .map(|a| {
            let size = sig
                .row(a)
                .iter()
                .filter(|s| **s != 0.0 && s.is_finite())
                .count();
            match m.assigned[a] {
                Some(t) => {
                    let row = m.rows.iter().position(|r| r.0 == a && r.1 == t).expect("a row per atom and network");
                    format!(
                        "atom {a} → {} ({} {:.2}; {size} voxels{})",
                        temps[t].name,
                        opt.score,
                        m.best_score[a],
                        spatial_note(m.p_spatial[row], m.q_spatial[row])
                    )
                }
                None if size == 0 => format!("atom {a}: unassigned (empty thresholded map)"),
                None => format!(
                    "atom {a}: unassigned (best {} {:.2}; {size} voxels)",
                    opt.score, m.best_score[a]
                ),
            }
        })
        .collect()
}

/// What the mapping reads of the group: z, the thresholded z and the mean β inside the
/// mask (atoms × voxels, through f32 as the files hold them), read or borrowed, and each
/// atom's split-half Dice.
pub struct GroupMaps<'a> {
    pub mask: Mask,
    pub z: CowArray<'a, f64, Ix2>,
    pub sig: CowArray<'a, f64, Ix2>,
    pub beta: CowArray<'a, f64, Ix2>,
    pub split: Vec<f64>,
    /// Where they are (or are being written), for messages.
    pub dir: PathBuf,
}

impl GroupMaps<'static> {
    /// The maps as `group` wrote them under `dir`.
    pub fn read(dir: &Path) -> Result<GroupMaps<'static>> {
        let mask = nifti::read_mask(&dir.join("mask.nii.gz"))?;
        // The group maps inside the mask, a volume at a time, side by side (each is one
        // gzip stream): never a whole grid of 64 volumes.
        let read = |name: &str| nifti::read_map_rows(&dir.join(name), &mask);
        let ((z, sig), beta) = rayon::join(|| rayon::join(|| read("z.nii.gz"), || read("thresholded_z.nii.gz")), || read("mean_beta.nii.gz"));
        let (z, sig, beta) = (z?, sig?, beta?);
        let split = split_half(dir, z.nrows())?;
        Ok(GroupMaps { mask, z: z.into(), sig: sig.into(), beta: beta.into(), split, dir: dir.to_path_buf() })
    }
}

/// Matches the group maps `group` to the networks of `opt.atlas`, ties the AN
/// sub-groups of `codes_path` to them, and writes atom_fbn, subgroups and metrics under
/// `out`. `subject_maps`: each group subject's β map, whose network profiles the AN-tie
/// stability resamples (each map checked by `verify` before it is read).
pub fn run(
    group: GroupMaps<'_>,
    codes_path: &Path,
    neurons_path: Option<&Path>,
    (subject_maps, verify): (&[SubjectMap], Verify),
    opt: &MapOptions,
    out: &Path,
) -> Result<MapSummary> {
    let GroupMaps { mask, z, sig, beta, split, dir: group } = group;
    let (z, sig, beta) = (z.view(), sig.view(), beta.view());
    let atoms = z.nrows();
    // Checked before anything is written: codes of another basis are refused whole.
    let codes = read_codes(codes_path)?;
    if let Some(&bad) = codes.atoms.iter().find(|&&a| a as usize >= atoms) {
        bail!(
            "{}: atom {bad}, but the group maps have {atoms} atoms",
            codes_path.display()
        );
    }
    if let Some((table, k)) = basis_atoms(codes_path)? {
        if k != atoms {
            bail!(
                "{}: its basis has {k} atoms ({}), but the group maps in {} have {atoms}: codes and group maps of different bases",
                codes_path.display(),
                table.display(),
                group.display()
            );
        }
    }
    let an_atom = read_an_atom_beside(codes_path, opt.ties, atoms)?;
    let temps = templates(opt, &mask, out)?;
    let mut m = match_atoms(z, sig, &temps, opt);
    let note = match opt.surrogates > 0 {
        true => spatial_null(&mut m, z, sig, &mask, &temps, opt),
        false => None,
    };
    // The ties (and the subject maps behind their stability) before any table is written.
    let dominant = dominant_atoms(&codes);
    let mut ties = network_ties(an_atom.as_ref(), beta, &temps, &m.assigned, &dominant, opt.ties, opt.tie_r)?;
    if let (Some(an_atom), TieRule::Course, true) = (&an_atom, opt.ties, subject_maps.len() >= 2 && !ties.networks.is_empty()) {
        let (profiles, read) = subject_profiles(subject_maps, &mask, &temps, &ties.networks, atoms, verify)?;
        tracing::info!(maps = read, cached = subject_maps.len() - read, "network profiles of the subjects");
        ties.stability = Some(stability(&ties, an_atom, &profiles, opt.tie_r, opt.surrogate_seed));
    }

    let mut files = Vec::new();
    let path = out.join("atom_fbn.parquet");
    write_atom_fbn(&path, &m, &temps)?;
    files.push(path);
    let fbn_of = |a: u16| m.assigned[a as usize].map(|t| temps[t].name.clone());
    let path = out.join("subgroups.parquet");
    write_subgroups(&path, &codes, &fbn_of)?;
    files.push(path);
    let path = out.join("an_fbn.parquet");
    ties.write(&path, &temps)?;
    files.push(path);
    let network_of = ties.network_of();
    let tie_line = tie_line(&ties, &temps, opt);

    // Organisation metrics over every AN of the neurons table (or those of the basis).
    let neurons: Vec<Neuron> = match neurons_path {
        Some(p) => read_neurons(p)?,
        None => ties
            .an_ids
            .iter()
            .map(|&id| Neuron {
                an_id: id,
                model: "model".into(),
                layer: (id >> 40) as u16,
                tap: String::new(),
                unit: id as u32,
            })
            .collect(),
    };
    let ans = places(&neurons, &codes, &|id| network_of.get(&id).map(|&t| temps[t].name.clone()));
    let n_assigned = m.assigned.iter().flatten().count();
    let table = organisation(&ans, temps.len(), &m.best_score, &split, n_assigned);
    let path = out.join("metrics.parquet");
    write_table(
        &path,
        "metrics",
        None,
        vec![
            Column::Utf8(table.iter().map(|m| m.model.clone()).collect()),
            Column::OptI32(table.iter().map(|m| m.layer.map(i32::from)).collect()),
            Column::Utf8(table.iter().map(|m| m.metric.clone()).collect()),
            Column::F64(table.iter().map(|m| m.value).collect()),
        ],
    )?;
    files.push(path);
    let assignment = Assignment {
        atoms,
        networks: temps.len(),
        atlas: opt.atlas.clone(),
        score: opt.score,
        threshold: opt.assign_threshold,
        assigned: n_assigned,
    };
    Ok(MapSummary {
        files,
        assignment,
        lines: note.into_iter().chain(atom_lines(sig, &m, &temps, opt)).chain([tie_line]).collect(),
    })
}

/// The `an_atom` table beside the codes (as `basis` writes it), checked against the group
/// maps' `atoms`; required by the course rule, optional under the dominant one.
fn read_an_atom_beside(codes_path: &Path, rule: TieRule, atoms: usize) -> Result<Option<crate::io::parquet::AnAtom>> {
    let path = codes_path.with_file_name("an_atom.parquet");
    if !path.is_file() {
        return match rule {
            TieRule::Dominant => Ok(None),
            TieRule::Course => bail!(
                "{}: not found beside the codes — each AN's correlation with the atoms, which `basis` now writes and the course rule needs; learn the basis again, or map with --ties dominant (recipe: [map] ties = \"dominant\")",
                path.display()
            ),
        };
    }
    let an_atom = read_an_atom(&path)?;
    let k = an_atom.stats.gram[0].nrows();
    if k != atoms {
        bail!("{}: {k} atoms, but the group maps have {atoms}: results of different bases", path.display());
    }
    Ok(Some(an_atom))
}

/// The number of atoms of the basis a codes table belongs to, from an atoms table beside
/// it (`basis/atoms/*.parquet`, as `basis` writes them), when there is one.
fn basis_atoms(codes_path: &Path) -> Result<Option<(PathBuf, usize)>> {
    let Some(dir) = codes_path.parent().map(|p| p.join("atoms")).filter(|d| d.is_dir()) else {
        return Ok(None);
    };
    let mut tables: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    tables.sort();
    let Some(first) = tables.into_iter().next() else {
        return Ok(None);
    };
    let (_, atoms) = crate::io::parquet::read_atoms(&first)?;
    Ok(Some((first, atoms.ncols())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dominant atom holds |w| / Σ|w| of an AN's code; ties go to the lower atom.
    #[test]
    fn dominant_atoms_and_their_shares() {
        let codes = Codes {
            an_ids: vec![7, 7, 9, 4, 4],
            atoms: vec![3, 0, 2, 5, 1],
            weights: vec![-0.2, 0.6, 1.5, 0.5, -0.5],
        };
        let dominant = dominant_atoms(&codes);
        assert_eq!(dominant.keys().copied().collect::<Vec<_>>(), vec![4, 7, 9]);
        assert_eq!(dominant.values().map(|d| d.0).collect::<Vec<_>>(), vec![1, 0, 2]);
        let shares = dominant_shares(&codes, &dominant);
        assert_eq!(shares, vec![0.5, 0.75, 1.0]);
    }
}
