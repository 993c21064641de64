//! `cortexflow encode` end to end on simulated data, and its input errors.

use std::path::{Path, PathBuf};

use super::common::{cortexflow_fails, fixtures, ok, test_data, truth_responses};

/// simulate → basis on the planted AN responses → encode: the fitted maps carry the planted
/// signal (cv_r in the planted networks well above the rest of the cortex).
fn pipeline(dir: &Path) -> (PathBuf, Vec<String>, Vec<String>) {
    let sim = dir.join("sim");
    ok(&[
        "simulate",
        "--out",
        sim.to_str().unwrap(),
        "--subjects",
        "2",
        "--runs",
        "2",
        "--scans",
        "120",
        "--seed",
        "4",
    ]);
    let resp = truth_responses(&sim, 2);
    let basis = dir.join("basis");
    ok(&[
        "basis",
        "--responses",
        &resp.join(","),
        "--atoms",
        "6",
        "--lambda",
        "0.1",
        "--out",
        basis.to_str().unwrap(),
    ]);
    let atoms: Vec<String> = (1..=2)
        .map(|r| {
            basis
                .join(format!("atoms/task-lpp_run-{r}.parquet"))
                .display()
                .to_string()
        })
        .collect();
    let bold: Vec<String> = ["01", "02"]
        .iter()
        .flat_map(|s| {
            (1..=2).map(move |r| format!("sub-{s}/func/sub-{s}_task-lpp_run-{r}_bold.nii.gz"))
        })
        .map(|p| sim.join(p).display().to_string())
        .collect();
    (sim, atoms, bold)
}

#[test]
fn encode_recovers_the_planted_signal_and_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, atoms, bold) = pipeline(dir.path());
    let out = dir.path().join("enc");
    let text = ok(&[
        "encode",
        "--regressors",
        &atoms.join(","),
        "--bold",
        &bold.join(","),
        "--mask",
        sim.join("mask.nii.gz").to_str().unwrap(),
        "--zscore",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("sub-01: 2 runs, 8268 voxels"), "{text}");
    let maps = cortexflow::io::nifti::read_image(&sim.join("truth/maps.nii.gz")).unwrap();
    for s in ["01", "02"] {
        for f in ["beta", "t", "z", "cv_r", "cv_r2", "alpha"] {
            assert!(out.join(format!("sub-{s}/{f}.nii.gz")).is_file(), "{f}");
        }
        let beta =
            cortexflow::io::nifti::read_image(&out.join(format!("sub-{s}/beta.nii.gz"))).unwrap();
        assert_eq!(beta.data.dim().3, 6, "one β volume per atom");
        let r =
            cortexflow::io::nifti::read_image(&out.join(format!("sub-{s}/cv_r.nii.gz"))).unwrap();
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for ((i, j, k, _), &v) in r.data.indexed_iter() {
            if !v.is_finite() || v == 0.0 {
                continue;
            }
            let planted = (0..3).any(|g| maps.data[[i, j, k, g]] > 0.0);
            if planted {
                inside.push(v as f64)
            } else {
                outside.push(v as f64)
            }
        }
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        assert!(
            mean(&inside) > mean(&outside) + 0.1,
            "sub-{s}: cv_r inside {} outside {}",
            mean(&inside),
            mean(&outside)
        );
    }
    assert!(out.join("voxel_fits.parquet").is_file());
}

