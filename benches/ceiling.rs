//! The noise ceiling's inter-subject correlation on one story of the simulator's 4 mm
//! mask size (8,268 voxels × 300 scans, a shared part of variance 0.3 in every voxel):
//! cortexflow's sums (one subject read at a time, one T × V sum) against BrainIAK 0.12's
//! pairwise `isc` (every subject at once, then each pair's r), each in its own process
//! with peak memory, at 10 and 20 subjects: ours grows with T × V, not with subjects;
//! BrainIAK's with subjects (and its time with their pairs). The check: the sum of the
//! voxels' ISC agrees to 1e-6 on both sides.

#[allow(dead_code)] // median and compare: one run per side here
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, peak_mib, python_has, run_child};
use cortexflow::kernels::isc::{Isc, StorySums};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

const SCANS: usize = 300;
const VOXELS: usize = 8268;

/// One subject's series (float32 on disk), a shared part of variance 0.3 plus its noise.
fn write_subjects(dir: &Path, subjects: usize) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let shared: Vec<f64> = (0..SCANS * VOXELS).map(|_| StandardNormal.sample(&mut rng)).collect();
    for s in 0..subjects {
        let bytes: Vec<u8> = shared
            .iter()
            .flat_map(|&x| {
                let noise: f64 = StandardNormal.sample(&mut rng);
                ((0.3f64.sqrt() * x + 0.7f64.sqrt() * noise) as f32).to_le_bytes()
            })
            .collect();
        std::fs::write(dir.join(format!("sub-{s:02}.f32")), bytes).unwrap();
    }
}

fn child(dir: &Path) {
    let t = Instant::now();
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut sums = StorySums::new(SCANS, VOXELS);
    for f in &files {
        let y: Vec<f64> = std::fs::read(f).unwrap().chunks_exact(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap()))).collect();
        sums.add(ndarray::ArrayView2::from_shape((SCANS, VOXELS), &y).unwrap(), &[true; VOXELS]);
    }
    let mut isc = Isc::new(VOXELS);
    isc.add_story(&sums);
    let total: f64 = isc.isc().iter().sum();
    let secs = t.elapsed().as_secs_f64();
    println!("{} {VOXELS} {total}", files.len());
    println!("{secs} {}", peak_mib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(Path::new(&args[2]));
    }
    println!("ceiling: pairwise ISC of one story, {SCANS} scans × {VOXELS} voxels");
    let anchor = python_has("brainiak");
    if !anchor {
        println!("  anchor not run (python3 with brainiak not found: pip install --no-deps brainiak==0.12 psutil statsmodels)");
    }
    for subjects in [10, 20] {
        let dir = tempfile::tempdir().expect("tempdir");
        write_subjects(dir.path(), subjects);
        let ours = run_child(Command::new(std::env::current_exe().unwrap()).args(["--child", dir.path().to_str().unwrap()]));
        println!("  {subjects} subjects: cortexflow {:.3} s, peak {:.1} MiB", ours.seconds, ours.peak_mib);
        if anchor {
            let theirs = run_child(Command::new("python3").arg(anchor_script("ceiling.py")).arg(dir.path()).arg(SCANS.to_string()).arg(VOXELS.to_string()));
            assert!((ours.result[2] - theirs.result[2]).abs() <= 1e-6 * ours.result[2].abs().max(1.0), "{} vs {}", ours.result[2], theirs.result[2]);
            println!("  {subjects} subjects: brainiak   {:.3} s, peak {:.1} MiB", theirs.seconds, theirs.peak_mib);
            println!("  {subjects} subjects: ratio      {:.1}× faster, {:.2}× the anchor's peak memory", theirs.seconds / ours.seconds, ours.peak_mib / theirs.peak_mib);
        }
    }
}
