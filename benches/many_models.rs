//! Comparing three models on one dataset: three `run`s, one a recipe, against one `run` of
//! the three recipes, which reads and cleans each BOLD run once for all of them and shares
//! one noise-ceiling pass. Both sides are the `cortexflow` binary in its own process,
//! timed by wall clock with its peak RSS (wait4); the BOLD reads are counted by the
//! process itself (its `bold_reads` log line).
//!
//! The models are real: MiniLM-L6 ffn.out and ffn.inner (all layers) and SmolLM2-135M
//! ffn.out (all layers), each with the paper's 64 atoms, from `scripts/fetch-models`. The
//! data are simulated (8 subjects at 2 mm, cortex, 150 scans a run) with 2 runs a subject
//! and with 9 (Le Petit Prince's nine sections): what the shared pass saves is the BOLD
//! reading and cleaning, so its gain grows with the runs a subject has; the stories
//! through each model, the basis and each store's fits are the same work on both sides.
//!
//! `cargo bench --bench many_models` (`CORTEXFLOW_BENCH_RUNS=2,9` by default).

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cortexflow");

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Wall seconds, peak MiB and the BOLD reads the process logged.
fn timed(args: &[String], log: &Path) -> (f64, f64, u64) {
    let file = std::fs::File::create(log).unwrap();
    let (t, peak) = common::timed_process(Command::new(BIN).args(args).env("CORTEXFLOW_LOG", "info").stderr(file));
    let text = std::fs::read_to_string(log).unwrap();
    let reads = text
        .lines()
        .filter_map(|l| l.split("bold_reads=").nth(1))
        .filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok())
        .sum();
    (t, peak, reads)
}

fn recipes(dir: &Path, models: &Path) -> Vec<PathBuf> {
    let minilm = models.join("all-MiniLM-L6-v2");
    let smollm2 = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    [("minilm-out", &minilm, "ffn.out"), ("minilm-inner", &minilm, "ffn.inner"), ("smollm2-out", &smollm2, "ffn.out")]
        .iter()
        .map(|(name, model, tap)| {
            let path = dir.join(format!("{name}.toml"));
            let text = format!(
                "description = \"{name}\"\n[model]\npath = \"{}\"\ntaps = [\"{tap}\"]\nlayers = \"all\"\n[basis]\natoms = 64\n",
                model.display()
            );
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

fn main() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    if !models.join("SmolLM2-135M-Instruct.Q4_1.gguf").is_file() || !models.join("all-MiniLM-L6-v2").is_dir() {
        eprintln!("many_models: run scripts/fetch-models first (MiniLM-L6 and SmolLM2 are compared)");
        return;
    }
    let runs: Vec<usize> = std::env::var("CORTEXFLOW_BENCH_RUNS")
        .unwrap_or_else(|_| "2,9".into())
        .split(',')
        .map(|r| r.trim().parse().expect("CORTEXFLOW_BENCH_RUNS: run counts such as 2,9"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipes = recipes(d, &models);
    println!("3 models (MiniLM-L6 ffn.out, ffn.inner, SmolLM2-135M ffn.out; 64 atoms each) on 8 subjects, 2 mm cortex (65,984 voxels), 150 scans a run");
    println!("{:>5} {:>22} {:>9} {:>9} {:>11}", "runs", "", "wall s", "peak MiB", "BOLD reads");
    for r in runs {
        let sim = d.join(format!("sim{r}"));
        let out = Command::new(BIN)
            .args(["simulate", "--out", &s(&sim), "--subjects", "8", "--runs", &r.to_string(), "--scans", "150", "--grid", "2mm", "--seed", "4"])
            .output()
            .unwrap();
        assert!(out.status.success(), "simulate: {}", String::from_utf8_lossy(&out.stderr));
        let (mut alone, mut peak_alone, mut reads_alone) = (0.0, 0.0f64, 0);
        for recipe in &recipes {
            let name = recipe.file_stem().unwrap().to_str().unwrap();
            let args: Vec<String> = ["run", &s(recipe), "--data", &s(&sim), "--out", &s(&d.join(format!("alone{r}/{name}")))].map(String::from).to_vec();
            let (t, peak, reads) = timed(&args, &d.join("log"));
            (alone, peak_alone, reads_alone) = (alone + t, peak_alone.max(peak), reads_alone + reads);
        }
        let mut args = vec!["run".to_string()];
        args.extend(recipes.iter().map(|p| s(p)));
        args.extend(["--data".into(), s(&sim), "--out".into(), s(&d.join(format!("together{r}")))]);
        let (together, peak_together, reads_together) = timed(&args, &d.join("log"));
        println!("{r:>5} {:>22} {alone:>9.1} {peak_alone:>9.0} {reads_alone:>11}", "3 separate runs");
        println!("{r:>5} {:>22} {together:>9.1} {peak_together:>9.0} {reads_together:>11}", "one run of 3 recipes");
        println!("{r:>5} {:>22} {:>8.2}×", "speed-up", alone / together);
        std::fs::remove_dir_all(&sim).ok();
    }
}
