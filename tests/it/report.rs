//! The demo and the report (issue 8): the demo recovers the planted networks with the real
//! MiniLM; its report opens in headless Chromium with every figure rendered and a page
//! that is not blank; reports of a one-subject store and of a store where no atom is
//! assigned still render and say why figures are empty.

use std::path::{Path, PathBuf};
use std::process::Command;

use cortexflow::engine::cluster::Cluster;
use cortexflow::engine::update;
use cortexflow::report;
use cortexflow::stages::simulate::{self, SimulateOptions};
use cortexflow::store::Recipe;

use super::common::ok;

/// Chromium, or None (a note) when it is not installed; `.ci/run` installs it and sets
/// CORTEXFLOW_REQUIRE_BROWSER=1, so the check cannot be skipped there.
fn browser() -> Option<PathBuf> {
    for b in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("which").arg(b).output() {
            if o.status.success() {
                return Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            }
        }
    }
    assert!(
        std::env::var_os("CORTEXFLOW_REQUIRE_BROWSER").is_none(),
        "Chromium not found: run scripts/install-browser"
    );
    eprintln!("note: Chromium not found (scripts/install-browser); browser check not run");
    None
}

fn headless(chromium: &Path, profile: &Path, extra: &[&str], page: &Path) -> std::process::Output {
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("start chromium")
}

/// Opens `html` in headless Chromium: the page's own check must report every figure
/// rendered (`data-figures="ok:N"`), and a screenshot must not be blank.
fn renders(html: &Path, figures: usize) {
    let Some(chromium) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dom = headless(
        &chromium,
        dir.path(),
        &["--virtual-time-budget=10000", "--dump-dom"],
        html,
    );
    let text = String::from_utf8_lossy(&dom.stdout);
    let want = format!("data-figures=\"ok:{figures}\"");
    assert!(
        text.contains(&want),
        "{want} not in the page after load: {}",
        text.lines()
            .find(|l| l.contains("data-figures"))
            .unwrap_or("no body")
    );
    let shot = dir.path().join("shot.png");
    let out = headless(
        &chromium,
        dir.path(),
        &[
            "--window-size=1200,2000",
            &format!("--screenshot={}", shot.display()),
        ],
        html,
    );
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let ink = pixels
        .iter()
        .filter(|p| p[..3].iter().any(|&c| c < 200))
        .count();
    let colours: std::collections::BTreeSet<[u8; 3]> = pixels
        .iter()
        .map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0])
        .collect();
    assert!(
        ink as f64 > 0.03 * pixels.len() as f64 && colours.len() > 20,
        "the screenshot looks blank: {ink} dark pixels of {}, {} colours",
        pixels.len(),
        colours.len()
    );
}

/// "wrote PATH (N figures)" → N.
fn figures(stdout: &str) -> usize {
    let line = stdout
        .lines()
        .find(|l| l.contains(" figures)"))
        .expect("a report line");
    let n = line.rsplit('(').next().unwrap().split(' ').next().unwrap();
    n.parse().unwrap()
}

