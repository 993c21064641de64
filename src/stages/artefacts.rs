//! The simulator's fMRIPrep layout (`simulate --layout fmriprep`): artefacts that act on
//! the BOLD, the confounds table and sidecar that measure them, and per-subject brain
//! masks, so that confound regression and censoring have something real to remove.
//!
//! Per run, on top of the planted signal, AR(1) noise and drift ([`super::voxel_model`]),
//! with σ the voxel's noise sd (2% of its baseline):
//! - **head motion** m_j(t) (3 translations in mm, 3 rotations in rad): a random walk with
//!   sudden jumps at a few scans; each voxel changes by baseline·Σ_j g_vj·m_j(t) (g_vj: a
//!   gradient along the voxel's position on the jump's axis plus a voxel-specific part,
//!   2% per mm; rotations act through a 50 mm lever);
//! - **spikes**: at every jump, a spin-history disturbance of 4% of the baseline (a draw
//!   per voxel) on that scan alone, which only censoring removes;
//! - **physiological noise**: five slow AR(1) sources (ρ 0.9) with voxel loadings of
//!   0.6σ each; the aCompCor components are the principal components of 200 noise-ROI
//!   voxels that mix the sources with their own noise (kept to 50% of the ROI's variance,
//!   as fMRIPrep does), so they estimate the sources' span rather than hold it; the
//!   `white_matter` and `csf` columns measure two mixtures of them with noise;
//! - **non-steady state**: the first [`DUMMY_SCANS`] scans 40% and 8% brighter;
//! - and the table's `global_signal`, `dvars`, `std_dvars` (DVARS over its median),
//!   `framewise_displacement` (Power 2012), `cosine*` (fMRIPrep's 128 s DCT basis), the
//!   `_derivative1`/`_power2` expansions, `non_steady_state_outlier*` and the sidecar's
//!   aCompCor entries, computed from the run as written.
//!
//! Each subject's brain mask is the analysis mask less a random 5% of its boundary voxels;
//! its BOLD is zero outside it.

use std::path::Path;

use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::error::Result;
use crate::io::atomic::write_file_atomically;
use crate::io::nifti::Mask;
use crate::kernels::cluster::face_neighbours;
use crate::kernels::design::cosine_drift;

/// Scans before the scanner's steady state, at the start of every run.
pub const DUMMY_SCANS: usize = 2;
/// Chance that a scan (after the dummy scans) holds a head jump.
const JUMP_RATE: f64 = 0.03;
const PHYSIO_SOURCES: usize = 5;
/// fMRIPrep's high-pass cut-off for its cosine regressors, in seconds.
const COSINE_PERIOD_S: f64 = 128.0;

/// One run's drawn artefacts.
pub struct RunArtefacts {
    /// Six motion parameters, each a time course.
    pub motion: [Vec<f64>; 6],
    /// Scans with a head jump.
    pub jumps: Vec<usize>,
    /// Physiological sources, unit variance, each a time course.
    pub physio: Vec<Vec<f64>>,
}

/// Draws a run's motion and physiological sources.
pub fn draw(rng: &mut ChaCha8Rng, scans: usize) -> RunArtefacts {
    let jumps: Vec<usize> = (DUMMY_SCANS..scans).filter(|_| rng.random_bool(JUMP_RATE)).collect();
    let motion = std::array::from_fn(|j| {
        let (step, jump) = if j < 3 { (0.01, 0.4) } else { (0.0002, 0.006) };
        let mut x = 0.0;
        (0..scans)
            .map(|t| {
                if t > 0 {
                    x += step * rng.sample::<f64, _>(StandardNormal);
                }
                if jumps.contains(&t) {
                    x += jump * rng.sample::<f64, _>(StandardNormal);
                }
                x
            })
            .collect()
    });
    let physio = (0..PHYSIO_SOURCES)
        .map(|_| {
            let mut course = vec![0.0; scans];
            crate::kernels::noise::ar1(rng, 0.9, &mut course).expect("ρ in (-1, 1)");
            course
        })
        .collect();
    RunArtefacts { motion, jumps, physio }
}

