//! Nuisance regressors and censored scans of a run from its fMRIPrep confounds, as
//! nilearn's `load_confounds` chooses them (nilearn 0.14.1,
//! `nilearn/interfaces/fmriprep/load_confounds*.py`), setting for setting:
//!
//! - `motion`: the 6 rigid-body parameters, with their derivatives and/or squares
//!   (`basic` 6, `power2` 12, `derivatives` 12, `full` 24 columns); `wm_csf` and
//!   `global_signal` the same expansions of `csf`, `white_matter` and `global_signal`;
//! - `high_pass`: fMRIPrep's `cosine*` columns; `compcor`: the `a_`/`w_`/`c_`/`t_comp_cor_*`
//!   columns of the chosen kind, the first `n_compcor` per mask (`all`: those fMRIPrep kept,
//!   50% of the variance by its defaults), masks read from the JSON sidecar;
//! - censoring: the `non_steady_state_outlier*` scans always, and with `scrub` the scans
//!   whose framewise displacement or standardised DVARS exceed the thresholds, plus the
//!   kept segments shorter than `scrub` scans (Power et al. 2014);
//! - the output: the chosen columns in sorted order, a first-row `n/a` (derivatives)
//!   replaced by the second row's value, demeaned over the kept scans; the kept scans as
//!   indices (none when every scan is kept).
//!
//! cortexflow adds `dummy_scans`: the first N scans censored as well.

use std::path::Path;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::{bail, Context, Result};
use crate::io::confounds::{self, ConfoundsMeta, ConfoundsTable};

/// A noise component of the strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Motion,
    HighPass,
    WmCsf,
    GlobalSignal,
    Compcor,
    Scrub,
    NonSteadyState,
}

/// Which expansions of a signal: itself, its square, its derivative, or all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expansion {
    Basic,
    Power2,
    Derivatives,
    Full,
}

/// Which CompCor components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compcor {
    AnatCombined,
    AnatSeparated,
    Temporal,
    TemporalAnatCombined,
    TemporalAnatSeparated,
}

/// How many CompCor components per mask: `"all"` or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NCompcor {
    Count(usize),
    All,
}

impl Serialize for NCompcor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            NCompcor::Count(n) => s.serialize_u64(*n as u64),
            NCompcor::All => s.serialize_str("all"),
        }
    }
}

impl<'de> Deserialize<'de> for NCompcor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = NCompcor;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"all\" or a number of components (at least 1)")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<NCompcor, E> {
                match n {
                    0 => Err(E::custom("n_compcor = 0: \"all\" or a number of components, at least 1")),
                    n => Ok(NCompcor::Count(n as usize)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> std::result::Result<NCompcor, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("n_compcor = {n}: \"all\" or a number of components, at least 1"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<NCompcor, E> {
                match v {
                    "all" => Ok(NCompcor::All),
                    other => Err(E::custom(format!("n_compcor = \"{other}\": \"all\" or a number of components"))),
                }
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Compcor {
    /// The setting as a recipe writes it.
    fn name(self) -> &'static str {
        match self {
            Compcor::AnatCombined => "anat_combined",
            Compcor::AnatSeparated => "anat_separated",
            Compcor::Temporal => "temporal",
            Compcor::TemporalAnatCombined => "temporal_anat_combined",
            Compcor::TemporalAnatSeparated => "temporal_anat_separated",
        }
    }
}

/// The recipe's `[confounds]`: `load_confounds`' parameters, with its defaults, and the
/// dummy scans. An empty strategy (the default) reads no confounds files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Strategy {
    pub strategy: Vec<Component>,
    pub motion: Expansion,
    pub wm_csf: Expansion,
    pub global_signal: Expansion,
    pub compcor: Compcor,
    pub n_compcor: NCompcor,
    /// Kept segments shorter than this many scans are censored too (0: only the outliers).
    pub scrub: usize,
    /// Framewise displacement (mm) above which a scan is censored.
    pub fd_threshold: f64,
    /// Standardised DVARS above which a scan is censored.
    pub std_dvars_threshold: f64,
    pub demean: bool,
    /// Scans censored at the start of every run (before the scanner's steady state).
    pub dummy_scans: usize,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            strategy: Vec::new(),
            motion: Expansion::Full,
            wm_csf: Expansion::Basic,
            global_signal: Expansion::Basic,
            compcor: Compcor::AnatCombined,
            n_compcor: NCompcor::All,
            scrub: 5,
            fd_threshold: 0.5,
            std_dvars_threshold: 1.5,
            demean: true,
            dummy_scans: 0,
        }
    }
}

/// A run's nuisance regressors (scans × columns, every scan) and the scans kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Confounds {
    pub names: Vec<String>,
    /// `columns[c][t]`: column c at scan t.
    pub columns: Vec<Vec<f64>>,
    /// Indices of the kept scans, ascending; `None` when every scan is kept.
    pub keep: Option<Vec<usize>>,
}