/// The Dice with the planted map of each planted network's best atom, from the demo's
/// summary lines ("… Dice with the planted map 0.957, …").
fn planted_dice(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.split("Dice with the planted map ").nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn the_demo_recovers_the_planted_networks_and_its_report_renders() {
    let Some(_) = super::models::model_path("all-MiniLM-L6-v2") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let stdout = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stdout.stdout);
    assert!(
        stdout.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&stdout.stderr)
    );
    // Every planted network gets an assigned atom, and "recovered" means its best map has
    // Dice ≥ 0.7 with the planted one: with MiniLM, Default 0.96 and Frontoparietal 0.87
    // pass, Somatomotor's 0.696 does not (seed 0; bytes pinned by the golden record).
    let dice = planted_dice(&text);
    assert_eq!(dice.len(), 3, "{text}");
    assert!(dice.iter().all(|d| *d >= 0.6), "{dice:?}: {text}");
    let recovered = dice.iter().filter(|d| **d >= 0.7).count();
    assert!(recovered >= 2, "{text}");
    assert!(
        text.contains(&format!("planted networks recovered: {recovered} of 3")),
        "{text}"
    );
    assert!(text.contains("MiniLM-L6 ANs"), "{text}");
    // The demo (seed 0) writes the bytes recorded before the application moved.
    super::golden::check_outputs(&out, "demo");
    let html = out.join("report.html");
    let page = std::fs::read_to_string(&html).unwrap();
    // Nothing to fetch: no remote source, link, stylesheet or script (xmlns names are not loads).
    for remote in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(
            !page.contains(remote),
            "the report loads something: {remote}"
        );
    }
    for section in [
        "atoms",
        "maps",
        "overlap",
        "subgroups",
        "encoding",
        "metrics",
    ] {
        assert!(
            page.contains(&format!("<section id=\"{section}\">")),
            "{section}"
        );
    }
    // Each atom with significant voxels gets its table of clusters (tests/it/clusters.rs
    // holds the kernel to nilearn's get_clusters_table).
    assert!(page.contains("<table class=\"clusters\" data-atom=\"0\" data-rows=\""), "no cluster table");
    // Each atom's group map is a viewer (drawn by the page's script; the browser check
    // below counts it drawn, python/tests/test_viewer.py clicks in it).
    assert!(page.contains("<figure class=\"fig viewer\" id=\"fig2\" data-grid=\""), "no viewer");
    renders(&html, figures(&text));
}

/// A small store made in this process through the library: simulate (2 runs × 100 scans),
/// then `run` with an 8-atom recipe.
fn small_store(dir: &Path, subjects: usize, null: bool) -> PathBuf {
    let sim = SimulateOptions {
        out: dir.join("sim"),
        subjects,
        scans: Some(100),
        seed: 2,
        null,
        ..SimulateOptions::default()
    };
    simulate::run(&sim).unwrap();
    let recipe: Recipe = toml::from_str("[basis]\natoms = 8\n").unwrap();
    let store = dir.join("store");
    let responses = sim.out.join("truth/responses");
    update::run_all(&recipe, &update::RunRequest { responses: Some(responses.clone()), ..super::store::run_request(&sim.out) }, &store, &Cluster::default()).unwrap();
    store
}

#[test]
fn reports_of_one_subject_and_of_no_assignment_render_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let one = small_store(&dir.path().join("one"), 1, false);
    let html = one.join("report.html");
    let r = report::run(std::slice::from_ref(&one), &html, None).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    let why = "No group maps: they need at least 2 subjects with runs, and this store has 1";
    assert!(page.contains(why), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.starts_with("No group maps")), "{:?}", r.notes);
    renders(&html, r.figures);

    let null = small_store(&dir.path().join("null"), 3, true);
    let html = dir.path().join("null.html");
    let r = report::run(std::slice::from_ref(&null), &html, None).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("No atom is assigned to a network"), "{:?}", r.notes);
    renders(&html, r.figures);
    // Two stores: the comparison section is there; the command line writes it too.
    let both = dir.path().join("both.html");
    let stdout = ok(&[
        "report",
        null.to_str().unwrap(),
        one.to_str().unwrap(),
        "--out",
        both.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&both)
        .unwrap()
        .contains("<section id=\"compare\">"));
    renders(&both, figures(&stdout));
}

/// Without the checkpoint the demo says how to fetch it, falls back to synthetic ANs, and
/// still recovers what it planted.
#[test]
fn the_demo_without_checkpoints_says_how_to_fetch_them_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let run = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .env("CORTEXFLOW_MODELS", dir.path().join("no-models"))
        .args(["demo", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        text.contains("fetch it with `bash scripts/fetch-models`"),
        "{text}"
    );
    assert!(
        text.contains("falling back to a synthetic population of 384 ANs"),
        "{text}"
    );
    assert!(
        text.contains("planted networks recovered: 3 of 3"),
        "{text}"
    );
    let dice = planted_dice(&text);
    assert!(dice.len() == 3 && dice.iter().all(|d| *d >= 0.9), "{text}");
    assert!(out.join("report.html").is_file());
}
