//! Reading a 4D BOLD run (a simulated 4 mm run, 300 scans, float32 .nii.gz) into a masked
//! scans × voxels float32 matrix: cortexflow's streaming reader against nibabel + numpy
//! (`np.asarray(img.dataobj, float32)[mask].T`), each in its own process; then the same
//! with each volume smoothed (FWHM 6 mm) against nilearn's `smooth_img` before masking,
//! and the cost of smoothing relative to the plain read.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, compare, peak_mib, python_has, run_child, Sample};
use cortexflow::io::nifti;
use cortexflow::stages::encode::read_smoothed;

/// The smoothing width of the second comparison (mm).
const FWHM: &str = "6";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let (bold, mask_path) = (Path::new(&args[2]), Path::new(&args[3]));
        let t = Instant::now();
        let mask = nifti::read_mask(mask_path).expect("mask");
        let fwhm = args.get(4).map(|f| f.parse::<f64>().expect("a FWHM"));
        let data = read_smoothed::<f32>(bold, (mask_path, &mask), fwhm).expect("bold");
        let secs = t.elapsed().as_secs_f64();
        let sum: f64 = data.data.iter().map(|&v| v as f64).sum();
        println!("{} {} {sum}", data.data.dim().0, data.data.dim().1);
        println!("{secs} {}", peak_mib());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes benches; nothing to list here
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = dir.path().join("sim");
    let status = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .args([
            "simulate",
            "--out",
            sim.to_str().unwrap(),
            "--subjects",
            "1",
            "--runs",
            "1",
            "--scans",
            "300",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run cortexflow simulate");
    assert!(status.success());
    let bold = sim.join("sub-01/func/sub-01_task-lpp_run-1_bold.nii.gz");
    let mask = sim.join("mask.nii.gz");
    let me = std::env::current_exe().unwrap();
    let child = |extra: &[&str]| {
        run_child(Command::new(&me).args([
            "--child",
            bold.to_str().unwrap(),
            mask.to_str().unwrap(),
        ]).args(extra))
    };
    let ours = || child(&[]);
    if !python_has("numpy, nibabel") {
        let s = ours();
        println!("nifti_read: cortexflow {:.3} s, peak {:.1} MiB; anchor not run (python3 with numpy and nibabel not found)", s.seconds, s.peak_mib);
        return;
    }
    let anchor = |extra: &[&str]| -> Sample {
        run_child(
            Command::new("python3")
                .arg(anchor_script("nifti_read.py"))
                .arg(&bold)
                .arg(&mask)
                .args(extra),
        )
    };
    let plain = compare(
        "nifti_read: 45×54×45×300 float32 .nii.gz → 300 × 8,268 masked matrix",
        3,
        1e-5,
        ours,
        "nibabel",
        || anchor(&[]),
    );
    if !python_has("nilearn") {
        println!("nifti_read + smoothing: anchor not run (python3 with nilearn not found)");
        return;
    }
    let smoothed = compare(
        "nifti_read + smoothing: the same, each volume smoothed (FWHM 6 mm) before masking",
        3,
        1e-5,
        || child(&[FWHM]),
        "nilearn",
        || anchor(&[FWHM]),
    );
    println!(
        "  smoothing adds {:.0}% to the read and {:.1} MiB to its peak",
        100.0 * (smoothed.seconds / plain.seconds - 1.0),
        smoothed.peak_mib - plain.peak_mib
    );
}
