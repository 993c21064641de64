//! Cross-validated ridge encoding: 4 runs × 300 scans × V voxels × 64 regressors, 10 α,
//! leave-one-run-out — cortexflow's run statistics (RunStats per run, one
//! eigendecomposition per fold) against himalaya's RidgeCV (numpy backend) with a
//! LeaveOneGroupOut splitter, at V = 12,500, 25,000 and 50,000 (linear scaling), each in its
//! own process, and against himalaya in float32 too (its documented fast setting). All
//! sides read the same float32 data; the check is that they choose the same α at ≥ 99.9%
//! of voxels and the same coefficients (sum of the refitted β, to 1e-4 against float64
//! and 1e-3 against float32). Also OLS (β and t of every regressor) at
//! V = 50,000 against nilearn's OLSModel, the model FirstLevelModel(noise_model="ols") fits.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, compare, peak_mib, python_has, run_child};
use cortexflow::kernels::cv::{alpha_grid, ridge_cv};
use cortexflow::kernels::glm::ols;
use cortexflow::kernels::ridge_stats::RunStats;
use ndarray::{s, Array2};
use rand::{Rng, SeedableRng};

/// The same allocator as the `cortexflow` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use rand_distr::StandardNormal;

const RUNS: usize = 4;
const SCANS: usize = 300;
const P: usize = 64;
/// Runs of each side; the median is reported (this machine's times vary by ±20%).
const REPEATS: usize = 3;

fn read(path: &Path, cols: usize) -> Array2<f32> {
    let bytes = std::fs::read(path).expect("data");
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Array2::from_shape_vec((v.len() / cols, cols), v).expect("shape")
}

/// The fraction of voxels whose chosen α agree, to 1e-6 relative: the grids are the same
/// logspace computed by two libraries, and himalaya in float32 reports α in float32.
fn same_alphas(a: &Path, b: &Path) -> f64 {
    let read = |p: &Path| -> Vec<f64> {
        std::fs::read(p)
            .expect("chosen α")
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.len(), b.len(), "chosen α of different voxel counts");
    let same = a.iter().zip(&b).filter(|(x, y)| (*x - *y).abs() <= 1e-6 * x.abs()).count();
    same as f64 / a.len() as f64
}

