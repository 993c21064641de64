//! The command line: complete help, and one clean error line (never a panic) on bad input.

use super::common::{cortexflow, cortexflow_fails, fixtures, test_data};

fn help(args: &[&str]) -> String {
    let o = cortexflow(args);
    assert!(o.status.success(), "{args:?}");
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn help_lists_every_subcommand_and_option_with_defaults() {
    let top = help(&["--help"]);
    for sub in [
        "simulate",
        "activations",
        "responses",
        "discover",
        "inspect",
        "schema",
    ] {
        assert!(top.contains(sub), "top-level help lists {sub}");
    }
    let sim = help(&["simulate", "--help"]);
    for (opt, default) in [
        ("--out", None),
        ("--subjects", Some("3")),
        ("--runs", Some("2")),
        ("--seed", Some("0")),
        ("--snr", Some("0.5")),
        ("--grid", Some("4mm")),
        ("--tr", Some("2")),
        ("--scans", None),
        ("--networks", Some("7,6,2")),
        ("--neurons", Some("384")),
        ("--group-size", Some("24")),
        ("--factors", Some("4")),
        ("--ar1", Some("0.3")),
        ("--jitter", Some("1")),
        ("--null", None),
        ("--model", None),
        ("--model-taps", Some("ffn.out")),
        ("--model-layers", Some("all")),
    ] {
        assert!(sim.contains(opt), "simulate help names {opt}");
        if let Some(d) = default {
            assert!(
                sim.contains(&format!("[default: {d}]")),
                "simulate help gives the default of {opt}"
            );
        }
    }
    let responses = help(&["responses", "--help"]);
    for (opt, default) in [
        ("--model", None),
        ("--stimulus", None),
        ("--tr", None),
        ("--n-scans", None),
        ("--hrf", Some("spm")),
        ("--delays", Some("0,1,2,3,4,5")),
        ("--zscore", None),
        ("--taps", Some("ffn.out")),
        ("--layers", Some("all")),
        ("--context", Some("256")),
        ("--batch", Some("4")),
        ("--pooling", Some("mean")),
        ("--out", None),
    ] {
        assert!(responses.contains(opt), "responses help names {opt}");
        if let Some(d) = default {
            assert!(
                responses.contains(&format!("[default: {d}]")),
                "responses help gives the default of {opt}"
            );
        }
    }
    let basis = help(&["basis", "--help"]);
    for (opt, default) in [
        ("--responses", None),
        ("--method", Some("odl")),
        ("--atoms", Some("64")),
        ("--lambda", Some("0.1")),
        ("--lasso", Some("cd")),
        ("--positive", None),
        ("--epochs", Some("20")),
        ("--tol", Some("0.0001")),
        ("--batch", Some("256")),
        ("--seed", Some("0")),
        ("--extend", None),
        ("--out", None),
    ] {
        assert!(basis.contains(opt), "basis help names {opt}");
        if let Some(d) = default {
            assert!(
                basis.contains(&format!("[default: {d}]")),
                "basis help gives the default of {opt}"
            );
        }
    }
    let acts = help(&["activations", "--help"]);
    for opt in [
        "--model",
        "--text",
        "--taps",
        "--layers",
        "--context",
        "--batch",
        "--pooling",
        "--tier",
        "--out",
    ] {
        assert!(acts.contains(opt), "activations help names {opt}");
    }
    assert!(help(&["inspect", "--help"]).contains("--tier"));
    assert!(help(&["discover", "--help"]).contains("<DIR>"));
    assert!(help(&["schema", "--help"]).contains("voxel_fits"));
}

#[test]
fn bad_input_ends_in_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.nii.gz");
    let bytes = std::fs::read(test_data().join("fmri/nitime/fmri1.nii.gz")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let e = cortexflow_fails(&["inspect", cut.to_str().unwrap()]);
    assert!(e.contains("cut.nii.gz") && e.contains("truncated"), "{e}");
    let e = cortexflow_fails(&["inspect", dir.path().join("missing.nii").to_str().unwrap()]);
    assert!(e.contains("missing.nii"), "{e}");
    let grid = dir.path().join("no_tier.TextGrid");
    std::fs::write(&grid, "File type = \"ooTextFile\"\nObject class = \"TextGrid\"\nxmin = 0\nxmax = 1\ntiers? <exists>\nsize = 0\nitem []:\n").unwrap();
    let e = cortexflow_fails(&["inspect", grid.to_str().unwrap()]);
    assert!(
        e.contains("no_tier.TextGrid") && e.contains("no tiers"),
        "{e}"
    );
    let e = cortexflow_fails(&["discover", dir.path().join("nowhere").to_str().unwrap()]);
    assert!(
        e.contains("nowhere") && e.contains("not a directory"),
        "{e}"
    );
    let out = dir.path().join("o");
    let e = cortexflow_fails(&["simulate", "--out", out.to_str().unwrap(), "--runs", "12"]);
    assert!(e.contains("--runs 12"), "{e}");
    let e = cortexflow_fails(&[
        "simulate",
        "--out",
        out.to_str().unwrap(),
        "--networks",
        "9",
    ]);
    assert!(e.contains("not a Yeo-7 label"), "{e}");
    let e = cortexflow_fails(&["schema", "nope"]);
    assert!(e.contains("nope"), "{e}");
    let magic = dir.path().join("magic.nii.gz");
    std::fs::write(
        &magic,
        std::fs::read(fixtures().join("written_map.nii.gz"))
            .unwrap()
            .iter()
            .rev()
            .copied()
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let e = cortexflow_fails(&["inspect", magic.to_str().unwrap()]);
    assert!(e.contains("magic.nii.gz"), "{e}");
}

#[test]
fn discover_reports_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (sub, run) in [("01", "1"), ("01", "2"), ("02", "1")] {
        let func = root.join(format!("sub-{sub}/func"));
        std::fs::create_dir_all(&func).unwrap();
        std::fs::copy(
            test_data().join("fmri/nibabel/functional.nii"),
            func.join(format!("sub-{sub}_task-story_run-{run}_bold.nii")),
        )
        .unwrap();
    }
    std::fs::create_dir_all(root.join("stimuli")).unwrap();
    std::fs::write(
        root.join("stimuli/task-story_run-1.tsv"),
        "word\tonset\toffset\na\t0\t1\n",
    )
    .unwrap();
    let o = cortexflow(&["discover", root.to_str().unwrap()]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("2 subjects, 3 runs"), "{text}");
    assert!(
        text.contains("sub-01/task-story/run-2: no stimulus"),
        "{text}"
    );
    assert!(
        text.contains("sub-02: no BOLD for task-story run-2"),
        "{text}"
    );
    assert!(text.contains("mask: none"), "{text}");
}
