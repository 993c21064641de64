//! Which ANs belong to which network: `an_fbn` against a brute-force computation from the
//! AN responses, the atoms and the group maps, and recovery of the planted equivalent ANs.

use cortexflow::io::{nifti, parquet};
use cortexflow::stages::{mapping, recovery};

use super::common::{pearson, simulated_store};


/// The Pearson r of x and c over the stories `which` of a series stacked over stories
/// (`lengths` scans each), each story centred on its own.
fn story_r(x: &[f64], c: &[f64], lengths: &[usize], which: &[usize]) -> f64 {
    let (mut xs, mut cs) = (Vec::new(), Vec::new());
    let mut start = 0;
    for (i, &n) in lengths.iter().enumerate() {
        if which.contains(&i) {
            let (mx, mc) = (x[start..start + n].iter().sum::<f64>() / n as f64, c[start..start + n].iter().sum::<f64>() / n as f64);
            xs.extend(x[start..start + n].iter().map(|v| v - mx));
            cs.extend(c[start..start + n].iter().map(|v| v - mc));
        }
        start += n;
    }
    pearson(&xs, &cs)
}

/// The demo recipe (16 atoms) on a synthetic simulation (4 subjects × 2 runs, seed 5).
/// Each AN's r in `an_fbn` equals, to 1e-5 (the table stores f32), the Pearson r of the
/// AN's response with the network's course Σ_k b_k·d_k computed here from scratch: b_k the
/// mean of the group's mean β of atom k over the network's voxels, each story centred; its
/// r_split is the smaller same-signed r of the two stories (the two halves). And the ANs
/// tied under the default rule recover the planted equivalent ANs.
#[test]
fn an_network_correlations_equal_the_brute_force_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, sim, store) = simulated_store(dir.path(), 5, 4, "demo");

    // Responses (per AN, stories stacked) and atoms, story by story in run order.
    let (mut lengths, mut responses, mut atoms) = (Vec::new(), Vec::<Vec<f64>>::new(), Vec::<Vec<f64>>::new());
    for run in 1..=2 {
        let key = format!("task-lpp_run-{run}");
        let table = parquet::read_responses(&sim.join(format!("truth/responses/{key}.parquet"))).unwrap();
        let (_, d) = parquet::read_atoms(&store.join(format!("basis/atoms/{key}.parquet"))).unwrap();
        assert_eq!(d.nrows(), table.values.ncols());
        lengths.push(d.nrows());
        responses.resize(table.values.nrows(), Vec::new());
        for (u, row) in table.values.rows().into_iter().enumerate() {
            responses[u].extend(row.iter().map(|&v| v as f64));
        }
        atoms.resize(d.ncols(), Vec::new());
        for (k, col) in d.columns().into_iter().enumerate() {
            atoms[k].extend(col.iter().copied());
        }
        if run == 1 {
            assert!(table.an_ids.windows(2).all(|w| w[0] < w[1]));
        }
    }
    let ids = parquet::read_responses(&sim.join("truth/responses/task-lpp_run-1.parquet")).unwrap().an_ids;
    let mask = nifti::read_mask(&store.join("group/mask.nii.gz")).unwrap();
    let beta = mask.rows(&nifti::read_image(&store.join("group/mean_beta.nii.gz")).unwrap());
    let temps = mapping::templates(&recipe.map.options(), &mask, dir.path()).unwrap();
    let rows = parquet::read_an_fbn(&store.join("map/an_fbn.parquet")).unwrap();
    assert!(!rows.is_empty(), "no network has a course");
    let mut checked = 0;
    for net in temps.iter().filter(|t| rows.iter().any(|r| r.fbn == t.name)) {
        let b: Vec<f64> = beta
            .rows()
            .into_iter()
            .map(|row| {
                let v: Vec<f64> = row.iter().zip(&net.voxels).filter(|(x, &on)| on && x.is_finite()).map(|(x, _)| *x).collect();
                v.iter().sum::<f64>() / v.len() as f64
            })
            .collect();
        let t = atoms[0].len();
        let course: Vec<f64> = (0..t).map(|i| b.iter().zip(&atoms).map(|(bk, d)| bk * d[i]).sum()).collect();
        for row in rows.iter().filter(|r| r.fbn == net.name) {
            let u = ids.iter().position(|&id| id == row.an_id).unwrap();
            let want = story_r(&responses[u], &course, &lengths, &[0, 1]);
            assert!((row.r as f64 - want).abs() < 1e-5, "AN {} × {}: {} vs {want}", row.an_id, net.name, row.r);
            let (a, c) = (story_r(&responses[u], &course, &lengths, &[0]), story_r(&responses[u], &course, &lengths, &[1]));
            let split = match a.signum() == want.signum() && c.signum() == want.signum() {
                true => want.signum() * a.abs().min(c.abs()),
                false => 0.0,
            };
            assert!((row.r_split as f64 - split).abs() < 1e-5, "AN {} × {}: split {} vs {split}", row.an_id, net.name, row.r_split);
            checked += 1;
        }
    }
    assert_eq!(checked, rows.len());
    // Under the default rule (course, |r| ≥ 0.7) the tied ANs are the equivalent ones.
    let mut pooled = recovery::TieScore::default();
    for r in recovery::score(&sim, &store).unwrap() {
        println!("{}", r.line());
        pooled.add(&r.equivalent);
    }
    assert!(pooled.truth > 0, "no equivalent AN was planted");
    assert!(pooled.recall() >= 0.8 && pooled.precision() >= 0.8, "{pooled:?}");

    // `map` with a subject map that is not one volume per atom refuses before writing.
    let out = dir.path().join("map-bad");
    let arg = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (beta, one) = (store.join("subjects/sub-01/beta.nii.gz"), store.join("group/mask.nii.gz"));
    let e = super::common::cortexflow_fails(&[
        "map", "--group", &arg(&store.join("group")), "--codes", &arg(&store.join("basis/codes.parquet")),
        "--subject-maps", &arg(&beta), &arg(&one), "--out", &arg(&out),
    ]);
    assert!(e.contains("mask.nii.gz") && e.contains("expected one per atom (16)"), "{e}");
    assert!(!out.join("atom_fbn.parquet").exists(), "nothing written by a refused map");
}

