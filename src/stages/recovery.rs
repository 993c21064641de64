//! How well a store recovered what `simulate` planted: for each planted network, whether an
//! atom was assigned to it, the Dice of that atom's thresholded group map with the planted
//! map (the best such atom), and how the atom's AN sub-group compares with the planted
//! ANs (F1), plus the share of planted ANs whose network is the planted one. In a store of
//! region time series the planted map is the regions its `regions.tsv` gives the network.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{Context, Result};
use crate::io::nifti;
use crate::io::regions::{Regions, REGIONS_FILE};
use crate::io::parquet::{read_an_fbn, read_atom_fbn, read_neurons, read_subgroups};
use serde::Deserialize;

#[derive(Deserialize)]
struct Planted {
    networks: Vec<PlantedNetwork>,
    #[serde(default)]
    null: bool,
}

#[derive(Deserialize)]
struct PlantedNetwork {
    name: String,
    volume: usize,
    an_ids: Vec<u64>,
    #[serde(default)]
    equivalent_an_ids: Vec<u64>,
}

/// One planted network's recovery.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub network: String,
    /// Atoms assigned to the network.
    pub atoms: Vec<u16>,
    /// The assigned atom whose map best matches the planted map, with that Dice.
    pub best: Option<(u16, f64)>,
    /// F1 of the best atom's AN sub-group against the planted ANs.
    pub f1: f64,
    /// Planted ANs whose dominant atom is assigned to this network (the recall of
    /// `tied_f1`).
    pub ans_tied: f64,
    /// F1 of the ANs tied to this network (dominant atom assigned to it, by any atom)
    /// against the planted ANs: the paper's output, which ANs belong to which network.
    pub tied_f1: f64,
    /// The best atom's spatial-null p for this network (NaN without surrogates).
    pub spatial_p: f64,
    /// The ANs tied to the network against the ANs equivalent to the planted course
    /// (planted.json `equivalent_an_ids`), over all ANs and per layer.
    pub equivalent: TieScore,
    pub by_layer: Vec<(u16, TieScore)>,
}

/// ANs tied to a network against a truth set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TieScore {
    /// ANs in the truth set, ANs tied, and ANs in both.
    pub truth: usize,
    pub tied: usize,
    pub hits: usize,
}

impl TieScore {
    fn of(tied: &BTreeSet<u64>, truth: &BTreeSet<u64>) -> TieScore {
        TieScore { truth: truth.len(), tied: tied.len(), hits: tied.intersection(truth).count() }
    }

    /// Share of the truth set tied (NaN for an empty truth set).
    pub fn recall(&self) -> f64 {
        self.hits as f64 / self.truth as f64
    }

    /// Share of the tied ANs in the truth set (NaN when none is tied).
    pub fn precision(&self) -> f64 {
        self.hits as f64 / self.tied as f64
    }

    pub fn add(&mut self, o: &TieScore) {
        self.truth += o.truth;
        self.tied += o.tied;
        self.hits += o.hits;
    }
}

/// A planted network counts as recovered when an atom assigned to it has a thresholded
/// group map with at least this Dice with the planted map: an assignment alone (IoU ≥ 0.2
/// with the atlas network) also passes maps that cover a fraction of it.
pub const RECOVERED_DICE: f64 = 0.7;

impl Recovery {
    pub fn recovered(&self) -> bool {
        self.best.is_some_and(|(_, dice)| dice >= RECOVERED_DICE)
    }

    /// Per layer with equivalent or tied ANs: the tied ANs against the equivalent ones.
    pub fn layer_lines(&self) -> Vec<String> {
        self.by_layer
            .iter()
            .filter(|(_, t)| t.truth + t.tied > 0)
            .map(|(l, t)| format!("layer {l}: {} of {} equivalent ANs tied, {} tied in all (recall {:.2}, precision {:.2})", t.hits, t.truth, t.tied, t.recall(), t.precision()))
            .collect()
    }

    pub fn line(&self) -> String {
        let Some((a, dice)) = self.best else {
            return format!("{}: not recovered (no atom assigned)", self.network);
        };
        let what = if self.recovered() {
            format!("recovered by {} atom(s)", self.atoms.len())
        } else {
            format!(
                "not recovered (Dice below {RECOVERED_DICE}) though {} atom(s) are assigned",
                self.atoms.len()
            )
        };
        let e = &self.equivalent;
        format!(
            "{}: {what}; best atom {a}: Dice with the planted map {dice:.3}, sub-group F1 {:.2}{}; {:.0}% of the planted ANs tied to it, AN F1 {:.2}; equivalent ANs: {} of {} tied (recall {:.2}), precision {:.2} of {} tied",
            self.network,
            self.f1,
            match self.spatial_p.is_nan() {
                true => String::new(),
                false => format!(", spatial-null p {:.3}", self.spatial_p),
            },
            100.0 * self.ans_tied,
            self.tied_f1,
            e.hits,
            e.truth,
            e.recall(),
            e.precision(),
            e.tied
        )
    }
}

