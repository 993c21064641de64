//! AN regressors for a whole LPP section (section 1: 1,517 words, 282 scans at TR 2 s) for
//! 512 ANs: cortexflow's event design (one T × words matrix, then one product) against
//! nilearn's `compute_regressor` called once per AN, each in its own process.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, compare, peak_mib, python_has, run_child};
use cortexflow::io::stimulus::read_stimulus;
use cortexflow::kernels::hrf::{frame_times, EventDesign, RegressorOptions};
use ndarray::Array2;

const N_AN: usize = 512;
const TR: f64 = 2.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let textgrid =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stimuli/lpp-en/lppEN_section1.TextGrid");
    if args.get(1).map(String::as_str) == Some("--child") {
        let stim = read_stimulus(&textgrid, None).expect("stimulus");
        let t = Instant::now();
        let onsets: Vec<f64> = stim.words.iter().map(|w| w.onset).collect();
        let n_scans = (stim.end / TR).ceil() as usize;
        // The same deterministic amplitudes as the anchor: sin(word index + AN index).
        let amps = Array2::from_shape_fn((onsets.len(), N_AN), |(w, u)| ((w + u) as f64).sin());
        let design = EventDesign::new(
            &onsets,
            &vec![0.0; onsets.len()],
            &frame_times(n_scans, TR, 0.0),
            &RegressorOptions::default(),
        )
        .expect("event design")
        .remove(0);
        let x = design.apply(amps.view());
        let secs = t.elapsed().as_secs_f64();
        println!("{} {} {}", x.nrows(), x.ncols(), x.sum());
        println!("{secs} {}", peak_mib());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let me = std::env::current_exe().unwrap();
    let ours = || run_child(Command::new(&me).arg("--child"));
    if !python_has("nilearn") {
        let s = ours();
        println!("regressors: cortexflow {:.3} s, peak {:.1} MiB; anchor not run (python3 with nilearn not found)", s.seconds, s.peak_mib);
        return;
    }
    let anchor = || {
        run_child(
            Command::new("python3")
                .arg(anchor_script("regressors.py"))
                .arg(&textgrid)
                .arg(N_AN.to_string()),
        )
    };
    compare(
        "regressors: LPP section 1, 512 ANs, SPM HRF, oversampling 50",
        3,
        1e-6,
        ours,
        "nilearn",
        anchor,
    );
}
