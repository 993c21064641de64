//! Pure numerics: no I/O, no dataflow, no model code. Each kernel documents its formula
//! and the reference it is tested against.

pub mod cluster;
pub mod clusters_table;
pub mod column_stats;
pub mod courses;
pub mod cv;
pub mod design;
pub mod dictionary;
pub mod estimators;
pub mod fdr;
pub mod glm;
pub mod group;
pub mod hrf;
pub mod isc;
pub mod ipca;
pub mod lasso;
pub mod masks;
pub mod parcels;
pub mod noise;
pub mod organisation;
pub mod overlap;
pub mod permutation;
pub mod ridge_stats;
pub mod simd;
pub mod smooth;
pub mod surrogates;
pub mod t_to_z;
pub mod tdist;

/// Brute-force Pearson r: the reference of the kernels' unit tests.
#[cfg(test)]
pub(crate) fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}
