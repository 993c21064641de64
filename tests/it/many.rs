//! Many models, one pass over the BOLD (issue 19): `run` with three recipes writes, for
//! each, the store a `run` of that recipe alone writes, byte for byte, while reading each
//! BOLD run once for all three (counted) and its noise ceiling once; a run killed at
//! random moments resumes to the same stores; recipes that clean runs differently, and
//! names that cannot be folders, are refused before any work.

use std::path::{Path, PathBuf};

use super::common::{cortexflow_fails, kill_until_done, ok};
use super::store::assert_same;

/// Three recipes over the simulator's responses: sparse coding with 4 and 6 atoms, and
/// online PCA with 5 (what differs between models is their responses and basis; the
/// simulation gives every recipe the same responses, so the bases differ here).
fn recipes(dir: &Path) -> Vec<PathBuf> {
    [("odl4", "atoms = 4"), ("odl6", "atoms = 6"), ("pca5", "atoms = 5\nmethod = \"pca\"")]
        .iter()
        .map(|(name, basis)| {
            let path = dir.join(format!("{name}.toml"));
            std::fs::write(&path, format!("description = \"{name}\"\n[basis]\n{basis}\n[encoding]\nsmoothing_fwhm = 6.0\n")).unwrap();
            path
        })
        .collect()
}

fn simulate(out: &Path) {
    let o = out.to_str().unwrap();
    ok(&["simulate", "--out", o, "--subjects", "3", "--runs", "2", "--scans", "100", "--seed", "5", "--jitter", "0"]);
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A simulated dataset (DIR/sim) and the three recipes, in a temporary folder.
fn setup() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    simulate(&sim);
    let paths = recipes(dir.path());
    (dir, sim, paths)
}

/// `run` of every recipe of `paths` on `sim` into `out`, then `extra`.
fn run_args(paths: &[PathBuf], sim: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["run".to_string()];
    args.extend(paths.iter().map(|p| s(p)));
    args.extend(["--data".into(), s(sim), "--out".into(), s(out)]);
    args.extend(extra.iter().map(|e| e.to_string()));
    args
}