/// Adds the artefacts to a run's BOLD (analysis-mask voxels × scans), then zeroes what
/// lies outside the subject's brain mask (`inside`, per analysis-mask voxel).
pub fn apply(
    rng: &mut ChaCha8Rng,
    data: &mut Array2<f32>,
    mask: &Mask,
    inside: &[bool],
    baseline: &[f64],
    art: &RunArtefacts,
) {
    let scans = data.ncols();
    let shape = mask.grid.shape;
    for (v, [i, j, k]) in mask.ijk().enumerate() {
        if !inside[v] {
            data.row_mut(v).fill(0.0);
            continue;
        }
        let pos = [i, j, k].map(|c| c as f64);
        let centred: [f64; 3] = std::array::from_fn(|a| 2.0 * pos[a] / (shape[a].max(2) - 1) as f64 - 1.0);
        let gain: [f64; 6] = std::array::from_fn(|m| {
            let lever = if m < 3 { 1.0 } else { 50.0 };
            0.02 * lever * (centred[m % 3] + 0.5 * rng.sample::<f64, _>(StandardNormal))
        });
        let sigma = 0.02 * baseline[v];
        let load: Vec<f64> = (0..PHYSIO_SOURCES).map(|_| 0.6 * rng.sample::<f64, _>(StandardNormal)).collect();
        let spike: Vec<f64> = art.jumps.iter().map(|_| 0.04 * rng.sample::<f64, _>(StandardNormal)).collect();
        for t in 0..scans {
            let motion: f64 = (0..6).map(|m| gain[m] * art.motion[m][t]).sum();
            let physio: f64 = load.iter().zip(&art.physio).map(|(l, p)| l * p[t]).sum();
            let jolt = art.jumps.iter().position(|&s| s == t).map_or(0.0, |n| spike[n]);
            let y = data[[v, t]] as f64 + baseline[v] * (motion + jolt) + sigma * physio;
            let settle = match t {
                0 => 1.4,
                1 => 1.08,
                _ => 1.0,
            };
            data[[v, t]] = (y * settle) as f32;
        }
    }
}

/// A subject's brain mask on the whole grid (x fastest): the analysis mask less 5% of its
/// boundary voxels (a voxel with a face neighbour outside it), drawn for this subject, so
/// that masks differ at the edges and a group mask at a fraction keeps the analysis mask.
pub fn subject_mask(rng: &mut ChaCha8Rng, mask: &Mask) -> Vec<bool> {
    let shape = mask.grid.shape;
    let flat = |[i, j, k]: [usize; 3]| i + shape[0] * (j + shape[1] * k);
    let neighbours = |ijk: [usize; 3]| {
        face_neighbours(ijk)
            .into_iter()
            .filter(move |n| n.iter().zip(shape).all(|(&c, s)| c < s))
    };
    let mut cortex = vec![false; shape[0] * shape[1] * shape[2]];
    for ijk in mask.ijk() {
        cortex[flat(ijk)] = true;
    }
    let mut brain = cortex.clone();
    for ijk in mask.ijk() {
        let boundary = neighbours(ijk).count() < 6 || neighbours(ijk).any(|n| !cortex[flat(n)]);
        if boundary && rng.random_bool(0.05) {
            brain[flat(ijk)] = false;
        }
    }
    brain
}

