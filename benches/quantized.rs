//! SmolLM2-135M in each GGUF quantisation candle can write (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K,
//! Q6_K), kept quantised (`--dtype stored`: blocks in memory, a chunk of rows dequantised
//! before each product) and dequantised to f32 at load (`--dtype f32`, what `auto` does at
//! this size), against transformers loading the same file (which dequantises to float32):
//! the worst tap error of each, and forward throughput against PyTorch's in the same run. 1,024 tokens of LPP in 4 windows of 256, every layer, both
//! taps, 2 threads on both sides.
//!
//! The files are made from the registry's Q4_1 file (scripts/fetch-models): each
//! projection is dequantised and quantised again to the format; a projection whose input
//! width is not a multiple of the format's block (K-quants: 256; SmolLM2's hidden width is
//! 576) gets llama.cpp's fallback for that format (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0),
//! as llama.cpp's own quantiser does. The token embedding (Q8_0) and norms are copied.
//! Errors are per tap, against transformers' tap of the same file: the RMS error and the
//! max |error| over every value, in units of the tap's RMS, worst over the 60 taps.

#[allow(dead_code)] // median, python_has, anchor_script, peak_mib and story only
mod common;

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use common::{anchor_script, median, peak_mib, python_has, run_child, Sample};
use cortexflow::model::stored::WeightDtype;
use cortexflow::model::{self, Tap, TapRequest};

const TOKENS: usize = 1024;
const WINDOW: usize = 256;
const THREADS: &str = "2";
const REPEATS: usize = 3;

/// The format, and llama.cpp's fallback for projections whose width it cannot block.
const FORMATS: [(&str, GgmlDType, GgmlDType); 6] = [
    ("Q4_0", GgmlDType::Q4_0, GgmlDType::Q4_0),
    ("Q4_1", GgmlDType::Q4_1, GgmlDType::Q4_1),
    ("Q8_0", GgmlDType::Q8_0, GgmlDType::Q8_0),
    ("Q4_K", GgmlDType::Q4K, GgmlDType::Q5_0),
    ("Q5_K", GgmlDType::Q5K, GgmlDType::Q5_1),
    ("Q6_K", GgmlDType::Q6K, GgmlDType::Q8_0),
];

/// Writes `out` from `src` with every `blk.*` projection requantised.
fn requantize(src: &Path, out: &Path, format: GgmlDType, fallback: GgmlDType) {
    let mut reader = BufReader::new(File::open(src).unwrap());
    let content = gguf_file::Content::read(&mut reader).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .into_iter()
        .map(|name| {
            let q = content.tensor(&mut reader, name, &Device::Cpu).unwrap();
            let projection = name.starts_with("blk.") && q.shape().dims().len() == 2;
            if !projection {
                return (name.clone(), q);
            }
            let w = q.dequantize(&Device::Cpu).unwrap();
            let fits = w.dims()[1].is_multiple_of(format.block_size());
            let to = if fits { format } else { fallback };
            (name.clone(), QTensor::quantize(&w, to).unwrap())
        })
        .collect();
    let mut meta: Vec<(&str, &gguf_file::Value)> =
        content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    meta.sort_by_key(|(k, _)| *k);
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let part = out.with_extension("part");
    let mut w = BufWriter::new(File::create(&part).unwrap());
    gguf_file::write(&mut w, &meta, &refs).unwrap();
    drop(w);
    std::fs::rename(part, out).unwrap();
}

/// How many `blk.*` projections of `file` are in `format`, and how many in another type.
fn projection_types(file: &Path, format: GgmlDType) -> (usize, usize) {
    let content = gguf_file::Content::read(&mut BufReader::new(File::open(file).unwrap())).unwrap();
    let projections: Vec<_> = content
        .tensor_infos
        .iter()
        .filter(|(n, t)| n.starts_with("blk.") && t.shape.dims().len() == 2)
        .collect();
    let direct = projections.iter().filter(|(_, t)| t.ggml_dtype == format).count();
    (direct, projections.len() - direct)
}

