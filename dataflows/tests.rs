//! The command line against the recipe: every default a command shares with a recipe is
//! the recipe's, and the cluster options parse as timely's own.

use clap::Parser;
use cortexflow::store::Recipe;

use super::{encode, group, ingest, map, responses, Cli, Command};

fn parse(args: &[&str]) -> Command {
    let argv = std::iter::once("cortexflow").chain(args.iter().copied());
    Cli::try_parse_from(argv).expect("parses").command
}

#[test]
fn every_cli_default_is_the_recipes() {
    let r = Recipe::default();
    let Command::Basis(b) = parse(&["basis", "--responses", "x", "--out", "o"]) else {
        unreachable!()
    };
    assert_eq!(b.options().unwrap(), r.basis.options());
    let Command::Encode(e) = parse(&["encode", "--regressors", "a", "--bold", "b", "--mask", "m", "--out", "o"]) else {
        unreachable!()
    };
    let opt: encode::Args = e;
    let o = opt.options().unwrap();
    assert_eq!(o.alphas, r.encoding.alpha_grid());
    assert_eq!(o.zscore, r.encoding.zscore_bold);
    assert_eq!(o.cv, r.encoding.cv);
    assert_eq!(o.smoothing_fwhm, r.encoding.smoothing_fwhm);
    assert_eq!(o.high_pass, Some(r.encoding.high_pass));
    let Command::Group(g) = parse(&["group", "--encode", "e", "--mask", "m", "--out", "o"]) else {
        unreachable!()
    };
    let g: group::Args = g;
    assert_eq!(g.section().unwrap(), r.group);
    let Command::Map(m) = parse(&["map", "--group", "g", "--codes", "c", "--out", "o"]) else {
        unreachable!()
    };
    let m: map::Args = m;
    assert_eq!(m.section().unwrap(), r.map);
    let Command::Responses(t) = parse(&[
        "responses", "--model", "m", "--stimulus", "s", "--tr", "2", "--n-scans", "9", "--out", "o",
    ]) else {
        unreachable!()
    };
    let t: responses::Args = t;
    assert_eq!(t.hrf, r.model.hrf);
    assert_eq!(t.delays, r.model.fir_delays);
    assert_eq!(t.zscore, r.model.zscore_responses);
    assert_eq!(t.taps.taps, r.model.taps);
    assert_eq!(t.taps.layers, r.model.layers);
    assert_eq!(t.taps.context, r.model.context);
    assert_eq!(t.taps.pooling, r.model.pooling);
    // Values that a recipe rejects, the commands reject too.
    let Command::Group(g) = parse(&["group", "--encode", "e", "--mask", "m", "--out", "o", "--fdr", "2"]) else {
        unreachable!()
    };
    assert!(g.section().unwrap_err().to_string().contains("group.fdr = 2"));
    let Command::Map(m) = parse(&["map", "--group", "g", "--codes", "c", "--out", "o", "--assign-threshold=-1"]) else {
        unreachable!()
    };
    assert!(m.section().is_err());
    let Command::Encode(e) = parse(&["encode", "--regressors", "a", "--bold", "b", "--mask", "m", "--out", "o", "--high-pass=-1"]) else {
        unreachable!()
    };
    assert!(e.options().unwrap_err().to_string().contains("encoding.high_pass = -1"));
}

#[test]
fn cluster_options_are_timelys_and_help_is_long_only() {
    let Command::Ingest(a) = parse(&["ingest", "S", "-w", "2", "-n", "3", "-p", "1", "-h", "hosts.txt", "--bold", "x"]) else {
        unreachable!()
    };
    let a: ingest::Args = a;
    let c = a.cluster.cluster().unwrap();
    assert_eq!((c.workers, c.processes, c.process), (2, 3, 1));
    assert_eq!(c.hostfile, Some("hosts.txt".into()));
    assert_eq!(c.connect_timeout.as_secs(), 60);
    // Without -w: the cores, shared by the processes on this host (all of them here).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (n, want) in [(1, cores), (2, (cores / 2).max(1)), (cores * 2, 1)] {
        let Command::Ingest(a) = parse(&["ingest", "S", "-n", &n.to_string(), "--bold", "x"]) else {
            unreachable!()
        };
        assert_eq!(a.cluster.cluster().unwrap().workers, want, "-n {n}");
    }
    // With a hostfile: only the processes on this process's host share its cores.
    let hosts = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(hosts.path(), "10.0.0.1:2101\n10.0.0.2:2101\n10.0.0.2:2102\n").unwrap();
    for (p, want) in [(0, cores), (2, (cores / 2).max(1))] {
        let h = hosts.path().to_str().unwrap();
        let Command::Ingest(a) = parse(&["ingest", "S", "-n", "3", "-p", &p.to_string(), "-h", h, "--bold", "x"]) else {
            unreachable!()
        };
        assert_eq!(a.cluster.cluster().unwrap().workers, want, "-p {p}");
    }
    let Command::Ingest(a) = parse(&["ingest", "S", "-p", "2", "-n", "2"]) else {
        unreachable!()
    };
    assert!(a.cluster.cluster().unwrap_err().to_string().contains("below -n 2"));
    for bad in [&["ingest", "S", "-w", "0"][..], &["schema", "-w", "2"], &["ingest", "S", "-h"]] {
        let argv = std::iter::once("cortexflow").chain(bad.iter().copied());
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
    }
    let argv = ["cortexflow", "ingest", "--help"];
    let help = Cli::try_parse_from(argv).unwrap_err();
    assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    for flag in ["--workers", "--processes", "--process", "--hostfile", "--connect-timeout"] {
        assert!(help.to_string().contains(flag), "{flag} in ingest --help");
    }
}
