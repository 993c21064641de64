//! The encoding kernels against statsmodels, nilearn and himalaya (fixtures from
//! scripts/fixtures/make_encoding_fixtures.py; synthetic data with known structure).

use cortexflow::kernels::cv::ridge_cv;
use cortexflow::kernels::glm::ols;
use cortexflow::kernels::ridge_stats::RunStats;
use ndarray::{s, Array2};
use serde_json::Value;

use super::common::{fixture_json, fixtures};

fn matrix(name: &str, cols: usize) -> Array2<f64> {
    let bytes = std::fs::read(fixtures().join("encoding").join(name)).unwrap();
    let v: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Array2::from_shape_vec((v.len() / cols, cols), v).unwrap()
}

fn grid(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

/// Data, design and run boundaries of the fixture.
fn data() -> (Array2<f64>, Array2<f64>, Vec<(usize, usize)>) {
    let fx = fixture_json("encoding/ols.json");
    let (p, v) = (
        fx["p"].as_u64().unwrap() as usize,
        fx["v"].as_u64().unwrap() as usize,
    );
    let lengths: Vec<usize> = fx["lengths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap() as usize)
        .collect();
    let mut bounds = Vec::new();
    let mut start = 0;
    for l in lengths {
        bounds.push((start, start + l));
        start += l;
    }
    (matrix("design.f64", p), matrix("bold.f64", v), bounds)
}

fn max_rel(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim(), "shapes");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1e-3))
        .fold(0.0, f64::max)
}

/// β and t from run-by-run statistics equal statsmodels' OLS on the whole design, and t
/// equals nilearn's FirstLevelModel(noise_model="ols") with the same design matrix.
/// Tolerance 1e-6 relative (the issue's), float64 on both sides (the NIfTI reader delivers
/// float32 BOLD; the statistics are accumulated in float64 either way).
#[test]
fn ols_matches_statsmodels_and_nilearn() {
    let (x, y, bounds) = data();
    let mut stats: Option<RunStats> = None;
    for &(a, b) in &bounds {
        let run = RunStats::from_block(x.slice(s![a..b, ..]), y.slice(s![a..b, ..]));
        match stats.as_mut() {
            None => stats = Some(run),
            Some(s) => s.add(&run),
        }
    }
    let fit = ols(&stats.unwrap()).unwrap();
    let fx = fixture_json("encoding/ols.json");
    assert!(
        max_rel(&fit.beta, &grid(&fx["beta"])) < 1e-6,
        "β: {}",
        max_rel(&fit.beta, &grid(&fx["beta"]))
    );
    assert!(
        max_rel(&fit.t, &grid(&fx["t"])) < 1e-6,
        "t: {}",
        max_rel(&fit.t, &grid(&fx["t"]))
    );
    let first = grid(&fixture_json("encoding/first_level.json")["t"]);
    let ours = fit.t.slice(s![..first.nrows(), ..]).to_owned();
    assert!(
        max_rel(&ours, &first) < 1e-6,
        "nilearn t: {}",
        max_rel(&ours, &first)
    );
}

/// Leave-one-run-out ridge from run statistics equals himalaya's RidgeCV with a
/// LeaveOneGroupOut splitter: the same α for every voxel and the same refitted
/// coefficients (1e-6 relative).
#[test]
fn ridge_cv_matches_himalaya() {
    let (x, y, bounds) = data();
    let fx = fixture_json("encoding/ridge.json");
    let alphas: Vec<f64> = fx["alphas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap())
        .collect();
    let k = 4;
    // Per-run centring (what an intercept per run does), as in the fixture.
    let runs: Vec<RunStats> = bounds
        .iter()
        .map(|&(a, b)| {
            let mut xr = x.slice(s![a..b, ..k]).to_owned();
            let mut yr = y.slice(s![a..b, ..]).to_owned();
            for mut c in xr.columns_mut() {
                let m = c.mean().unwrap();
                c -= m;
            }
            for mut c in yr.columns_mut() {
                let m = c.mean().unwrap();
                c -= m;
            }
            RunStats::from_block(xr.view(), yr.view())
        })
        .collect();
    let fit = ridge_cv(&runs, &alphas).unwrap();
    let best: Vec<f64> = fx["best_alphas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap())
        .collect();
    assert_eq!(fit.alpha.len(), best.len(), "an α per voxel");
    for (j, (&ours, &theirs)) in fit.alpha.iter().zip(&best).enumerate() {
        assert!(
            (ours - theirs).abs() <= 1e-9 * theirs,
            "voxel {j}: α {ours} vs {theirs}"
        );
    }
    let coef = grid(&fx["coef"]);
    assert!(
        max_rel(&fit.beta, &coef) < 1e-6,
        "coefficients: {}",
        max_rel(&fit.beta, &coef)
    );
}

/// The drift basis equals nilearn's create_cosine_drift (closed-form cosines, 1e-12).
#[test]
fn cosine_drift_matches_nilearn() {
    let fx = fixture_json("encoding/cosine_drift.json");
    for (n, cols) in fx.as_object().unwrap() {
        let theirs = grid(cols);
        let ours = cortexflow::kernels::design::cosine_drift(n.parse().unwrap(), 2.0, 0.01);
        assert_eq!(ours.dim(), theirs.dim(), "{n} scans");
        assert!(
            ours.iter().zip(&theirs).all(|(a, b)| (a - b).abs() < 1e-12),
            "{n} scans"
        );
    }
}
