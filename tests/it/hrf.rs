//! Event regressors against nilearn's compute_regressor on real word onsets.

use cortexflow::kernels::hrf::{frame_times, EventDesign, HrfModel, RegressorOptions};
use ndarray::Array2;

use super::common::fixture_json;

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Same algorithm in float64 on both sides; the only differences are summation order in
/// the convolution (prefix sums here) and the gamma function, so 1e-10 relative to the
/// regressor's peak is ample and still catches any off-by-one sample (≥ 1e-3).
#[test]
fn regressors_match_nilearn_compute_regressor() {
    let fx = fixture_json("hrf_nilearn.json");
    for case in fx["cases"].as_array().unwrap() {
        let model = match case["model"].as_str().unwrap() {
            "spm" => HrfModel::Spm,
            "glover" => HrfModel::Glover,
            _ => HrfModel::Fir {
                delays: case["delays"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            },
        };
        let (tr, n, offset) = (
            case["tr"].as_f64().unwrap(),
            case["n_scans"].as_u64().unwrap() as usize,
            case["offset"].as_f64().unwrap(),
        );
        let onsets = floats(&case["onsets"]);
        let amps = floats(&case["amplitudes"]);
        let designs = EventDesign::new(
            &onsets,
            &floats(&case["durations"]),
            &frame_times(n, tr, offset),
            &RegressorOptions {
                model,
                ..Default::default()
            },
        )
        .unwrap();
        let amps = Array2::from_shape_vec((amps.len(), 1), amps).unwrap();
        // One regressor per basis function, as columns in nilearn's order.
        let regs: Vec<f64> = designs
            .iter()
            .flat_map(|d| d.apply(amps.view()).column(0).to_vec())
            .collect();
        let expected = floats(&case["regressor"]);
        let peak = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_eq!(
            regs.len(),
            expected.len(),
            "{}: regressor count",
            case["model"]
        );
        for (i, (ours, theirs)) in regs.iter().zip(&expected).enumerate() {
            assert!(
                (ours - theirs).abs() <= 1e-10 * peak,
                "{} tr={tr} value {i}: {ours} vs {theirs}",
                case["model"]
            );
        }
    }
}

#[test]
fn kernels_match_nilearn() {
    let fx = fixture_json("hrf_nilearn.json");
    for (name, model) in [("spm_tr2", HrfModel::Spm), ("glover_tr2", HrfModel::Glover)] {
        let k = model.kernel(2.0, 50);
        for (i, v) in floats(&fx["kernels_every_7th"][name]).iter().enumerate() {
            assert!((k[i * 7] - v).abs() < 1e-14, "{name}[{}]", i * 7);
        }
    }
}
