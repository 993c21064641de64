//! How many voxels the ridge's cross-validation takes through its α grid at once
//! (`CvScratch::with_piece`): the study behind `kernels::cv::CACHE_VOXELS`.
//!
//! One engine block (4,096 voxels) of leave-one-run-out ridge, 2 runs × 150 scans, 10 α,
//! at p = 16, 64 and 128 regressors; each piece size in turn, 7 rounds whose order
//! rotates, one fit at a time and two at once (the engine's two workers). Prints the
//! median milliseconds per block and each size's ratio to the whole block at once. Every
//! size computes the same bits (`kernels::cv` tests), so only the speed is compared.
//!
//! `cargo bench --bench ridge_pieces`

use cortexflow::kernels::cv::{alpha_grid, ridge_cv_in, CvScratch};
use cortexflow::kernels::ridge_stats::RunStats;
use ndarray::Array2;
use rand::{Rng, SeedableRng};

const VOXELS: usize = 4096;
const PIECES: [usize; 7] = [4096, 2048, 1024, 512, 256, 128, 64];
const ROUNDS: usize = 7;
const FITS: usize = 3;

fn runs(p: usize, seed: u64) -> Vec<RunStats> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..2)
        .map(|_| {
            let x = Array2::from_shape_simple_fn((150, p), || rng.random_range(-1.0..1.0));
            let y = Array2::from_shape_simple_fn((150, VOXELS), || rng.random_range(-1.0f32..1.0));
            RunStats::from_block(x.view(), y.view())
        })
        .collect()
}

/// Milliseconds per block of `FITS` fits with pieces of `piece` voxels.
fn time(runs: &[RunStats], alphas: &[f64], piece: usize) -> f64 {
    let mut scratch = CvScratch::with_piece(piece);
    let t = std::time::Instant::now();
    for _ in 0..FITS {
        std::hint::black_box(ridge_cv_in(runs, alphas, &mut scratch).expect("a fit"));
    }
    t.elapsed().as_secs_f64() * 1e3 / FITS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let alphas = alpha_grid(0.0, 4.0, 10);
    println!("| p | fits at once | {} |", PIECES.map(|n| format!("{n} voxels")).join(" | "));
    println!("|---|---|{}", "---|".repeat(PIECES.len()));
    for p in [16, 64, 128] {
        for together in [1, 2] {
            let data: Vec<Vec<RunStats>> = (0..together).map(|i| runs(p, 7 + i as u64)).collect();
            let mut ms = vec![Vec::new(); PIECES.len()];
            for round in 0..ROUNDS {
                for i in (0..PIECES.len()).map(|i| (i + round) % PIECES.len()) {
                    let each: Vec<f64> = std::thread::scope(|s| {
                        let handles: Vec<_> = data.iter().map(|r| s.spawn(|| time(r, &alphas, PIECES[i]))).collect();
                        handles.into_iter().map(|h| h.join().expect("a timing thread")).collect()
                    });
                    ms[i].push(each.iter().sum::<f64>() / each.len() as f64);
                }
            }
            let med: Vec<f64> = ms.into_iter().map(median).collect();
            let cells: Vec<String> = med.iter().map(|m| format!("{m:.1} ms ({:.2}×)", med[0] / m)).collect();
            println!("| {p} | {together} | {} |", cells.join(" | "));
        }
    }
}