/// An `an_atom` table whose Gram matrices are missing, ragged or asymmetric, whose lists
/// do not match them, or whose rows are not a half-0 then a half-1 row per AN, is refused
/// with the file and what was expected.
#[test]
fn a_broken_an_atom_table_is_refused_in_words() {
    use cortexflow::io::parquet::{write_table_with, Column, ATOM_GRAM_KEY};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("an_atom.parquet");
    let write = |ids: Vec<u64>, halves: Vec<u16>, k: usize, gram: Option<&str>| {
        let n = ids.len();
        let meta: Vec<(&str, String)> = gram.map(|g| (ATOM_GRAM_KEY, g.to_string())).into_iter().collect();
        write_table_with(
            &path,
            "an_atom",
            Some(k),
            vec![
                Column::U64(ids),
                Column::U16(halves),
                Column::F32(vec![1.0; n]),
                Column::F32List { size: k, values: vec![0.5; n * k] },
            ],
            &meta,
        )
        .unwrap();
    };
    let eye = "[[[1, 0], [0, 1]], [[1, 0], [0, 1]]]";
    let cases = [
        (vec![7, 7], vec![0, 1], 2, None, "no cortexflow.atom_gram metadata"),
        (vec![7, 7], vec![0, 1], 2, Some("[[[1, 0], [0]], [[1, 0], [0, 1]]]"), "two square K × K"),
        (vec![7, 7], vec![0, 1], 2, Some("[[[1, 0], [0, 1]]]"), "two square K × K"),
        (vec![7, 7], vec![0, 1], 2, Some("[[[1, 0.5], [0, 1]], [[1, 0], [0, 1]]]"), "finite and symmetric"),
        (vec![7, 7], vec![0, 1], 2, Some("not json"), "JSON list of two matrices"),
        (vec![7, 7], vec![0, 1], 3, Some(eye), "lists of 3 correlations"),
        (vec![7, 7], vec![1, 0], 2, Some(eye), "half 0 then half 1"),
        (vec![7, 8], vec![0, 1], 2, Some(eye), "half 0 then half 1"),
        (vec![7, 7, 9], vec![0, 1, 0], 2, Some(eye), "no half-1 row"),
    ];
    for (ids, halves, k, gram, want) in cases {
        write(ids, halves, k, gram);
        let e = parquet::read_an_atom(&path).unwrap_err().to_string();
        assert!(e.contains("an_atom.parquet") && e.contains(want), "{e}");
    }
    write(vec![7, 7], vec![0, 1], 2, Some("[[[2, 0.5], [0.5, 3]], [[1, 0], [0, 4]]]"));
    let ok = parquet::read_an_atom(&path).unwrap();
    assert_eq!((ok.an_ids, ok.stats.r[1].dim(), ok.stats.gram[1][[1, 1]]), (vec![7], (1, 2), 4.0));
}