/// Writes the run's confounds table and sidecar, measured on its BOLD as written.
pub fn write_confounds(
    rng: &mut ChaCha8Rng,
    tsv: &Path,
    data: &Array2<f32>,
    inside: &[bool],
    art: &RunArtefacts,
    tr: f64,
) -> Result<()> {
    let scans = data.ncols();
    let voxels: Vec<usize> = (0..data.nrows()).filter(|&v| inside[v]).collect();
    let series = |t: usize| voxels.iter().map(move |&v| data[[v, t]] as f64);
    let global: Vec<f64> = (0..scans).map(|t| series(t).sum::<f64>() / voxels.len() as f64).collect();
    let dvars: Vec<f64> = (0..scans)
        .map(|t| match t {
            0 => f64::NAN,
            _ => (series(t).zip(series(t - 1)).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / voxels.len() as f64).sqrt(),
        })
        .collect();
    let median = {
        let mut d: Vec<f64> = dvars[1..].to_vec();
        d.sort_by(f64::total_cmp);
        d[d.len() / 2]
    };
    let fd: Vec<f64> = (0..scans)
        .map(|t| match t {
            0 => f64::NAN,
            _ => (0..6)
                .map(|m| (if m < 3 { 1.0 } else { 50.0 }) * (art.motion[m][t] - art.motion[m][t - 1]).abs())
                .sum(),
        })
        .collect();
    let mut measured = |mix: [f64; PHYSIO_SOURCES]| -> Vec<f64> {
        (0..scans)
            .map(|t| {
                let s: f64 = mix.iter().zip(&art.physio).map(|(w, p)| w * p[t]).sum();
                100.0 + 2.0 * s + 0.3 * rng.sample::<f64, _>(StandardNormal)
            })
            .collect()
    };
    let white_matter = measured([1.0, 0.0, 0.5, 0.0, 0.0]);
    let csf = measured([0.0, 1.0, 0.0, 0.5, 0.0]);
    let (compcor, singular, total) = compcor(rng, &art.physio)?;
    let cosines = cosine_drift(scans, tr, 1.0 / COSINE_PERIOD_S);
    let mut cols: Vec<(String, Vec<f64>)> = Vec::new();
    for (name, x) in [("global_signal", global), ("csf", csf), ("white_matter", white_matter)] {
        cols.extend(expansions(name, x));
    }
    cols.push(("std_dvars".into(), dvars.iter().map(|d| d / median).collect()));
    cols.push(("dvars".into(), dvars));
    cols.push(("framewise_displacement".into(), fd));
    for (c, x) in compcor.iter().enumerate() {
        cols.push((format!("a_comp_cor_{c:02}"), x.clone()));
    }
    for c in 0..cosines.ncols() - 1 {
        cols.push((format!("cosine{c:02}"), cosines.column(c).to_vec()));
    }
    for d in 0..DUMMY_SCANS.min(scans) {
        cols.push((format!("non_steady_state_outlier{d:02}"), (0..scans).map(|t| f64::from(u8::from(t == d))).collect()));
    }
    for (m, name) in ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"].iter().enumerate() {
        cols.extend(expansions(name, art.motion[m].clone()));
    }
    write_file_atomically(tsv, |w| {
        let header: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        writeln!(w, "{}", header.join("\t"))?;
        for t in 0..scans {
            let row: Vec<String> = cols
                .iter()
                .map(|(_, x)| if x[t].is_nan() { "n/a".into() } else { format!("{}", x[t]) })
                .collect();
            writeln!(w, "{}", row.join("\t"))?;
        }
        Ok(())
    })?;
    let mut cumulative = 0.0;
    let mut meta = serde_json::Map::new();
    for (c, s) in singular.iter().enumerate() {
        let share = s * s / total;
        cumulative += share;
        meta.insert(
            format!("a_comp_cor_{c:02}"),
            serde_json::json!({"Method": "aCompCor", "Mask": "combined", "SingularValue": s,
                "VarianceExplained": share, "CumulativeVarianceExplained": cumulative, "Retained": true}),
        );
    }
    let json = serde_json::to_string_pretty(&meta)?;
    write_file_atomically(&crate::io::confounds::sidecar(tsv), |w| w.write_all(json.as_bytes()))
}

/// A signal with fMRIPrep's expansions: itself, `_derivative1` (backward difference, `n/a`
/// at the first scan), `_power2`, `_derivative1_power2`.
fn expansions(name: &str, x: Vec<f64>) -> Vec<(String, Vec<f64>)> {
    let d: Vec<f64> = (0..x.len()).map(|t| if t == 0 { f64::NAN } else { x[t] - x[t - 1] }).collect();
    vec![
        (format!("{name}_derivative1_power2"), d.iter().map(|v| v * v).collect()),
        (format!("{name}_power2"), x.iter().map(|v| v * v).collect()),
        (format!("{name}_derivative1"), d),
        (name.to_string(), x),
    ]
    .into_iter()
    .rev()
    .collect()
}

