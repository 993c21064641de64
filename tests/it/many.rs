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

#[test]
fn three_recipes_in_one_pass_write_the_stores_of_three_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim);
    let paths = recipes(d);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for r in &paths {
        let name = r.file_stem().unwrap().to_str().unwrap();
        ok(&["run", &s(r), "--data", &s(&sim), "--out", &s(&d.join("alone").join(name))]);
    }
    let mut args = vec!["run".to_string()];
    args.extend(paths.iter().map(|p| s(p)));
    args.extend(["--data".into(), s(&sim), "--out".into(), s(&d.join("together"))]);
    let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // 3 subjects × 2 runs: 6 reads for the statistics of all three stores.
    assert!(out.contains("6 BOLD runs read and cleaned once each for 3 models (6 reads)"), "{out}");
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
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim);
    let paths = recipes(d);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = |out: &Path| {
        let mut args = vec!["run".to_string()];
        args.extend(paths.iter().map(|p| s(p)));
        args.extend(["--data".into(), s(&sim), "--out".into(), s(out), "--no-ceiling".into()]);
        args
    };
    let reference = d.join("reference");
    ok(&run(&reference).iter().map(String::as_str).collect::<Vec<_>>());
    let resumed = d.join("resumed");
    let started = std::time::Instant::now();
    kill_until_done(&run(&d.join("timing")), 1, 0, 0, || {});
    let full_ms = started.elapsed().as_millis() as u64;
    let kills = kill_until_done(&run(&resumed), 19, full_ms, 4, || {});
    assert!(kills > 0, "never killed: the test proves nothing");
    for r in &paths {
        let name = r.file_stem().unwrap().to_str().unwrap();
        assert_same(&reference.join(name), &resumed.join(name));
    }
}

#[test]
fn recipes_that_clean_differently_or_cannot_name_a_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = d.join("sim");
    simulate(&sim);
    let paths = recipes(d);
    let s = |p: &Path| p.to_str().unwrap().to_string();
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
    let odd = d.join("-x.toml");
    std::fs::copy(&paths[0], &odd).unwrap();
    let e = cortexflow_fails(&["run", &s(&paths[0]), &s(&odd), "--data", &s(&sim), "--out", &out]);
    assert!(e.contains("recipe name '-x'"), "{e}");
    assert!(!d.join("out").exists(), "nothing written");
}