#[test]
fn encode_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, atoms, bold) = pipeline(dir.path());
    let mask = sim.join("mask.nii.gz").display().to_string();
    let out = dir.path().join("o").display().to_string();
    // Scan counts that differ from the regressors'.
    let short = dir.path().join("short");
    ok(&[
        "simulate",
        "--out",
        short.to_str().unwrap(),
        "--subjects",
        "1",
        "--runs",
        "2",
        "--scans",
        "100",
    ]);
    let short_bold: Vec<String> = (1..=2)
        .map(|r| {
            short
                .join(format!("sub-01/func/sub-01_task-lpp_run-{r}_bold.nii.gz"))
                .display()
                .to_string()
        })
        .collect();
    let e = cortexflow_fails(&[
        "encode",
        "--regressors",
        &atoms.join(","),
        "--bold",
        &short_bold.join(","),
        "--mask",
        &mask,
        "--out",
        &out,
    ]);
    assert!(e.contains("100 scans") && e.contains("120"), "{e}");
    // A mask on another grid.
    let lpp_mask = test_data().join("stimuli/lpp-en/mask_lpp_en.nii.gz");
    let e = cortexflow_fails(&[
        "encode",
        "--regressors",
        &atoms.join(","),
        "--bold",
        &bold[..2].join(","),
        "--mask",
        lpp_mask.to_str().unwrap(),
        "--out",
        &out,
    ]);
    assert!(
        e.contains("mask_lpp_en.nii.gz") && e.contains("grid"),
        "{e}"
    );
    // Runs of different grids within a subject.
    let odd = dir.path().join("sub-01_task-lpp_run-2_bold.nii.gz");
    std::fs::copy(fixtures().join("nifti/bigendian_float64.nii.gz"), &odd).unwrap();
    let e = cortexflow_fails(&[
        "encode",
        "--regressors",
        &atoms.join(","),
        "--bold",
        &format!("{},{}", bold[0], odd.display()),
        "--mask",
        &mask,
        "--out",
        &out,
    ]);
    assert!(
        e.contains("differs from the grid of") && e.contains(&bold[0]),
        "{e}"
    );
    // A BOLD file whose name does not say its subject.
    let anonymous = dir.path().join("task-lpp_run-1_bold.nii.gz");
    std::fs::copy(&bold[0], &anonymous).unwrap();
    let e = cortexflow_fails(&[
        "encode",
        "--regressors",
        &atoms[0],
        "--bold",
        anonymous.to_str().unwrap(),
        "--mask",
        &mask,
        "--no-cv",
        "--out",
        &out,
    ]);
    assert!(
        e.contains("task-lpp_run-1_bold.nii.gz") && e.contains("no sub-<label>"),
        "{e}"
    );
    // A 3-D image given as a run is said to be 3-D (not "no repetition time").
    let flat = dir.path().join("flat/sub-01_task-lpp_run-1_bold.nii.gz");
    std::fs::create_dir_all(flat.parent().unwrap()).unwrap();
    std::fs::copy(sim.join("mask.nii.gz"), &flat).unwrap();
    let e = cortexflow_fails(&[
        "encode",
        "--regressors",
        &atoms[0],
        "--bold",
        flat.to_str().unwrap(),
        "--mask",
        &mask,
        "--no-cv",
        "--out",
        &out,
    ]);
    assert!(
        e.contains("sub-01_task-lpp_run-1_bold.nii.gz: is 3-D (one volume); a BOLD run needs 4 dimensions"),
        "{e}"
    );
    // One run with cross-validation requested; fine with --no-cv.
    let e = cortexflow_fails(&[
        "encode",
        "--regressors",
        &atoms[0],
        "--bold",
        &bold[0],
        "--mask",
        &mask,
        "--out",
        &out,
    ]);
    assert!(
        e.contains("needs at least 2 runs") && e.contains("--no-cv"),
        "{e}"
    );
    ok(&[
        "encode",
        "--regressors",
        &atoms[0],
        "--bold",
        &bold[0],
        "--mask",
        &mask,
        "--no-cv",
        "--out",
        &out,
    ]);
}

/// A run's columns divided by the sd of their residual after `nuisance` (a least-squares
/// fit, here by the normal equations), as `encode` standardises BOLD after the run's
/// nuisance columns (nilearn's `signal.clean` order). The nuisance holds an intercept, so
/// the means go into its coefficient.
fn standardised(y: &ndarray::Array2<f64>, nuisance: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    use cortexflow::kernels::{glm::ols, ridge_stats::RunStats};
    let fit = ols(&RunStats::from_block(nuisance.view(), y.view())).unwrap();
    let resid = y - &nuisance.dot(&fit.beta);
    let mut y = y.clone();
    for (mut c, r) in y.columns_mut().into_iter().zip(resid.columns()) {
        let m = r.mean().unwrap();
        let sd = (r.iter().map(|x| (x - m).powi(2)).sum::<f64>() / r.len() as f64).sqrt();
        c.mapv_inplace(|x| x / sd);
    }
    y
}

