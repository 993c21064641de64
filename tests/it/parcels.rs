//! Region time series against nilearn 0.14's `NiftiLabelsMasker(strategy="mean")` on the
//! real EPI runs in tests/data/fmri (fixture made by
//! scripts/fixtures/make_parcel_fixtures.py): block parcellations with label gaps and a
//! background slab, on each run's own grid and on a finer, shifted grid that both resample
//! onto the run's by nearest neighbour (labels no voxel keeps are left out by both).
//!
//! Tolerance: 1e-6 relative to the largest |mean|. Both average the same float32 values in
//! float64; they differ only in summation order.

use std::collections::BTreeMap;

use super::common::{cortexflow_fails, fixture_json, ok, test_data};

#[test]
fn region_means_equal_nilearn_labels_masker() {
    let fixture = fixture_json("parcels_nilearn.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let dir = tempfile::tempdir().unwrap();
    let mut worst = 0f64;
    for (n, case) in cases.iter().enumerate() {
        let bold = test_data().join(case["image"].as_str().unwrap());
        let labels = test_data().join(case["labels"].as_str().unwrap());
        let out = dir.path().join(n.to_string());
        let done = cortexflow::stages::parcellate::run(std::slice::from_ref(&bold), &labels, &BTreeMap::new(), &out).unwrap();
        let text = std::fs::read_to_string(&done[0].path).unwrap();
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap().split('\t').map(String::from).collect();
        let want_labels: Vec<String> = case["region_labels"].as_array().unwrap().iter().map(|l| format!("region-{}", l.as_u64().unwrap())).collect();
        assert_eq!(header, want_labels, "{}", labels.display());
        let want: Vec<Vec<f64>> = case["signals"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()).collect();
        let scale = want.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
        let got: Vec<Vec<f64>> = lines.map(|l| l.split('\t').map(|v| v.parse().unwrap()).collect()).collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            worst = worst.max((g - w).abs() / scale);
        }
    }
    assert!(worst <= 1e-6, "worst relative difference {worst:.1e}");
    eprintln!("parcellation: worst relative difference {worst:.1e}");
}

#[test]
fn parcellate_names_regions_and_refuses_bad_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bold = test_data().join("fmri/nitime/fmri1.nii.gz");
    let labels = test_data().join("fixtures/parcels/fmri1_labels.nii.gz");
    let names = d.join("names.csv");
    std::fs::write(&names, "label,name\n1,auditory\n3,language\n").unwrap();
    let out = ok(&["parcellate", "--bold", bold.to_str().unwrap(), "--labels", labels.to_str().unwrap(), "--names", names.to_str().unwrap(), "--out", d.join("o").to_str().unwrap()]);
    assert!(out.contains("fmri1_timeseries.tsv: 40 scans × 48 regions"), "{out}");
    let header = std::fs::read_to_string(d.join("o/fmri1_timeseries.tsv")).unwrap();
    assert!(header.starts_with("auditory\tlanguage\tregion-5\t"), "{}", &header[..40]);
    // A BOLD run as labels: 4-D, and not whole numbers.
    let e = cortexflow_fails(&["parcellate", "--bold", bold.to_str().unwrap(), "--labels", bold.to_str().unwrap(), "--out", d.join("p").to_str().unwrap()]);
    assert!(e.contains("40 volumes; a label image is 3-D"), "{e}");
    // Two runs that would write one file; labels float32 cannot hold exactly.
    let e = cortexflow_fails(&["parcellate", "--bold", &format!("{0},{0}", bold.display()), "--labels", labels.to_str().unwrap(), "--out", d.join("q").to_str().unwrap()]);
    assert!(e.contains("would both be written as fmri1_timeseries.tsv"), "{e}");
    let img = cortexflow::io::nifti::read_image(&labels).unwrap();
    let big = d.join("big.nii.gz");
    cortexflow::io::nifti::write_map(&big, &img.header.grid, &img.data.mapv(|v| if v == 3.0 { 3.0e7 } else { v }), None).unwrap();
    let e = cortexflow_fails(&["parcellate", "--bold", bold.to_str().unwrap(), "--labels", big.to_str().unwrap(), "--out", d.join("r").to_str().unwrap()]);
    assert!(e.contains("30000000") && e.contains("16777216"), "{e}");
    assert_eq!(cortexflow::stages::parcellate::timeseries_name(std::path::Path::new("sub-01_task-a_run-1_space-MNI_desc-preproc_bold.nii.gz")), "sub-01_task-a_run-1_space-MNI_timeseries.tsv");
}
