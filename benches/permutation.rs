//! Sign-flip permutation inference of the group maps: 1,000 flips of 20 subjects' maps of
//! 64 atoms on the 4 mm mask's 8,268 voxels (synthetic β, standard normal, a planted effect
//! in a tenth of the voxels of every atom), the maximum |t| per atom as the FWER null.
//! cortexflow's kernel (the group operator's, block by block as the store runs it) against
//! nilearn's `permuted_ols` as `non_parametric_inference` calls it (one call per atom map,
//! two jobs), each in its own process, with peak memory. The check is the sum of the
//! observed t maps (the p values of two independent Monte-Carlo draws differ within
//! their error; tests/it/group_map.rs checks that).

mod common;

use std::process::Command;
use std::time::Instant;

use common::{anchor_script, compare, peak_mib, python_has, run_child};
use cortexflow::kernels::group::GroupSums;
use cortexflow::kernels::permutation::{block_null_max, combine, fwer_p, SignFlips};
use cortexflow::operators::BLOCK_VOXELS;
use ndarray::{s, Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

const SUBJECTS: usize = 20;
const ATOMS: usize = 64;
const VOXELS: usize = 8268;
const FLIPS: usize = 1000;

fn maps() -> Vec<Array2<f64>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    (0..SUBJECTS)
        .map(|_| {
            Array2::from_shape_fn((ATOMS, VOXELS), |(_, v)| {
                rng.sample::<f64, _>(StandardNormal) + if v % 10 == 0 { 0.8 } else { 0.0 }
            })
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let maps = maps();
    if args.get(1).map(String::as_str) == Some("--child") {
        let t = Instant::now();
        let mut sums = GroupSums::new(ATOMS, VOXELS);
        maps.iter().for_each(|m| sums.add(m.view()).expect("in range"));
        let test = sums.test();
        let flips = SignFlips::new(SUBJECTS, FLIPS, 0);
        let mut null: Option<Array2<f64>> = None;
        for start in (0..VOXELS).step_by(BLOCK_VOXELS) {
            let end = (start + BLOCK_VOXELS).min(VOXELS);
            let block: Vec<ArrayView2<f64>> = maps.iter().map(|m| m.slice(s![.., start..end])).collect();
            let b = block_null_max(&flips, &block);
            match &mut null {
                Some(n) => combine(n, b.view()),
                None => null = Some(b),
            }
        }
        let null = null.expect("blocks");
        let significant: usize = (0..ATOMS)
            .map(|a| fwer_p(&test.t.row(a).to_vec(), null.row(a).as_slice().unwrap()).iter().filter(|&&p| p <= 0.05).count())
            .sum();
        let secs = t.elapsed().as_secs_f64();
        eprintln!("cortexflow: {significant} voxel maps significant at FWER 0.05");
        println!("{ATOMS} {VOXELS} {}", test.t.sum());
        println!("{secs} {}", peak_mib());
        return;
    }
    let me = std::env::current_exe().unwrap();
    let ours = || run_child(Command::new(&me).arg("--child"));
    let what = format!("permutation: {FLIPS} sign flips × {SUBJECTS} subjects × {ATOMS} atoms × {VOXELS} voxels, max-t FWER");
    if !python_has("nilearn") {
        let s = ours();
        println!("{what}: cortexflow {:.3} s, peak {:.1} MiB; anchor not run (python3 with nilearn not found)", s.seconds, s.peak_mib);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("beta.f64");
    let bytes: Vec<u8> = maps.iter().flat_map(|m| m.iter().flat_map(|v| v.to_le_bytes())).collect();
    std::fs::write(&data, bytes).expect("write the maps");
    let shape = [SUBJECTS, ATOMS, VOXELS, FLIPS].map(|n| n.to_string());
    compare(&what, 1, 1e-9, ours, "nilearn", || {
        run_child(Command::new("python3").arg(anchor_script("permutation.py")).arg(&data).args(&shape))
    });
}
