//! Writing a subject's 64-atom map at 2 mm (the mask of a 2 mm simulation, 64 volumes of
//! float32 on the 91 × 109 × 91 grid, 231 MB raw) as .nii.gz: cortexflow's streaming
//! writer (`io::gzip`) against nibabel (`to_filename`, gzip level 1), each in its own
//! process, with both files' sizes. The values are a closed form both sides compute.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, compare, peak_mib, python_has, run_child, Sample};
use cortexflow::io::nifti;

const VOLUMES: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let mask = nifti::read_mask(Path::new(&args[2])).expect("mask");
        let v = mask.len();
        let values = ndarray::Array2::from_shape_fn((VOLUMES, v), |(a, n)| {
            f64::from(((a as f64 * 0.37 + n as f64 * 0.0013).sin() * (1.0 + a as f64)) as f32)
        });
        let every: Vec<usize> = (0..v).collect();
        let t = Instant::now();
        nifti::write_masked(Path::new(&args[3]), &mask, &every, values.view(), None).expect("write");
        let secs = t.elapsed().as_secs_f64();
        println!("{VOLUMES} {v} {}", values.sum());
        println!("{secs} {}", peak_mib());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = dir.path().join("sim");
    let status = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .args(["simulate", "--out", sim.to_str().unwrap(), "--grid", "2mm", "--subjects", "1", "--runs", "1", "--scans", "10"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run cortexflow simulate");
    assert!(status.success());
    let mask = sim.join("mask.nii.gz");
    let (ours_out, theirs_out) = (dir.path().join("ours.nii.gz"), dir.path().join("nibabel.nii.gz"));
    let me = std::env::current_exe().unwrap();
    let ours = || run_child(Command::new(&me).arg("--child").arg(&mask).arg(&ours_out));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6).unwrap_or(f64::NAN);
    if !python_has("numpy, nibabel") {
        let s = ours();
        println!("map_write: cortexflow {:.3} s, {:.1} MB, peak {:.1} MiB; anchor not run (python3 with numpy and nibabel not found)", s.seconds, size(&ours_out), s.peak_mib);
        return;
    }
    let anchor = || -> Sample {
        run_child(Command::new("python3").arg(anchor_script("map_write.py")).arg(&mask).arg(&theirs_out).arg(VOLUMES.to_string()))
    };
    compare("map_write: a 64-volume 2 mm map to .nii.gz (write only; medians of 3)", 3, 1e-6, ours, "nibabel", anchor);
    println!("  file size    cortexflow {:.1} MB, nibabel {:.1} MB", size(&ours_out), size(&theirs_out));
}