impl Strategy {
    /// Every setting at its default (the recipe leaves the section out of its text).
    pub fn is_default(&self) -> bool {
        *self == Strategy::default()
    }

    /// No confounds are read: the strategy is empty and no dummy scans are dropped.
    pub fn is_off(&self) -> bool {
        self.strategy.is_empty() && self.dummy_scans == 0
    }

    /// The settings' ranges, as errors naming the setting.
    pub fn check(&self) -> Result<()> {
        let has = |c| self.strategy.contains(&c);
        if has(Component::Compcor) && !has(Component::HighPass) {
            bail!("confounds.strategy: compcor needs high_pass too (fMRIPrep's CompCor components are computed after its cosine high-pass), as nilearn requires");
        }
        if !(self.fd_threshold.is_finite() && self.fd_threshold >= 0.0) {
            bail!("confounds.fd_threshold = {}: a number of mm, 0 or more", self.fd_threshold);
        }
        if !(self.std_dvars_threshold.is_finite() && self.std_dvars_threshold >= 0.0) {
            bail!("confounds.std_dvars_threshold = {}: 0 or more", self.std_dvars_threshold);
        }
        Ok(())
    }

    /// The regressors and kept scans of one run's confounds table.
    pub fn select(&self, table: &ConfoundsTable, meta: Option<&ConfoundsMeta>) -> Result<Confounds> {
        let t = table.rows;
        if t < 2 {
            bail!("{}: {t} rows: a confounds table needs a row per scan", table.path.display());
        }
        // Always: fMRIPrep's non-steady-state scans are censored (nilearn loads them first).
        let mut outliers: Vec<Vec<f64>> = find(table, "non_steady_state")
            .into_iter()
            .map(|c| table.columns[c].clone())
            .collect();
        let mut chosen: Vec<String> = Vec::new();
        for component in &self.strategy {
            match component {
                Component::Motion => chosen.extend(self.named(table, "motion", &MOTION, self.motion)?),
                Component::WmCsf => chosen.extend(self.named(table, "wm_csf", &WM_CSF, self.wm_csf)?),
                Component::GlobalSignal => {
                    chosen.extend(self.named(table, "global_signal", &["global_signal"], self.global_signal)?)
                }
                Component::HighPass => chosen.extend(find(table, "cosine").into_iter().map(|c| table.names[c].clone())),
                Component::Compcor => chosen.extend(self.compcor_columns(table, meta)?),
                Component::Scrub => outliers.extend(self.scrubbed(table)?),
                Component::NonSteadyState => {}
            }
        }
        // A NaN flag is no flag: pandas' sum, under nilearn, skips it.
        let mut keep: Vec<usize> = (0..t)
            .filter(|&s| s >= self.dummy_scans && outliers.iter().all(|o| o[s] == 0.0 || o[s].is_nan()))
            .collect();
        if keep.is_empty() {
            bail!(
                "{}: every one of its {t} scans is censored (outliers, scrubbing or dummy_scans)",
                table.path.display()
            );
        }
        chosen.sort();
        chosen.dedup();
        let mut columns = chosen.iter().map(|name| filled(table, name, &keep)).collect::<Result<Vec<_>>>()?;
        if self.demean {
            for col in &mut columns {
                let mean = keep.iter().map(|&s| col[s]).sum::<f64>() / keep.len() as f64;
                col.iter_mut().for_each(|x| *x -= mean);
            }
        }
        let keep = match keep.len() == t {
            true => None,
            false => Some(std::mem::take(&mut keep)),
        };
        Ok(Confounds {
            names: chosen,
            columns,
            keep,
        })
    }

    /// Signals with the expansions of `model`, all of which the table must have.
    fn named(&self, table: &ConfoundsTable, setting: &str, base: &[&str], model: Expansion) -> Result<Vec<String>> {
        let suffixes: &[&str] = match model {
            Expansion::Basic => &[],
            Expansion::Derivatives => &["derivative1"],
            Expansion::Power2 => &["power2"],
            Expansion::Full => &["derivative1", "power2", "derivative1_power2"],
        };
        let mut names: Vec<String> = base.iter().map(|b| b.to_string()).collect();
        for b in base {
            names.extend(suffixes.iter().map(|s| format!("{b}_{s}")));
        }
        require(table, setting, &names)?;
        Ok(names)
    }