/// Each run's confounds get their own coefficients: encode's β and t equal those of one
/// joint OLS whose design holds run r's confounds (and drift, intercept) only in run r's
/// rows — Frisch–Waugh–Lovell, so a closed form. The same data with the confounds shared
/// across runs (one coefficient each) gives other β, so the check can tell them apart.
/// Tolerance: maps are stored as float32 (1e-5 of the largest |β| or |t|).
#[test]
fn confounds_are_projected_out_run_by_run() {
    use cortexflow::io::{nifti, parquet::read_atoms};
    use cortexflow::kernels::{design::cosine_drift, glm::ols, ridge_stats::RunStats};
    use ndarray::{s, Array2};

    let dir = tempfile::tempdir().unwrap();
    let (sim, atoms, bold) = pipeline(dir.path());
    let mask_path = sim.join("mask.nii.gz");
    let mask = nifti::read_mask(&mask_path).unwrap();
    let n = 120;
    // Two confounds per run: a seeded pseudo-random series and a ramp, different per run.
    let confound = |r: usize, t: usize| -> [f64; 2] {
        let h = ((t * 2654435761 + r * 40503) % 1000) as f64 / 1000.0 - 0.5;
        [h, (t as f64 / n as f64) * (r as f64 + 1.0)]
    };
    let mut tsv = Vec::new();
    for r in 0..2 {
        let path = dir.path().join(format!("conf{r}.tsv"));
        let rows: Vec<String> = (0..n)
            .map(|t| format!("{}\t{}", confound(r, t)[0], confound(r, t)[1]))
            .collect();
        std::fs::write(&path, format!("noise\tramp\n{}\n", rows.join("\n"))).unwrap();
        tsv.push(path.display().to_string());
    }
    let out = dir.path().join("o");
    ok(&[
        "encode", "--regressors", &atoms.join(","), "--bold", &bold[..2].join(","),
        "--mask", mask_path.to_str().unwrap(), "--confounds", &tsv.join(","), "--no-cv",
        "--out", out.to_str().unwrap(),
    ]);
    let a: Vec<Array2<f64>> = atoms.iter().map(|p| read_atoms(Path::new(p)).unwrap().1).collect();
    let k = a[0].ncols();
    let drift = cosine_drift(n, 2.0, 0.01);
    let d = drift.ncols();
    let y: Vec<Array2<f64>> = bold[..2]
        .iter()
        .enumerate()
        .map(|(r, b)| {
            let data = nifti::read_bold(Path::new(b), Some((&mask_path, &mask))).unwrap().data;
            let nuisance = Array2::from_shape_fn((n, 2 + d), |(t, c)| match c {
                0 | 1 => confound(r, t)[c],
                _ => drift[[t, c - 2]],
            });
            standardised(&data.mapv(f64::from), &nuisance)
        })
        .collect();
    // [atoms | confounds: per run, or shared | drift and intercept per run]
    let design = |per_run: bool| -> Array2<f64> {
        let c = if per_run { 4 } else { 2 };
        let mut x = Array2::zeros((2 * n, k + c + 2 * d));
        for r in 0..2 {
            let rows = r * n..(r + 1) * n;
            x.slice_mut(s![rows.clone(), ..k]).assign(&a[r]);
            let c0 = k + if per_run { 2 * r } else { 0 };
            for t in 0..n {
                let [h, ramp] = confound(r, t);
                x[[r * n + t, c0]] = h;
                x[[r * n + t, c0 + 1]] = ramp;
            }
            x.slice_mut(s![rows, k + c + r * d..k + c + (r + 1) * d]).assign(&drift);
        }
        x
    };
    let y_all = ndarray::concatenate(ndarray::Axis(0), &[y[0].view(), y[1].view()]).unwrap();
    let fit = |per_run| ols(&RunStats::from_block(design(per_run).view(), y_all.view())).unwrap();
    let (joint, shared) = (fit(true), fit(false));
    let map = |name: &str| mask.rows(&nifti::read_image(&out.join(format!("sub-01/{name}.nii.gz"))).unwrap());
    let worst = |want: &Array2<f64>, got: &Array2<f64>| -> f64 {
        assert_eq!(want.dim(), got.dim());
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        want.iter().zip(got).fold(0.0f64, |m, (w, g)| m.max((w - g).abs())) / scale
    };
    let (beta, t) = (map("beta"), map("t"));
    let want_beta = joint.beta.slice(s![..k, ..]).to_owned();
    assert!(worst(&want_beta, &beta) < 1e-5, "β: {:.2e}", worst(&want_beta, &beta));
    let want_t = joint.t.slice(s![..k, ..]).to_owned();
    assert!(worst(&want_t, &t) < 1e-5, "t: {:.2e}", worst(&want_t, &t));
    let other = shared.beta.slice(s![..k, ..]).to_owned();
    assert!(worst(&other, &beta) > 1e-3, "shared confounds are indistinguishable");
}

/// A NaN confound would make every fit NaN silently; a device would be read forever.
#[test]
fn confounds_are_finite_numbers_in_a_regular_file() {
    use cortexflow::stages::confounds::given as read_confounds;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.tsv");
    std::fs::write(&p, "a\tb\n1\tn/a\n2\t3\n3\tinf\n").unwrap();
    let e = read_confounds(&p, 3).unwrap_err().to_string();
    assert!(e.contains("c.tsv: column 'b' has no finite value at scan 2 (row 4)"), "{e}");
    let e = read_confounds(&p, 4).unwrap_err().to_string();
    assert!(e.contains("c.tsv: 3 rows, but its BOLD run has 4 scans"), "{e}");
    std::fs::write(&p, "a\tb\n1\tn/a\n2\t3\n").unwrap();
    // A derivative's first-row n/a takes the second row's value, as in nilearn.
    assert_eq!(read_confounds(&p, 2).unwrap().columns[1][0], 3.0);
    let e = read_confounds(Path::new("/dev/zero"), 2).unwrap_err().to_string();
    assert!(e.contains("/dev/zero: is not a regular file"), "{e}");
}
