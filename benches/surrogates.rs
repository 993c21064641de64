//! Spatial-null surrogates of one atom map on the simulator's 4 mm mask (8,268 voxels; the
//! map a smooth random field, 10 mm FWHM): cortexflow's variogram-matched surrogates (the
//! mask's pair sample, the width chosen from trial surrogates, then 1,000 surrogates)
//! against BrainSMASH 0.11 (`Base` with the full distance matrix, `resample=True`), each in
//! its own process with peak memory. BrainSMASH needs minutes per surrogate at this size,
//! so it makes `ANCHOR_SURROGATES` of them and the ratio is per surrogate, set-up included
//! on both sides. The check: every surrogate holds the map's own values, so the sum over
//! all surrogates is `n · Σ map` on both sides.

#[allow(dead_code)] // median and compare: this bench compares per surrogate
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, peak_mib, python_has, run_child};
use cortexflow::io::nifti;
use cortexflow::kernels::smooth::Gaussian3d;
use cortexflow::kernels::surrogates::{rng_for, Scratch, SpatialNull};
use rand::Rng;

const SURROGATES: usize = 1000;
const ANCHOR_SURROGATES: usize = 1;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if args.get(1).map(String::as_str) == Some("--child") {
        let (mask, values) = (Path::new(&args[2]), Path::new(&args[3]));
        let map: Vec<f64> = std::fs::read(values).expect("values").chunks(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect();
        let t = Instant::now();
        let mask = nifti::read_mask(mask).expect("mask");
        let ijk: Vec<[usize; 3]> = mask.ijk().collect();
        let null = SpatialNull::new(mask.grid.shape, mask.grid.affine.linear(), &ijk, 0);
        let (mut rng, mut scratch) = (rng_for(0, 0), Scratch::default());
        let fit = null.fit(&map, &mut rng, &mut scratch);
        let sum: f64 = (0..SURROGATES).map(|_| null.surrogate(&fit, &map, &mut rng, &mut scratch).iter().sum::<f64>()).sum();
        let secs = t.elapsed().as_secs_f64();
        println!("{SURROGATES} {} {sum}", map.len());
        println!("{secs} {}", peak_mib());
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = dir.path().join("sim");
    let status = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .args(["simulate", "--out", sim.to_str().unwrap(), "--subjects", "1", "--runs", "1", "--scans", "20"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run cortexflow simulate");
    assert!(status.success());
    let mask_path = sim.join("mask.nii.gz");
    let mask = nifti::read_mask(&mask_path).expect("mask");
    let (shape, linear) = (mask.grid.shape, mask.grid.affine.linear());
    let mut rng = rng_for(1, 0);
    let mut vol: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal)).collect();
    Gaussian3d::new(10.0, linear).apply(&mut vol, shape, &mut Vec::new());
    let ijk: Vec<[usize; 3]> = mask.ijk().collect();
    let map: Vec<f64> = ijk.iter().map(|p| vol[p[0] + shape[0] * (p[1] + shape[1] * p[2])] as f64).collect();
    let values = dir.path().join("map.f64");
    std::fs::write(&values, map.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let ours = run_child(Command::new(std::env::current_exe().unwrap()).args(["--child", mask_path.to_str().unwrap(), values.to_str().unwrap()]));
    let total: f64 = map.iter().sum();
    assert!((ours.result[2] - SURROGATES as f64 * total).abs() <= 1e-6 * (SURROGATES as f64 * total).abs().max(1.0));
    let what = format!("surrogates: variogram-matched surrogates of one map on {} voxels", map.len());
    println!("{what}");
    println!("  cortexflow   {SURROGATES} surrogates in {:.3} s ({:.2} ms each), peak {:.1} MiB", ours.seconds, 1e3 * ours.seconds / SURROGATES as f64, ours.peak_mib);
    if !python_has("brainsmash, scipy") {
        println!("  anchor not run (python3 with brainsmash and scipy not found)");
        return;
    }
    let xyz: Vec<u8> = ijk
        .iter()
        .flat_map(|p| mask.grid.affine.apply(p.map(|c| c as f64)))
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let coords = dir.path().join("xyz.f64");
    std::fs::write(&coords, xyz).unwrap();
    let anchor = run_child(Command::new("python3").arg(anchor_script("surrogates.py")).arg(&values).arg(&coords).arg(ANCHOR_SURROGATES.to_string()));
    assert!((anchor.result[2] - ANCHOR_SURROGATES as f64 * total).abs() <= 1e-6 * (ANCHOR_SURROGATES as f64 * total).abs().max(1.0));
    let (ours_each, theirs_each) = (ours.seconds / SURROGATES as f64, anchor.seconds / ANCHOR_SURROGATES as f64);
    println!("  brainsmash   {ANCHOR_SURROGATES} surrogate(s) in {:.3} s ({:.0} ms each), peak {:.1} MiB", anchor.seconds, 1e3 * theirs_each, anchor.peak_mib);
    println!("  ratio        {:.0}× faster per surrogate, {:.2}× the anchor's peak memory", theirs_each / ours_each, ours.peak_mib / anchor.peak_mib);
}
