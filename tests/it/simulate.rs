//! `cortexflow simulate`: the dataset is discoverable, consistent with its ground truth,
//! deterministic, and the planted signal is where the truth says.

use std::path::{Path, PathBuf};

use cortexflow::io::{bids, nifti};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::common::{cortexflow, pearson, python_check};

fn simulate(dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join("sim");
    let mut args = vec![
        "simulate",
        "--out",
        out.to_str().unwrap(),
        "--subjects",
        "2",
        "--runs",
        "2",
        "--scans",
        "80",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    let o = cortexflow(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}


fn lists(path: &Path, column: &str) -> Vec<Vec<f64>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = batch.column_by_name(column).unwrap();
        let list = col
            .as_any()
            .downcast_ref::<arrow_array::FixedSizeListArray>()
            .unwrap();
        for i in 0..list.len() {
            let v = list.value(i);
            let f = v
                .as_any()
                .downcast_ref::<arrow_array::Float32Array>()
                .unwrap();
            out.push(f.values().iter().map(|&x| x as f64).collect());
        }
    }
    out
}

use arrow_array::Array;

#[test]
fn simulated_dataset_is_consistent_with_its_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = simulate(dir.path(), &[]);
    let ds = bids::discover(&out, None).unwrap();
    assert_eq!(ds.runs.len(), 4);
    assert!(ds.missing.is_empty(), "{:?}", ds.missing);
    assert!(ds.runs.iter().all(|r| r.stimulus.is_some()));
    let mask_path = ds.mask.clone().unwrap();
    let mask = nifti::read_mask(&mask_path).unwrap();
    assert_eq!(mask.len(), 8268, "Yeo-7 cortex at 4 mm");

    let planted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("truth/planted.json")).unwrap())
            .unwrap();
    let nets = planted["networks"].as_array().unwrap();
    assert_eq!(
        nets.iter()
            .map(|n| n["label"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![7, 6, 2]
    );
    let mut all_ids: Vec<u64> = nets
        .iter()
        .flat_map(|n| {
            n["an_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
        })
        .collect();
    assert_eq!(all_ids.len(), 72);
    all_ids.sort_unstable();
    all_ids.dedup();
    assert_eq!(all_ids.len(), 72, "planted groups are disjoint");

    let maps = nifti::read_image(&out.join("truth/maps.nii.gz")).unwrap();
    let atlas =
        nifti::read_image(&out.join("atlas/Yeo-7_space-MNI152NLin6_res-4x4x4.nii.gz")).unwrap();
    assert_eq!(maps.data.dim().3, 3);
    for (g, n) in nets.iter().enumerate() {
        let label = n["label"].as_f64().unwrap() as f32;
        let count = maps
            .data
            .index_axis(ndarray::Axis(3), g)
            .iter()
            .filter(|&&v| v == 1.0)
            .count();
        assert_eq!(count as u64, n["n_voxels"].as_u64().unwrap());
        let atlas_count = atlas.data.iter().filter(|&&v| v == label).count();
        assert_eq!(
            count, atlas_count,
            "truth map {g} is the Yeo network {label}"
        );
    }

    for run in &ds.runs {
        let bold = nifti::read_bold(&run.bold, Some((&mask_path, &mask))).unwrap();
        assert_eq!(bold.header.tr, Some(2.0));
        assert_eq!(bold.data.nrows(), 80);
        let key = format!("task-lpp_run-{}", run.run);
        // Planted time course = z-scored mean response of the group's ANs.
        let responses = lists(
            &out.join(format!("truth/responses/{key}.parquet")),
            "values",
        );
        let courses = lists(
            &out.join(format!("truth/timecourses/{key}.parquet")),
            "values",
        );
        assert_eq!(responses.len(), 384);
        for (g, n) in nets.iter().enumerate() {
            let ids: Vec<usize> = n["an_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let mean: Vec<f64> = (0..80)
                .map(|t| ids.iter().map(|&u| responses[u][t]).sum::<f64>() / ids.len() as f64)
                .collect();
            assert!(
                pearson(&mean, &courses[g]) > 0.99999,
                "course {g} is the group mean response"
            );
        }
        // Signal sits in the planted network as shifted by the subject's jitter: voxels of
        // network g follow course g, voxels of no planted network follow none.
        let subject = planted["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == run.subject.as_str())
            .unwrap();
        let shift: Vec<i64> = subject["shift_voxels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let label_at = |ijk: [usize; 3]| -> f32 {
            let src: Vec<i64> = (0..3).map(|d| ijk[d] as i64 - shift[d]).collect();
            let dims = atlas.data.dim();
            let inside = src
                .iter()
                .zip([dims.0, dims.1, dims.2])
                .all(|(&c, n)| c >= 0 && (c as usize) < n);
            if inside {
                atlas.data[[src[0] as usize, src[1] as usize, src[2] as usize, 0]]
            } else {
                0.0
            }
        };
        for (g, n) in nets.iter().enumerate() {
            let label = n["label"].as_f64().unwrap() as f32;
            let (mut inside, mut outside) = (Vec::new(), Vec::new());
            for (v, ijk) in mask.ijk().enumerate() {
                let series: Vec<f64> = bold.data.column(v).iter().map(|&x| x as f64).collect();
                let r = pearson(&series, &courses[g]);
                let l = label_at(ijk);
                if l == label {
                    inside.push(r)
                } else if !nets
                    .iter()
                    .any(|n| n["label"].as_f64().unwrap() as f32 == l)
                {
                    outside.push(r)
                }
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            // Expected inside: γ√snr·w/√(γ²snr·w² + 1 + drift var ≈ 0.375) ≈ 0.5 at snr 0.5 and
            // γ = 1; subjects with a gain below 1 sit lower, hence the margin.
            assert!(
                mean(&inside) > 0.3,
                "{}: inside r = {}",
                run.key(),
                mean(&inside)
            );
            assert!(
                mean(&outside).abs() < 0.05,
                "{}: outside r = {}",
                run.key(),
                mean(&outside)
            );
        }
    }
    python_check("check_simulation.py", &[&out]);
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_null_plants_nothing() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (sa, sb) = (simulate(a.path(), &[]), simulate(b.path(), &[]));
    for rel in [
        "sub-02/func/sub-02_task-lpp_run-2_bold.nii.gz",
        "truth/planted.json",
        "truth/responses/task-lpp_run-1.parquet",
        "stimuli/task-lpp_run-1.tsv",
    ] {
        assert_eq!(
            std::fs::read(sa.join(rel)).unwrap(),
            std::fs::read(sb.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let n = tempfile::tempdir().unwrap();
    let sn = simulate(n.path(), &["--null"]);
    let mask = nifti::read_mask(&sn.join("mask.nii.gz")).unwrap();
    let atlas =
        nifti::read_image(&sn.join("atlas/Yeo-7_space-MNI152NLin6_res-4x4x4.nii.gz")).unwrap();
    let bold = nifti::read_bold(
        &sn.join("sub-01/func/sub-01_task-lpp_run-1_bold.nii.gz"),
        Some((&sn.join("mask.nii.gz"), &mask)),
    )
    .unwrap();
    let course = &lists(
        &sn.join("truth/timecourses/task-lpp_run-1.parquet"),
        "values",
    )[0];
    let rs: Vec<f64> = mask
        .ijk()
        .enumerate()
        .filter(|(_, ijk)| atlas.data[[ijk[0], ijk[1], ijk[2], 0]] == 7.0)
        .map(|(v, _)| {
            pearson(
                &bold
                    .data
                    .column(v)
                    .iter()
                    .map(|&x| x as f64)
                    .collect::<Vec<_>>(),
                course,
            )
        })
        .collect();
    let mean = rs.iter().sum::<f64>() / rs.len() as f64;
    assert!(
        mean.abs() < 0.05,
        "null data carry no planted signal (mean r = {mean})"
    );
}

/// `--extent brain`: the mask is the MNI152 T1 template above 0.2 of its maximum
/// (nilearn's brain-mask rule, computed here from the template file), every mask voxel
/// carries BOLD and nothing outside it does, and the planted networks stay in the cortex:
/// brain voxels outside the atlas carry no planted signal.
#[test]
fn whole_brain_extent_masks_the_template_and_plants_only_in_the_cortex() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulate(dir.path(), &["--extent", "brain"]);
    let t1 = nifti::read_image(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mni152/MNI152-T1_res-4x4x4.nii.gz").as_path()).unwrap();
    let top = t1.data.iter().copied().fold(0.0f32, f32::max);
    let want: Vec<bool> = t1.data.iter().map(|&v| v > 0.2 * top).collect();
    let mask = nifti::read_image(&sim.join("mask.nii.gz")).unwrap();
    let got: Vec<bool> = mask.data.iter().map(|&v| v > 0.0).collect();
    assert_eq!(got, want, "the mask is the template above 0.2 of its maximum");
    let bold = nifti::read_image(&sim.join("sub-01/func/sub-01_task-lpp_run-1_bold.nii.gz")).unwrap();
    let first = bold.data.index_axis(ndarray::Axis(3), 0);
    assert!(first.iter().zip(&want).all(|(&v, &inside)| (v != 0.0) == inside), "BOLD on the mask's voxels only");
    let atlas = nifti::read_image(&sim.join("atlas/Yeo-7_space-MNI152NLin6_res-4x4x4.nii.gz")).unwrap();
    let course = &lists(&sim.join("truth/timecourses/task-lpp_run-1.parquet"), "values")[0];
    let r = |label: Option<f32>| {
        let rs: Vec<f64> = atlas
            .data
            .indexed_iter()
            .filter(|((i, j, k, _), &l)| t1.data[[*i, *j, *k, 0]] > 0.2 * top && label.map_or(l == 0.0, |w| l == w))
            .map(|((i, j, k, _), _)| pearson(&(0..80).map(|t| bold.data[[i, j, k, t]] as f64).collect::<Vec<_>>(), course))
            .collect();
        (rs.iter().sum::<f64>() / rs.len() as f64, rs.len())
    };
    let (default_mode, n7) = r(Some(7.0));
    let (outside, n0) = r(None);
    assert!(n0 > 10_000 && n7 > 500, "{n0} brain voxels outside the atlas, {n7} in network 7");
    assert!(default_mode > 0.1 && outside.abs() < 0.02, "planted r {default_mode} in network 7, {outside} outside the cortex");
}
