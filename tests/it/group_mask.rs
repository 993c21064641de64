//! `intersect-masks` against nilearn 0.14's `intersect_masks` (fixture made by
//! scripts/fixtures/make_mask_fixtures.py on five synthetic subject masks cut from the real
//! MNI152 T1): identical voxels at thresholds 0, 0.5, 0.7 and 1, with and without the
//! largest-connected-component step. Exact: a voxel set has no tolerance.

use cortexflow::io::nifti;

use super::common::{cortexflow_fails, fixture_json, fixtures, ok};

#[test]
fn group_masks_equal_nilearns_intersect_masks() {
    let reference = fixture_json("masks_nilearn.json");
    let masks: Vec<String> = reference["masks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| fixtures().join("masks").join(m.as_str().unwrap()).display().to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let all = masks.join(",");
    for case in reference["cases"].as_array().unwrap() {
        let threshold = case["threshold"].as_f64().unwrap().to_string();
        let out = dir.path().join(format!("group-{threshold}.nii.gz"));
        let mut args = vec!["intersect-masks", "--masks", &all, "--threshold", &threshold];
        let out_s = out.display().to_string();
        args.extend(["--out", &out_s]);
        if !case["connected"].as_bool().unwrap() {
            args.push("--all-components");
        }
        ok(&args);
        let idx: Vec<f64> = nifti::read_mask(&out).unwrap().linear.iter().map(|&l| l as f64).collect();
        let what = format!("threshold {threshold}, connected {}", case["connected"]);
        assert_eq!(idx.len() as u64, case["voxels"].as_u64().unwrap(), "{what}");
        assert_eq!(idx.iter().sum::<f64>(), case["sum_index"].as_f64().unwrap(), "{what}");
        assert_eq!(idx.iter().map(|i| i * i).sum::<f64>(), case["sum_index_sq"].as_f64().unwrap(), "{what}");
    }
    // What nilearn refuses is refused: a mask of three values, another grid, a threshold
    // outside [0, 1].
    let three = dir.path().join("three.nii.gz");
    let img = nifti::read_image(std::path::Path::new(&masks[0])).unwrap();
    let mut data = img.data.clone();
    data[[20, 20, 20, 0]] = 2.0;
    nifti::write_map(&three, &img.header.grid, &data, None).unwrap();
    let e = cortexflow_fails(&["intersect-masks", "--masks", &format!("{},{}", masks[0], three.display()), "--out", "x.nii.gz"]);
    assert!(e.contains("a mask holds 0 and one other value"), "{e}");
    let other = super::common::test_data().join("atlases/yeo2011/Yeo-7_space-MNI152NLin6_res-2x2x2.nii.gz");
    let e = cortexflow_fails(&["intersect-masks", "--masks", &format!("{},{}", masks[0], other.display()), "--out", "x.nii.gz"]);
    assert!(e.contains("Yeo-7_space-MNI152NLin6_res-2x2x2.nii.gz"), "{e}");
    let e = cortexflow_fails(&["intersect-masks", "--masks", &masks[0], "--threshold", "1.5", "--out", "x.nii.gz"]);
    assert!(e.contains("--threshold 1.5"), "{e}");
    assert!(!std::path::Path::new("x.nii.gz").exists());
}
