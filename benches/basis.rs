//! Online dictionary learning on T = 300 scans × N = 36,864 AN series (the size of
//! BERT-base's ffn.inner), K = 64, λ = 0.1, batch 256, 3 passes: cortexflow against
//! scikit-learn's MiniBatchDictionaryLearning and against SPAMS `trainDL` (Mairal's own
//! implementation of the method) on the same matrix, each in its own process. Each side's
//! time covers learning and the final codes of every sample (scikit-learn's codes are left
//! out of its time, as they come from a separate solver call at 1,000 sweeps). All report
//! the final objective ½‖X − D·A‖² + λ‖A‖₁ with codes re-computed by lasso against their
//! final atoms; the check is that ours is no higher (within 1%), nor more than 1% lower (a
//! lower value from a broken fit or objective is no success either).
//! The matrix is synthetic (sparse codes on 96 random atoms plus noise), written once as
//! little-endian f32 and read by both sides.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, compare, peak_mib, python_has, run_child};
use cortexflow::kernels::dictionary::{fit, normalise_columns, objective, OdlOptions};
use cortexflow::kernels::lasso::LassoOptions;
use ndarray::Array2;
use rand::{Rng, SeedableRng};

/// The same allocator as the `cortexflow` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use rand_distr::StandardNormal;

const T: usize = 300;
const N: usize = 36_864;
const K: usize = 64;
const LAMBDA: f64 = 0.1;
const EPOCHS: usize = 3;

/// The T × N matrix, transposed: N × T, row i the series of AN i.
fn read_matrix(path: &Path) -> Array2<f64> {
    let bytes = std::fs::read(path).expect("matrix");
    let at = |t: usize, i: usize| {
        let o = 4 * (t * N + i);
        f32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as f64
    };
    // Read straight into N × T (no T × N copy beside it).
    Array2::from_shape_fn((N, T), |(i, t)| at(t, i))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        // Column-major, each AN's series contiguous, as the `basis` stage lays it out.
        let xt = read_matrix(Path::new(&args[2]));
        let x = xt.t();
        let t = Instant::now();
        let f = fit(
            x.view(),
            &OdlOptions {
                atoms: K,
                lambda: LAMBDA,
                batch: 256,
                max_epochs: EPOCHS,
                // No early stop: exactly EPOCHS passes, as the anchor's tol=0.0 and
                // max_no_improvement=None, so both sides time the same work.
                tol: 0.0,
                ..Default::default()
            },
        )
        .expect("dictionary fit");
        let (obj, _) = objective(
            f.atoms.view(),
            x.view(),
            &LassoOptions {
                lambda: LAMBDA,
                tol: 1e-6,
                ..Default::default()
            },
        );
        let secs = t.elapsed().as_secs_f64();
        println!("{} {} {obj}", f.atoms.nrows(), f.atoms.ncols());
        println!("{secs} {}", peak_mib());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let d = Array2::from_shape_simple_fn((T, 96), || rng.sample::<f64, _>(StandardNormal));
    let a = Array2::from_shape_simple_fn((96, N), || {
        if rng.random::<f64>() < 0.05 {
            rng.sample::<f64, _>(StandardNormal)
        } else {
            0.0
        }
    });
    let mut x = d.dot(&a)
        + Array2::from_shape_simple_fn((T, N), || 0.5 * rng.sample::<f64, _>(StandardNormal));
    normalise_columns(&mut x);
    let bytes: Vec<u8> = x.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
    std::fs::write(file.path(), bytes).unwrap();
    drop(x);
    let me = std::env::current_exe().unwrap();
    let ours = || {
        run_child(
            Command::new(&me)
                .args(["--child", file.path().to_str().unwrap()])
                .env("RAYON_NUM_THREADS", "2"),
        )
    };
    let anchor = |script: &str| {
        run_child(
            Command::new("python3")
                .arg(anchor_script(script))
                .args([
                    file.path().to_str().unwrap(),
                    &T.to_string(),
                    &N.to_string(),
                    &K.to_string(),
                    &LAMBDA.to_string(),
                    &EPOCHS.to_string(),
                ])
                .env("OMP_NUM_THREADS", "2")
                .env("OPENBLAS_NUM_THREADS", "2"),
        )
    };
    // SPAMS and ours take well under a second and vary by ±20% from run to run on these
    // machines: each side's median of 5 runs (scikit-learn, a minute a run, runs once).
    let o = common::median((0..5).map(|_| ours()).collect());
    let what = format!("basis: {T} × {N}, K = {K}, λ = {LAMBDA}, {EPOCHS} passes");
    for (name, module, script) in [
        ("scikit-learn", "sklearn", "basis.py"),
        ("SPAMS", "spams", "basis_spams.py"),
    ] {
        if !python_has(module) {
            println!("basis: cortexflow {:.2} s, peak {:.1} MiB, objective {:.3}; {name} anchor not run ({module} not found)", o.seconds, o.peak_mib, o.result[2]);
            continue;
        }
        let runs = if module == "spams" { 5 } else { 1 };
        let a = common::median((0..runs).map(|_| anchor(script)).collect());
        println!(
            "basis: objective cortexflow {:.3}, {name} {:.3} (ratio {:.4})",
            o.result[2],
            a.result[2],
            o.result[2] / a.result[2]
        );
        // Both sides descend the same non-convex objective from different seeded starts
        // and mini-batch orders (sklearn and SPAMS code their batches by LARS), so they
        // end in nearby, not equal, optima: measured 10,984.9 against scikit-learn's
        // 11,017.2 (ours 0.29% lower). 1% either way allows 3× that and still catches a
        // fit that learns little or an objective that drops a term: all-zero codes give
        // ½‖X‖² = N/2 = 18,432 (unit-norm columns).
        compare(&what, 1, 0.01, || o, name, || a);
    }
}
