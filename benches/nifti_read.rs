//! Reading a 4D BOLD run (a simulated 4 mm run, 300 scans, float32 .nii.gz) into a masked
//! scans × voxels float32 matrix: cortexflow's streaming reader against nibabel + numpy
//! (`np.asarray(img.dataobj, float32)[mask].T`), each in its own process.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, compare, peak_mib, python_has, run_child, Sample};
use cortexflow::io::nifti;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let (bold, mask_path) = (Path::new(&args[2]), Path::new(&args[3]));
        let t = Instant::now();
        let mask = nifti::read_mask(mask_path).expect("mask");
        let data = nifti::read_bold(bold, Some((mask_path, &mask))).expect("bold");
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
    let ours = || {
        run_child(Command::new(&me).args([
            "--child",
            bold.to_str().unwrap(),
            mask.to_str().unwrap(),
        ]))
    };
    if !python_has("numpy, nibabel") {
        let s = ours();
        println!("nifti_read: cortexflow {:.3} s, peak {:.1} MiB; anchor not run (python3 with numpy and nibabel not found)", s.seconds, s.peak_mib);
        return;
    }
    let anchor = || -> Sample {
        run_child(
            Command::new("python3")
                .arg(anchor_script("nifti_read.py"))
                .arg(&bold)
                .arg(&mask),
        )
    };
    compare(
        "nifti_read: 45×54×45×300 float32 .nii.gz → 300 × 8,268 masked matrix",
        3,
        1e-5,
        ours,
        "nibabel",
        anchor,
    );
}