    /// CompCor columns: per prefix (`t` temporal; `a` combined or, separated, `w`/`c`),
    /// the first `n_compcor` (per mask for `a`).
    fn compcor_columns(&self, table: &ConfoundsTable, meta: Option<&ConfoundsMeta>) -> Result<Vec<String>> {
        let Some(meta) = meta else {
            bail!(
                "{}: compcor needs the JSON sidecar ({}), which says each component's mask (fMRIPrep ≥ 1.4 writes it)",
                table.path.display(),
                crate::io::confounds::sidecar(&table.path).display()
            );
        };
        let (prefixes, masks): (&[&str], &[&str]) = match self.compcor {
            Compcor::AnatCombined => (&["a"], &["combined"]),
            Compcor::AnatSeparated => (&["a", "w", "c"], &["WM", "CSF"]),
            Compcor::Temporal => (&["t"], &[]),
            Compcor::TemporalAnatCombined => (&["t", "a"], &["combined"]),
            Compcor::TemporalAnatSeparated => (&["t", "a", "w", "c"], &["WM", "CSF"]),
        };
        let first = |cols: Vec<String>| match self.n_compcor {
            NCompcor::Count(n) if n < cols.len() => cols[..n].to_vec(),
            _ => cols,
        };
        let mut out = Vec::new();
        for prefix in prefixes {
            let tag = format!("{prefix}_comp_cor");
            let count = meta.masks.keys().filter(|k| k.contains(&tag)).count();
            let cols: Vec<String> = (0..count).map(|n| format!("{tag}_{n:02}")).collect();
            if *prefix != "a" {
                out.extend(first(cols));
                continue;
            }
            for mask in masks {
                let mut of_mask = Vec::new();
                for c in cols.iter() {
                    let sidecar = crate::io::confounds::sidecar(&table.path);
                    match meta.masks.get(c) {
                        None => bail!("{}: names {count} {tag} components but not '{c}'", sidecar.display()),
                        Some(None) => bail!("{}: '{c}' has no \"Mask\" (combined, WM or CSF)", sidecar.display()),
                        Some(Some(m)) if m == mask => of_mask.push(c.clone()),
                        Some(Some(_)) => {}
                    }
                }
                out.extend(first(of_mask));
            }
        }
        if out.is_empty() {
            bail!(
                "{}: its sidecar lists no CompCor components of the kind compcor = \"{}\" asks for",
                table.path.display(),
                self.compcor.name()
            );
        }
        require(table, "compcor", &out)?;
        Ok(out)
    }

    /// One-hot columns of the scans scrubbing censors.
    fn scrubbed(&self, table: &ConfoundsTable) -> Result<Vec<Vec<f64>>> {
        require(table, "scrub", &["framewise_displacement".into(), "std_dvars".into()])?;
        let fd = table.column("framewise_displacement").expect("required");
        let dvars = table.column("std_dvars").expect("required");
        // NaN (the first scan's n/a) is never above a threshold, as in numpy.
        let mut flagged: Vec<usize> = (0..table.rows)
            .filter(|&s| fd[s] > self.fd_threshold || dvars[s] > self.std_dvars_threshold)
            .collect();
        if self.scrub > 0 && !flagged.is_empty() {
            flagged = short_segments(&flagged, table.rows, self.scrub);
        }
        Ok(flagged
            .into_iter()
            .map(|s| (0..table.rows).map(|r| f64::from(u8::from(r == s))).collect())
            .collect())
    }
}

const MOTION: [&str; 6] = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"];
const WM_CSF: [&str; 2] = ["csf", "white_matter"];

/// Every column of a confounds TSV given for a run of `scans` scans (`encode --confounds`):
/// the run's intercept absorbs their means.
pub fn given(path: &Path, scans: usize) -> Result<Confounds> {
    let table = confounds::read_table(path)?;
    same_rows(&table, scans)?;
    every_column(&table)
}

fn same_rows(table: &ConfoundsTable, scans: usize) -> Result<()> {
    if table.rows != scans {
        bail!("{}: {} rows, but its BOLD run has {scans} scans", table.path.display(), table.rows);
    }
    Ok(())
}

/// Every column of a table, as given.
pub fn every_column(table: &ConfoundsTable) -> Result<Confounds> {
    let all: Vec<usize> = (0..table.rows).collect();
    let columns = table.names.iter().map(|n| filled(table, n, &all)).collect::<Result<_>>()?;
    Ok(Confounds {
        names: table.names.clone(),
        columns,
        keep: None,
    })
}