/// Voxels of the simulated noise ROI (white matter and CSF) that aCompCor decomposes.
const NOISE_VOXELS: usize = 200;
/// Each noise voxel's own (thermal) noise sd, against physiological loadings of sd 1.
const NOISE_ROI_THERMAL: f64 = 1.5;
/// fMRIPrep keeps the components that explain this share of the ROI's variance.
const COMPCOR_VARIANCE: f64 = 0.5;

/// aCompCor as fMRIPrep computes it: the principal components (left singular vectors of the
/// centred scans × voxels matrix) of noise-ROI voxels, each a random mixture of the
/// physiological sources plus its own thermal noise, kept until they explain
/// [`COMPCOR_VARIANCE`] of the ROI's variance; with their singular values and the ROI's
/// total variance (Σ s²). They estimate
/// the sources' span, as real ones do: not exactly, and not all of it.
fn compcor(rng: &mut ChaCha8Rng, physio: &[Vec<f64>]) -> Result<(Vec<Vec<f64>>, Vec<f64>, f64)> {
    let scans = physio[0].len();
    let mut roi = faer::Mat::<f64>::zeros(scans, NOISE_VOXELS);
    for v in 0..NOISE_VOXELS {
        let load: Vec<f64> = physio.iter().map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
        for t in 0..scans {
            let p: f64 = load.iter().zip(physio).map(|(l, s)| l * s[t]).sum();
            roi[(t, v)] = p + NOISE_ROI_THERMAL * rng.sample::<f64, _>(StandardNormal);
        }
        let mean = (0..scans).map(|t| roi[(t, v)]).sum::<f64>() / scans as f64;
        (0..scans).for_each(|t| roi[(t, v)] -= mean);
    }
    let svd = roi
        .thin_svd()
        .map_err(|e| crate::Error::Invalid(format!("aCompCor's SVD did not converge: {e:?}")))?;
    let (u, s) = (svd.U(), svd.S());
    let n = scans.min(NOISE_VOXELS);
    let total: f64 = (0..n).map(|c| s[c] * s[c]).sum();
    let (mut kept, mut cumulative) = (0, 0.0);
    while kept < n && cumulative < COMPCOR_VARIANCE * total {
        cumulative += s[kept] * s[kept];
        kept += 1;
    }
    let components = (0..kept).map(|c| (0..scans).map(|t| u[(t, c)]).collect()).collect();
    Ok((components, (0..kept).map(|c| s[c]).collect(), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn compcor_estimates_the_sources_and_expansions_are_named_as_fmriprep() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let art = draw(&mut rng, 300);
        let (q, s, total) = compcor(&mut rng, &art.physio).unwrap();
        // Orthonormal, explaining at least half the ROI's variance, the last one needed.
        for a in 0..q.len() {
            for b in 0..q.len() {
                let dot: f64 = q[a].iter().zip(&q[b]).map(|(x, y)| x * y).sum();
                assert!((dot - f64::from(u8::from(a == b))).abs() < 1e-10);
            }
        }
        let kept: f64 = s.iter().map(|x| x * x).sum();
        assert!(kept >= 0.5 * total && kept - s[s.len() - 1].powi(2) < 0.5 * total);
        // They estimate the physiological span: each source is mostly, not wholly, in it.
        for p in &art.physio {
            let mean = p.iter().sum::<f64>() / p.len() as f64;
            let c: Vec<f64> = p.iter().map(|x| x - mean).collect();
            let norm2: f64 = c.iter().map(|x| x * x).sum();
            let inside: f64 = q.iter().map(|v| v.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>().powi(2)).sum();
            assert!(inside < 0.999 * norm2, "a source lies wholly in the components");
        }
        let names: Vec<String> = expansions("csf", vec![1.0, 3.0]).into_iter().map(|c| c.0).collect();
        assert_eq!(names, ["csf", "csf_derivative1", "csf_power2", "csf_derivative1_power2"]);
        assert_eq!(expansions("x", vec![1.0, 3.0])[1].1[1], 2.0);
    }
}