fn ok_args(args: &[String]) -> String {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn three_recipes_in_one_pass_write_the_stores_of_three_runs() {
    let (dir, sim, paths) = setup();
    let d = dir.path();
    for r in &paths {
        let name = r.file_stem().unwrap().to_str().unwrap();
        ok(&["run", &s(r), "--data", &s(&sim), "--out", &s(&d.join("alone").join(name))]);
    }
    let out = ok_args(&run_args(&paths, &sim, &d.join("together"), &[]));
    // 3 subjects × 2 runs: 6 reads for the statistics of all three stores.
    assert!(out.contains("6 new BOLD runs read and cleaned once each for 3 models (6 reads)"), "{out}");
    assert_eq!(out.matches("noise ceiling: 1 stories").count() + out.matches("noise ceiling: 2 stories").count(), 3, "{out}");
    for r in &paths {
        let name = r.file_stem().unwrap().to_str().unwrap();
        assert!(out.contains(&format!("{name}: sub-03: 2 runs")), "{out}");
        assert_same(&d.join("alone").join(name), &d.join("together").join(name));
    }
    let table = std::fs::read_to_string(d.join("together/compare/compare.tsv")).unwrap();
    assert_eq!(table.lines().next().unwrap().split('\t').count(), 4, "a column a model: {table}");
    assert!(d.join("together/compare/compare.svg").is_file());
}

/// kill -9 at seeded moments (during the stories, the shared pass or a store's fits), then
/// the same command again: it ends with the stores of an uninterrupted run.
#[test]
fn a_killed_comparison_resumes_to_the_same_stores() {
    let (dir, sim, paths) = setup();
    let d = dir.path();
    let run = |out: &Path| run_args(&paths, &sim, out, &["--no-ceiling"]);
    let reference = d.join("reference");
    ok_args(&run(&reference));
    let started = std::time::Instant::now();
    kill_until_done(&run(&d.join("timing")), 1, 0, 0, || {});
    // A run that beat its first kill (a faster moment of a busy machine) proves nothing:
    // it goes again into a fresh folder within half the time, down to 10 milliseconds after
    // the start, which no run survives.
    let mut within_ms = started.elapsed().as_millis() as u64;
    let resumed = loop {
        let out = d.join(format!("resumed-within-{within_ms}ms"));
        if kill_until_done(&run(&out), 19, within_ms, 4, || {}) > 0 {
            break out;
        }
        // kill_until_done waits at least a draw below 10 ms: shorter windows are the same.
        assert!(within_ms >= 10, "a run finished within 10 ms: the test proves nothing");
        within_ms /= 2;
    };
    for r in &paths {
        let name = r.file_stem().unwrap().to_str().unwrap();
        assert_same(&reference.join(name), &resumed.join(name));
    }
}

#[test]
fn recipes_that_clean_differently_or_cannot_name_a_folder_are_refused() {
    let (dir, sim, paths) = setup();
    let d = dir.path();
    let other = d.join("raw.toml");
    std::fs::write(&other, "[basis]\natoms = 4\n").unwrap();
    let out = s(&d.join("out"));
    let e = cortexflow_fails(&["run", &s(&paths[0]), &s(&other), "--data", &s(&sim), "--out", &out]);
    assert!(e.contains("recipes 'odl4' and 'raw' clean BOLD differently (encoding.smoothing_fwhm)"), "{e}");
    let twin = d.join("twin");
    std::fs::create_dir(&twin).unwrap();
    std::fs::copy(&paths[0], twin.join("odl4.toml")).unwrap();
    let e = cortexflow_fails(&["run", &s(&paths[0]), &s(&twin.join("odl4.toml")), "--data", &s(&sim), "--out", &out]);
    assert!(e.contains("two recipes are named 'odl4'"), "{e}");
    let odd = d.join("a b.toml");
    std::fs::copy(&paths[0], &odd).unwrap();
    let e = cortexflow_fails(&["run", &s(&paths[0]), &s(&odd), "--data", &s(&sim), "--out", &out]);
    assert!(e.contains("recipe name 'a b' is not a safe file name"), "{e}");
    let reserved = d.join("compare.toml");
    std::fs::copy(&paths[0], &reserved).unwrap();
    let e = cortexflow_fails(&["run", &s(&paths[0]), &s(&reserved), "--data", &s(&sim), "--out", &out]);
    assert!(e.contains("recipe name 'compare'"), "{e}");
    let model = d.join("model.toml");
    std::fs::write(&model, "[model]\npath = \"/nowhere/model\"\n[encoding]\nsmoothing_fwhm = 6.0\n").unwrap();
    let responses = s(&sim.join("truth/responses"));
    let e = cortexflow_fails(&["run", &s(&paths[0]), &s(&model), "--data", &s(&sim), "--responses", &responses, "--out", &out]);
    assert!(e.contains("recipe 'model' names a model"), "{e}");
    let e = cortexflow_fails(&["run", &s(&paths[0]), &s(&model), "--data", &s(&sim), "--out", &out]);
    assert!(e.contains("recipe 'model': model.path /nowhere/model: no such file or folder"), "{e}");
    assert!(!d.join("out").exists(), "nothing written");
}

/// The activation cache (CORTEXFLOW_ACTIVATION_CACHE): a second `run` of a real model on
/// the same stories takes every story from the cache (no token through the model) and
/// writes the bytes of a run without the cache; another layer set misses; a damaged
/// entry is a miss that is computed and written anew.
#[test]
fn the_activation_cache_skips_the_forward_pass_and_changes_no_byte() {
    use super::common::model_recipe;
    use super::models::model_path;
    let Some(minilm) = model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let (dir, sim, _) = setup();
    let d = dir.path();
    let recipe = model_recipe(d, &minilm);
    let cache = d.join("cache");
    let run = |recipe: &Path, out: &str, cached: bool| -> String {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cortexflow"));
        c.args(["run", recipe.to_str().unwrap(), "--data", sim.to_str().unwrap(), "--no-ceiling", "--out", d.join(out).to_str().unwrap()]);
        match cached {
            true => c.env("CORTEXFLOW_ACTIVATION_CACHE", &cache),
            false => c.env_remove("CORTEXFLOW_ACTIVATION_CACHE"),
        };
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plain = run(&recipe, "plain", false);
    assert!(!plain.contains("activation cache"), "{plain}");
    let first = run(&recipe, "first", true);
    assert!(!first.contains("activation cache"), "{first}");
    let entries = || -> Vec<PathBuf> {
        let mut list: Vec<PathBuf> = std::fs::read_dir(&cache).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "acts")).collect();
        list.sort();
        list
    };
    let own = entries();
    assert_eq!(own.len(), 2, "one entry a story");
    let second = run(&recipe, "second", true);
    assert!(second.contains("2 stories, 0 tokens through the model (2 from the activation cache)"), "{second}");
    assert_same(&d.join("plain"), &d.join("first"));
    assert_same(&d.join("plain"), &d.join("second"));
    // Another layer set is another key.
    let other = d.join("other.toml");
    std::fs::write(&other, std::fs::read_to_string(&recipe).unwrap().replace("layers = \"4-5\"", "layers = \"3-5\"")).unwrap();
    let third = run(&other, "third", true);
    assert!(!third.contains("activation cache"), "{third}");
    assert_eq!(entries().len(), 4);
    // Each of the two entries damaged in turn (so the story computed comes before or
    // after the one read): that story is computed again, the other read; same bytes.
    for (n, victim) in own.iter().enumerate() {
        let mut bytes = std::fs::read(victim).unwrap();
        let half = bytes.len() / 2;
        bytes[half] ^= 0x40;
        std::fs::write(victim, bytes).unwrap();
        let out = format!("damaged{n}");
        let again = run(&recipe, &out, true);
        assert!(again.contains("(1 from the activation cache)"), "{again}");
        assert_same(&d.join("plain"), &d.join(&out));
    }
    // A directory where an entry would go, and a cache that cannot be a folder.
    std::fs::remove_file(&own[0]).unwrap();
    std::fs::create_dir(&own[0]).unwrap();
    let beside = run(&recipe, "beside", true);
    assert!(beside.contains("(1 from the activation cache)"), "{beside}");
    assert_same(&d.join("plain"), &d.join("beside"));
    let file = d.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .args(["run", recipe.to_str().unwrap(), "--data", sim.to_str().unwrap(), "--out", d.join("never").to_str().unwrap()])
        .env("CORTEXFLOW_ACTIVATION_CACHE", &file)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("CORTEXFLOW_ACTIVATION_CACHE=") && e.contains("expected a folder"), "{e}");
    assert!(!d.join("never").exists(), "nothing made");
}