/// Our side: a warm-up window, then the timed batch; every tap written to `dump` (per
/// layer ffn.inner then ffn.out, as the anchor writes them).
fn child(path: &Path, dtype: WeightDtype, dump: &Path) {
    let m = model::load_as(path, dtype).expect("model");
    let wins = common::story::windows(m.as_ref(), TOKENS, WINDOW);
    let request = TapRequest::new((0..m.n_layers()).collect(), Tap::ALL.to_vec());
    m.forward_taps(&wins[0], &request).expect("warm-up");
    let t = Instant::now();
    let outputs = m.forward_batch(&wins, &request).expect("forward");
    let copies: Vec<(usize, Tap, Vec<f32>)> = outputs
        .into_iter()
        .map(|o| (o.layer, o.tap, o.values.flatten_all().and_then(|t| t.to_vec1()).unwrap()))
        .collect();
    let secs = t.elapsed().as_secs_f64();
    let mut ordered = Vec::new();
    for layer in 0..m.n_layers() {
        for tap in [Tap::FfnInner, Tap::FfnOut] {
            let (.., v) = copies.iter().find(|(l, t, _)| *l == layer && *t == tap).unwrap();
            ordered.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        }
    }
    std::fs::write(dump, ordered).unwrap();
    let n: usize = copies.iter().map(|c| c.2.len()).sum();
    println!("{} {n} 0", wins.len());
    println!("{secs} {}", peak_mib());
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// (worst RMS error, worst max |error|) over the taps, each in units of the tap's RMS;
/// `sizes` are the taps' value counts in file order.
fn tap_errors(ours: &[f32], theirs: &[f32], sizes: &[usize]) -> (f64, f64) {
    assert_eq!(ours.len(), theirs.len(), "tap files differ in length");
    let (mut worst_rms, mut worst_max, mut at) = (0.0f64, 0.0f64, 0);
    for &n in sizes {
        let (a, b) = (&ours[at..at + n], &theirs[at..at + n]);
        at += n;
        let rms = (b.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
        let (mut sq, mut max) = (0.0f64, 0.0f64);
        for (&x, &y) in a.iter().zip(b) {
            let e = (x as f64 - y as f64).abs();
            sq += e * e;
            max = max.max(e);
        }
        worst_rms = worst_rms.max((sq / n as f64).sqrt() / rms);
        worst_max = worst_max.max(max / rms);
    }
    assert_eq!(at, ours.len());
    (worst_rms, worst_max)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let dtype = if args[3] == "stored" { WeightDtype::Stored } else { WeightDtype::F32 };
        return child(Path::new(&args[2]), dtype, Path::new(&args[4]));
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !registry.exists() {
        println!("quantized: {} not fetched (scripts/fetch-models); skipped", registry.display());
        return;
    }
    if !python_has("torch, transformers, gguf, accelerate") {
        println!("quantized: torch/transformers/gguf not found; skipped (pip install -r scripts/requirements-fixtures.txt)");
        return;
    }
    let data = root.join("target/bench-data");
    std::fs::create_dir_all(&data).unwrap();
    let work = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();

    println!("SmolLM2-135M, {TOKENS} tokens (4 windows of {WINDOW}), every layer, both taps, {THREADS} threads");
    println!("| format | projections (format / fallback) | file MB | kept quantised: RMS error, max error (× tap RMS) | dequantised: RMS error, max error | quantised tokens/s | dequantised tokens/s | PyTorch tokens/s | quantised / PyTorch | dequantised / PyTorch |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, format, fallback) in FORMATS {
        let file: PathBuf = data.join(format!("SmolLM2-135M-Instruct.{label}.gguf"));
        if !file.exists() {
            requantize(&registry, &file, format, fallback);
        }
        let (direct, fell_back) = projection_types(&file, format);
        let m = model::load(&file).unwrap();
        let wins = common::story::windows(m.as_ref(), TOKENS, WINDOW);
        let width = |tap| m.tap_width(tap) * wins.len() * wins[0].len();
        let sizes: Vec<usize> = (0..m.n_layers())
            .flat_map(|_| [width(Tap::FfnInner), width(Tap::FfnOut)])
            .collect();
        drop(m);
        let ids = work.path().join("ids.json");
        std::fs::write(&ids, serde_json::to_string(&wins).unwrap()).unwrap();

        let run = |dtype: &str| -> (Sample, Vec<f32>) {
            let dump = work.path().join(format!("{dtype}.f32"));
            let runs: Vec<Sample> = (0..REPEATS)
                .map(|_| {
                    run_child(
                        Command::new(&me)
                            .args(["--child", file.to_str().unwrap(), dtype, dump.to_str().unwrap()])
                            .env("RAYON_NUM_THREADS", THREADS),
                    )
                })
                .collect();
            (median(runs), read_f32(&dump))
        };
        let (quantised, q_taps) = run("stored");
        let (dequantised, f_taps) = run("f32");
        let torch_dump = work.path().join("torch.f32");
        let torch = median(
            (0..REPEATS)
                .map(|_| {
                    run_child(
                        Command::new("python3")
                            .arg(anchor_script("models.py"))
                            .args(["gguf", file.to_str().unwrap(), ids.to_str().unwrap(), THREADS, torch_dump.to_str().unwrap()])
                            .env("OMP_NUM_THREADS", THREADS),
                    )
                })
                .collect(),
        );
        let theirs = read_f32(&torch_dump);
        let (q_rms, q_max) = tap_errors(&q_taps, &theirs, &sizes);
        let (f_rms, f_max) = tap_errors(&f_taps, &theirs, &sizes);
        let tps = |s: &Sample| TOKENS as f64 / s.seconds;
        let mb = std::fs::metadata(&file).unwrap().len() as f64 / 1e6;
        println!(
            "| {label} | {direct} / {fell_back} | {mb:.0} | {q_rms:.1e}, {q_max:.1e} | {f_rms:.1e}, {f_max:.1e} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× |",
            tps(&quantised),
            tps(&dequantised),
            tps(&torch),
            torch.seconds / quantised.seconds,
            torch.seconds / dequantised.seconds
        );
    }
}