/// A column with its first-row `n/a` (a derivative's) replaced by the second row's value,
/// as nilearn does; any other missing or infinite value at a kept scan is an error naming
/// it (at a censored scan it is set to 0: the scan leaves the run).
fn filled(table: &ConfoundsTable, name: &str, keep: &[usize]) -> Result<Vec<f64>> {
    let mut col = table.column(name).expect("a column of the table").to_vec();
    if col.len() > 1 && col[0].is_nan() {
        col[0] = col[1];
    }
    if let Some(&s) = keep.iter().find(|&&s| !col[s].is_finite()) {
        bail!(
            "{}: column '{name}' has no finite value at scan {s} (row {})",
            table.path.display(),
            s + 2
        );
    }
    col.iter_mut().filter(|x| !x.is_finite()).for_each(|x| *x = 0.0);
    Ok(col)
}

/// The confounds of a BOLD run of `scans` scans under `strategy`: its fMRIPrep table
/// beside it (none when the strategy is off; only the dummy scans when it lists no
/// component).
pub fn of_run(strategy: &Strategy, bold: &Path, scans: usize) -> Result<Option<Confounds>> {
    if strategy.is_off() {
        return Ok(None);
    }
    if strategy.strategy.is_empty() {
        if strategy.dummy_scans >= scans {
            bail!("{}: confounds.dummy_scans = {} leaves none of its {scans} scans", bold.display(), strategy.dummy_scans);
        }
        return Ok(Some(Confounds {
            names: Vec::new(),
            columns: Vec::new(),
            keep: Some((strategy.dummy_scans..scans).collect()),
        }));
    }
    let Some(tsv) = confounds::beside(bold)? else {
        bail!(
            "{}: the recipe's confounds.strategy needs this run's fMRIPrep confounds table, and there is none beside it (sub-…_desc-confounds_timeseries.tsv with the run's entities)",
            bold.display()
        );
    };
    let table = confounds::read_table(&tsv)?;
    same_rows(&table, scans).with_context(|| format!("the confounds of {}", bold.display()))?;
    let meta = confounds::read_meta(&confounds::sidecar(&tsv))?;
    strategy.select(&table, meta.as_ref()).map(Some)
}

impl Confounds {
    /// The regressors as a matrix, scans × columns.
    pub fn matrix(&self, scans: usize) -> Array2<f64> {
        Array2::from_shape_fn((scans, self.columns.len()), |(t, c)| self.columns[c][t])
    }
}

/// Indices of the columns whose names contain `key`.
fn find(table: &ConfoundsTable, key: &str) -> Vec<usize> {
    (0..table.names.len()).filter(|&c| table.names[c].contains(key)).collect()
}

/// Every name must be a column of the table.
fn require(table: &ConfoundsTable, setting: &str, names: &[String]) -> Result<()> {
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| table.column(n).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: confounds.{setting} needs the column(s) {}, which the file lacks; choose another strategy or expansion",
            table.path.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// nilearn's `optimize_scrub`: the outliers plus every kept segment shorter than `min`
/// scans (at the start, at the end and between two outliers). `flagged` is ascending.
fn short_segments(flagged: &[usize], n: usize, min: usize) -> Vec<usize> {
    let mut out: Vec<usize> = flagged.to_vec();
    let (first, last) = (flagged[0], flagged[flagged.len() - 1]);
    if first < min {
        out.extend(0..first);
    }
    if n - (last + 1) < min {
        out.extend(last..n);
    }
    for w in flagged.windows(2) {
        let gap = w[1] - w[0];
        if gap > 1 && gap < min + 1 {
            out.extend(w[0] + 1..w[1]);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_segments_follow_power_2014() {
        // Outliers at 3 and 6 in 12 scans, segments under 3 scans censored: 0..3 (3
        // scans) stays, 4..6 (2 scans) goes, 7..12 (5 scans) stays.
        assert_eq!(short_segments(&[3, 6], 12, 3), vec![3, 4, 5, 6]);
        // A short start and a short end.
        assert_eq!(short_segments(&[1, 10], 12, 3), vec![0, 1, 10, 11]);
    }

    #[test]
    fn n_compcor_reads_all_or_a_count_and_says_what_it_wants() {
        #[derive(Deserialize)]
        struct T {
            n: NCompcor,
        }
        let t: T = toml::from_str("n = \"all\"").unwrap();
        assert_eq!(t.n, NCompcor::All);
        let t: T = toml::from_str("n = 5").unwrap();
        assert_eq!(t.n, NCompcor::Count(5));
        for (text, want) in [("n = \"some\"", "n_compcor = \"some\""), ("n = 0", "at least 1"), ("n = -2", "n_compcor = -2")] {
            let e = toml::from_str::<T>(text).err().unwrap().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