fn planted(data: &Path) -> Result<Planted> {
    let path = data.join("truth").join("planted.json");
    serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("{}: no truth/planted.json (not a simulation?)", data.display()))?,
    )
    .with_context(|| path.display().to_string())
}

/// Atoms of `store` assigned to a network nothing was planted in (every assigned atom, in
/// a null simulation).
pub fn false_assignments(data: &Path, store: &Path) -> Result<Vec<(u16, String)>> {
    let planted = planted(data)?;
    Ok(read_atom_fbn(&store.join("map/atom_fbn.parquet"))?
        .into_iter()
        .filter(|r| r.assigned && (planted.null || !planted.networks.iter().any(|n| n.name == r.fbn)))
        .map(|r| (r.atom, r.fbn))
        .collect())
}

/// Scores `store` against the truth of the simulated dataset in `data`.
pub fn score(data: &Path, store: &Path) -> Result<Vec<Recovery>> {
    let truth = data.join("truth");
    let planted = planted(data)?;
    let maps = nifti::read_image(&truth.join("maps.nii.gz"))?;
    let sig = nifti::read_image(&store.join("group/thresholded_z.nii.gz"))?;
    let atom_fbn = read_atom_fbn(&store.join("map/atom_fbn.parquet"))?;
    let subgroups = read_subgroups(&store.join("map/subgroups.parquet"))?;
    let an_fbn = read_an_fbn(&store.join("map/an_fbn.parquet"))?;
    let layer_of: std::collections::BTreeMap<u64, u16> = read_neurons(&truth.join("neurons.parquet"))?
        .into_iter()
        .map(|n| (n.an_id, n.layer))
        .collect();
    let voxels = |img: &nifti::Image, vol: usize, keep: fn(f32) -> bool| -> BTreeSet<[usize; 3]> {
        img.data
            .indexed_iter()
            .filter(|&((_, _, _, a), &v)| a == vol && keep(v))
            .map(|((i, j, k, _), _)| [i, j, k])
            .collect()
    };
    let regions = match store.join(REGIONS_FILE) {
        list if list.is_file() => {
            let r = Regions::read(&list)?;
            let ijk: Vec<[usize; 3]> = r.mask().ijk().collect();
            Some((r, ijk))
        }
        _ => None,
    };
    let mut out = Vec::new();
    for net in planted.networks {
        let atoms: Vec<u16> = atom_fbn
            .iter()
            .filter(|r| r.assigned && r.fbn == net.name)
            .map(|r| r.atom)
            .collect();
        let truth_map = match &regions {
            // A store of region time series: the planted network's regions, on their line.
            Some((r, ijk)) => r.networks.iter().zip(ijk).filter(|(n, _)| **n == net.name).map(|(_, &p)| p).collect(),
            None => voxels(&maps, net.volume, |v| v > 0.0),
        };
        let best = atoms
            .iter()
            .map(|&a| {
                let m = voxels(&sig, a as usize, |v| v != 0.0 && v.is_finite());
                let dice = 2.0 * m.intersection(&truth_map).count() as f64
                    / (m.len() + truth_map.len()).max(1) as f64;
                (a, dice)
            })
            .max_by(|x, y| x.1.total_cmp(&y.1));
        let planted_ans: BTreeSet<u64> = net.an_ids.iter().copied().collect();
        let f1 = best.map_or(0.0, |(a, _)| {
            let members: BTreeSet<u64> = subgroups
                .iter()
                .filter(|s| s.atom == a)
                .map(|s| s.an_id)
                .collect();
            2.0 * members.intersection(&planted_ans).count() as f64
                / (members.len() + planted_ans.len()).max(1) as f64
        });
        let tied: BTreeSet<u64> = an_fbn
            .iter()
            .filter(|s| s.tied && s.fbn == net.name)
            .map(|s| s.an_id)
            .collect();
        let equivalent_ans: BTreeSet<u64> = net.equivalent_an_ids.iter().copied().collect();
        let layers: BTreeSet<u16> = layer_of.values().copied().collect();
        let by_layer = layers
            .into_iter()
            .map(|l| {
                let in_layer = |s: &BTreeSet<u64>| -> BTreeSet<u64> { s.iter().copied().filter(|id| layer_of.get(id) == Some(&l)).collect() };
                (l, TieScore::of(&in_layer(&tied), &in_layer(&equivalent_ans)))
            })
            .collect();
        let equivalent = TieScore::of(&tied, &equivalent_ans);
        let hits = tied.intersection(&planted_ans).count() as f64;
        let tied_f1 = 2.0 * hits / (tied.len() + planted_ans.len()).max(1) as f64;
        let tied = hits / planted_ans.len().max(1) as f64;
        let spatial_p = best.map_or(f64::NAN, |(a, _)| {
            atom_fbn
                .iter()
                .find(|r| r.atom == a && r.fbn == net.name)
                .map_or(f64::NAN, |r| r.p_spatial)
        });
        out.push(Recovery {
            network: net.name,
            atoms,
            best,
            f1,
            ans_tied: tied,
            tied_f1,
            spatial_p,
            equivalent,
            by_layer,
        });
    }
    Ok(out)
}
