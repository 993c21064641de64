//! Forward passes with FFN taps (every layer, both taps, copied out to host memory) on the
//! same 1,024 tokens of Le Petit Prince in 4 windows of 256, run as one batch: MiniLM-L6 (BERT, float32
//! safetensors) and SmolLM2-135M (GGUF, dequantised to float32) against PyTorch CPU
//! (transformers with forward hooks) and ONNX Runtime (the same model exported with every
//! tap as a graph output, all graph optimisations) at the same thread count, each in its
//! own process.
//! Needs scripts/fetch-models.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{anchor_script, compare, peak_mib, python_has, run_child};
use cortexflow::model::{self, Tap, TapRequest};

/// The same allocator as the `cortexflow` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKENS: usize = 1024;
const WINDOW: usize = 256;
const THREADS: &str = "2";

fn windows(m: &dyn model::LanguageModel) -> Vec<Vec<u32>> {
    common::story::windows(m, TOKENS, WINDOW)
}

fn child(path: &Path) {
    // As the `cortexflow` binary runs every command.
    let _pages = cortexflow::io::pages::small_pages();
    let m = model::load(path).expect("model");
    let wins = windows(m.as_ref());
    let request = TapRequest::new((0..m.n_layers()).collect(), Tap::ALL.to_vec());
    // A story's batches run under this guard (model::extract, engine/stories.rs).
    let _held = cortexflow::io::pages::hold_freed_pages();
    // The same batch once, untimed, on every side (thread pools, allocators' caches): the
    // timed pass is then one of a long story's batches, which follow one another.
    m.forward_batch(&wins, &request).expect("warm-up");
    // Timed: the forward pass and copying every tap out to host vectors (the anchor's hooks
    // copy to numpy); the checksum is computed afterwards on both sides.
    let t = Instant::now();
    let copies: Vec<Vec<f32>> = m
        .forward_batch(&wins, &request)
        .expect("forward")
        .into_iter()
        .map(|out| {
            out.values
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("copy out")
        })
        .collect();
    let secs = t.elapsed().as_secs_f64();
    let n: usize = copies.iter().map(Vec::len).sum();
    let sum: f64 = copies.iter().flatten().map(|x| x.abs() as f64).sum();
    println!("{} {n} {sum}", wins.len());
    println!("{secs} {}", peak_mib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(Path::new(&args[2]));
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let cases: [(&str, PathBuf, &str); 2] = [
        (
            "MiniLM-L6 (BERT, f32)",
            root.join("all-MiniLM-L6-v2"),
            "bert",
        ),
        (
            "SmolLM2-135M (GGUF → f32)",
            root.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
            "gguf",
        ),
    ];
    let me = std::env::current_exe().unwrap();
    let torch = python_has("torch, transformers, gguf");
    for (name, path, kind) in cases {
        if !path.exists() {
            println!(
                "models: {} not fetched (scripts/fetch-models); skipped",
                path.display()
            );
            continue;
        }
        // Both sides get exactly these windows of ids.
        let ids_file = tempfile::NamedTempFile::new().unwrap();
        let m = model::load(&path).unwrap();
        std::fs::write(
            ids_file.path(),
            serde_json::to_string(&windows(m.as_ref())).unwrap(),
        )
        .unwrap();
        drop(m);
        let ours = || {
            run_child(
                Command::new(&me)
                    .args(["--child", path.to_str().unwrap()])
                    .env("RAYON_NUM_THREADS", THREADS),
            )
        };
        if !torch {
            let s = ours();
            println!("models {name}: cortexflow {:.3} s ({:.0} tokens/s), peak {:.1} MiB; anchor not run (torch/transformers not found)", s.seconds, TOKENS as f64 / s.seconds, s.peak_mib);
            continue;
        }
        let anchor = || {
            run_child(
                Command::new("python3")
                    .arg(anchor_script("models.py"))
                    .args([
                        kind,
                        path.to_str().unwrap(),
                        ids_file.path().to_str().unwrap(),
                        THREADS,
                    ])
                    .env("OMP_NUM_THREADS", THREADS),
            )
        };
        // Σ|tap values| over every layer and token: float32 on both sides, 1e-4 relative.
        let s = compare(
            &format!("models: {name}, {TOKENS} tokens, every layer, both taps"),
            3,
            1e-4,
            ours,
            "pytorch",
            anchor,
        );
        println!(
            "  cortexflow throughput {:.0} tokens/s",
            TOKENS as f64 / s.seconds
        );
        if !python_has("onnxruntime, onnx") {
            println!("  onnxruntime not found (pip install onnxruntime onnx); its row not run");
            continue;
        }
        // ONNX Runtime on the same model exported with every tap as a graph output.
        let ort = || {
            run_child(
                Command::new("python3")
                    .arg(anchor_script("models_ort.py"))
                    .args([kind, path.to_str().unwrap(), ids_file.path().to_str().unwrap(), THREADS])
                    .env("OMP_NUM_THREADS", THREADS),
            )
        };
        compare(
            &format!("models: {name} against ONNX Runtime (taps as graph outputs)"),
            3,
            1e-4,
            ours,
            "onnxruntime",
            ort,
        );
    }
}
