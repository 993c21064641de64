//! Spatial smoothing against nilearn 0.14's `smooth_img` on the real EPI runs in
//! tests/data/fmri (fixture made by scripts/fixtures/make_smoothing_fixtures.py): oblique
//! affines, anisotropic voxels, and a 3-slice image whose widest kernel is longer than
//! the axis.
//!
//! Tolerance: 1e-5 of max(|value|, the image's RMS) per sampled voxel, and 1e-6 relative on
//! the image sums. nilearn smooths int16 data in float32 (it casts before filtering, and
//! scipy rounds to float32 after each axis, summing each line in f64); cortexflow holds
//! f32 between axes too and sums in f32: the two differ by float32 rounding, a few 1e-7
//! relative.

use std::path::Path;

use cortexflow::io::nifti::{self, Mask};
use cortexflow::stages::encode::read_smoothed;

use super::common::{fixture_json, test_data};

#[test]
fn smoothing_equals_nilearn_smooth_img() {
    let fixture = fixture_json("smoothing_nilearn.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    let mut worst = 0f64;
    for case in cases {
        let path = test_data().join(case["image"].as_str().unwrap());
        let fwhm = case["fwhm"].as_f64().unwrap();
        let header = nifti::read_header(&path).unwrap();
        let mask = Mask::full(&header.grid);
        let bold = read_smoothed::<f32>(&path, (Path::new(&path), &mask), Some(fwhm)).unwrap().data;
        let (t, v) = bold.dim();
        // File order: x fastest, volume slowest.
        let flat: Vec<f64> = (0..t).flat_map(|ti| bold.row(ti).iter().map(|&x| x as f64).collect::<Vec<_>>()).collect();
        let fp = &case["fingerprint"];
        let sum: f64 = flat.iter().sum();
        let sum_sq: f64 = flat.iter().map(|x| x * x).sum();
        let weighted: f64 = flat.iter().enumerate().map(|(i, x)| x * (i % 9973) as f64).sum();
        let what = format!("{} at {fwhm} mm", path.display());
        for (got, key) in [(sum, "sum"), (sum_sq, "sum_sq"), (weighted, "sum_weighted")] {
            let want = fp[key].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-6 * want.abs(), "{what}: {key} {got} vs {want}");
        }
        let rms = (sum_sq / (t * v) as f64).sqrt();
        for s in case["samples"].as_array().unwrap() {
            let (i, want) = (s[0].as_u64().unwrap() as usize, s[1].as_f64().unwrap());
            let got = flat[i];
            let err = (got - want).abs() / want.abs().max(rms);
            worst = worst.max(err);
            assert!(err <= 1e-5, "{what}: voxel {i}: {got} vs {want}");
        }
    }
    println!("largest sampled difference from nilearn: {worst:.2e} of max(|value|, RMS)");
}

#[test]
fn smoothing_is_refused_out_of_range() {
    use cortexflow::store::recipe::EncodingSection;
    for bad in [0.0, -3.0, f64::NAN, f64::INFINITY, 51.0] {
        let s = EncodingSection { smoothing_fwhm: Some(bad), ..EncodingSection::default() };
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("encoding.smoothing_fwhm"), "{e}");
    }
}