/// Writes a data file and waits for it to reach the disk, so that no write-back runs
/// beside the timed children that read it.
fn write_synced(path: &Path, bytes: Vec<u8>) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create a data file");
    f.write_all(&bytes).expect("write a data file");
    f.sync_all().expect("sync a data file");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let v: usize = args[4].parse().unwrap();
        let t = Instant::now();
        let x = read(Path::new(&args[2]), P).mapv(f64::from);
        let y = read(Path::new(&args[3]), v);
        // Runs reduced side by side, as `run`'s workers reduce them.
        use rayon::prelude::*;
        let runs: Vec<RunStats> = (0..RUNS)
            .into_par_iter()
            .map(|r| {
                RunStats::from_block(
                    x.slice(s![r * SCANS..(r + 1) * SCANS, ..]),
                    y.slice(s![r * SCANS..(r + 1) * SCANS, ..]),
                )
            })
            .collect();
        let beta = if args.get(5).map(String::as_str) == Some("ols") {
            let mut total = runs[0].clone();
            runs[1..].iter().for_each(|r| total.add(r));
            let fit = ols(&total).expect("ols");
            assert!(fit.t.iter().all(|v| v.is_finite()));
            fit.beta
        } else {
            let fit = ridge_cv(&runs, &alpha_grid(-2.0, 5.0, 10)).expect("ridge");
            if let Ok(path) = std::env::var("ALPHAS_OUT") {
                let bytes: Vec<u8> = fit.alpha.iter().flat_map(|a| a.to_le_bytes()).collect();
                std::fs::write(path, bytes).expect("write the chosen α");
            }
            fit.beta
        };
        let secs = t.elapsed().as_secs_f64();
        println!("{} {} {}", beta.nrows(), beta.ncols(), beta.sum());
        println!("{secs} {}", peak_mib());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let me = std::env::current_exe().unwrap();
    let himalaya = python_has("himalaya, sklearn");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let n = RUNS * SCANS;
    let x = Array2::<f32>::from_shape_simple_fn((n, P), || rng.sample(StandardNormal));
    let xp = dir.path().join("x.f32");
    write_synced(&xp, x.iter().flat_map(|v| v.to_le_bytes()).collect());
    for v in [12_500usize, 25_000, 50_000] {
        // Each voxel: a sparse mix of regressors at varied signal-to-noise, then noise.
        let w = Array2::<f32>::from_shape_simple_fn((P, v), || {
            if rng.random::<f32>() < 0.1 {
                rng.sample::<f32, _>(StandardNormal) * 0.3
            } else {
                0.0
            }
        });
        let y =
            x.dot(&w) + Array2::<f32>::from_shape_simple_fn((n, v), || rng.sample(StandardNormal));
        let yp = dir.path().join(format!("y{v}.f32"));
        write_synced(&yp, y.iter().flat_map(|v| v.to_le_bytes()).collect());
        drop(y);
        let args = [
            xp.to_str().unwrap().to_string(),
            yp.to_str().unwrap().to_string(),
            v.to_string(),
        ];
        let alphas = |side: &str| dir.path().join(format!("alphas-{side}-{v}.f64"));
        let ours = || {
            run_child(
                Command::new(&me)
                    .arg("--child")
                    .args(&args)
                    .env("RAYON_NUM_THREADS", "2")
                    .env("ALPHAS_OUT", alphas("cortexflow")),
            )
        };
        if !himalaya {
            let s = ours();
            println!("encoding V = {v}: cortexflow {:.2} s, peak {:.1} MiB; anchor not run (himalaya not found)", s.seconds, s.peak_mib);
            continue;
        }
        // himalaya in float64 (cortexflow's precision) and in float32 (the precision its
        // documentation recommends for speed, so its fastest CPU configuration).
        for (precision, tol) in [("float64", 1e-4), ("float32", 1e-3)] {
            let side = format!("himalaya-{precision}");
            let anchor = || {
                run_child(
                    Command::new("python3")
                        .arg(anchor_script("encoding.py"))
                        .args(&args)
                        .args([RUNS.to_string(), SCANS.to_string(), precision.to_string()])
                        .env("OMP_NUM_THREADS", "2")
                        .env("OPENBLAS_NUM_THREADS", "2")
                        .env("ALPHAS_OUT", alphas(&side)),
                )
            };
            compare(&format!("encoding: {RUNS} runs × {SCANS} scans × {v} voxels × {P} regressors, 10 α, leave-one-run-out, himalaya in {precision}"), REPEATS, tol, ours, &side, anchor);
            let same = same_alphas(&alphas("cortexflow"), &alphas(&side));
            println!("  same α chosen at {:.3}% of voxels", 100.0 * same);
            // A voxel whose two best α score within rounding may go either way; more
            // than 1 in 1,000 would be a real difference in the search.
            assert!(same >= 0.999, "α chosen differ at {:.3}% of voxels", 100.0 * (1.0 - same));
        }
        if v == 50_000 && python_has("nilearn") {
            let ours = || {
                run_child(
                    Command::new(&me)
                        .arg("--child")
                        .args(&args)
                        .arg("ols")
                        .env("RAYON_NUM_THREADS", "2"),
                )
            };
            let anchor = || {
                run_child(
                    Command::new("python3")
                        .arg(anchor_script("encoding_ols.py"))
                        .args(&args)
                        .args([RUNS.to_string(), SCANS.to_string()])
                        .env("OMP_NUM_THREADS", "2")
                        .env("OPENBLAS_NUM_THREADS", "2"),
                )
            };
            compare(
                &format!(
                    "encoding OLS (β, t): {RUNS} × {SCANS} scans × {v} voxels × {P} regressors"
                ),
                REPEATS,
                1e-6,
                ours,
                "nilearn",
                anchor,
            );
        }
    }
}
