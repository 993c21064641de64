//! Organisation metrics of a model's ANs over functional brain networks (FBNs). The seed
//! paper names the properties but not the formulas; these operational definitions are ours
//! (README, "Organisation metrics"). Per model, and per model and layer:
//!
//! - `share:<FBN>`, `share:unassigned`, `share:uncoded`: the fraction of ANs whose dominant
//!   atom maps to that FBN, whose dominant atom is unassigned, or with no non-zero code;
//! - `diversity_fbns`: the number of FBNs reached by at least one AN;
//! - `diversity_entropy`: −Σ p_f·ln p_f / ln F over the assigned ANs' FBN shares p_f, F the
//!   atlas's number of networks (0 = one network, 1 = evenly spread);
//! - `compactness_coded_share`: the fraction of ANs with any non-zero code;
//! - `compactness_mean_subgroup_size`: the mean over atoms of how many of the ANs have a
//!   non-zero code on the atom.
//!
//! Per model only (atoms are shared by its layers):
//!
//! - `consistency_best_score`: the mean over atoms of the best network's score;
//! - `consistency_split_half_dice`: the mean over atoms of the split-half Dice of the
//!   thresholded maps (atoms with an undefined Dice are left out);
//! - `assigned_atoms`: how many atoms were assigned a network.

use std::collections::BTreeMap;

/// Where an AN ends up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    Network(String),
    Unassigned,
    Uncoded,
}

/// One AN: its model and layer, the atoms it has non-zero codes on, and its place.
#[derive(Debug, Clone)]
pub struct AnPlace {
    pub model: String,
    pub layer: u16,
    pub coded_atoms: Vec<u16>,
    pub place: Place,
}

/// One row of the `metrics` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub model: String,
    pub layer: Option<u16>,
    pub metric: String,
    pub value: f64,
}

/// The metrics of every model (layer None) and every model and layer, in model, layer,
/// metric order. `networks` is the atlas size F; `best_score` and `split_half_dice` are per
/// atom (NaN where undefined); `assigned_atoms` counts the atoms with a network.
pub fn organisation(
    ans: &[AnPlace],
    networks: usize,
    best_score: &[f64],
    split_half_dice: &[f64],
    assigned_atoms: usize,
) -> Vec<Metric> {
    let mut groups: BTreeMap<(String, Option<u16>), Vec<&AnPlace>> = BTreeMap::new();
    for an in ans {
        groups.entry((an.model.clone(), None)).or_default().push(an);
        groups
            .entry((an.model.clone(), Some(an.layer)))
            .or_default()
            .push(an);
    }
    let mut out = Vec::new();
    for ((model, layer), members) in groups {
        let mut push = |metric: String, value: f64| {
            out.push(Metric {
                model: model.clone(),
                layer,
                metric,
                value,
            })
        };
        let n = members.len() as f64;
        let mut counts: BTreeMap<&Place, usize> = BTreeMap::new();
        for an in &members {
            *counts.entry(&an.place).or_default() += 1;
        }
        for (place, c) in &counts {
            let name = match place {
                Place::Network(f) => format!("share:{f}"),
                Place::Unassigned => "share:unassigned".into(),
                Place::Uncoded => "share:uncoded".into(),
            };
            push(name, *c as f64 / n);
        }
        let assigned: Vec<f64> = counts
            .iter()
            .filter(|(p, _)| matches!(p, Place::Network(_)))
            .map(|(_, &c)| c as f64)
            .collect();
        push("diversity_fbns".into(), assigned.len() as f64);
        push(
            "diversity_entropy".into(),
            normalised_entropy(&assigned, networks),
        );
        let coded = members.iter().filter(|a| !a.coded_atoms.is_empty()).count();
        push("compactness_coded_share".into(), coded as f64 / n);
        let atoms = best_score.len();
        let codes: usize = members.iter().map(|a| a.coded_atoms.len()).sum();
        push(
            "compactness_mean_subgroup_size".into(),
            if atoms > 0 {
                codes as f64 / atoms as f64
            } else {
                f64::NAN
            },
        );
        if layer.is_none() {
            push("consistency_best_score".into(), finite_mean(best_score));
            push(
                "consistency_split_half_dice".into(),
                finite_mean(split_half_dice),
            );
            push("assigned_atoms".into(), assigned_atoms as f64);
        }
    }
    out
}

/// −Σ p·ln p / ln F of the distribution `counts`; NaN without counts or with F < 2.
fn normalised_entropy(counts: &[f64], networks: usize) -> f64 {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 || networks < 2 {
        return f64::NAN;
    }
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0.0)
        .map(|&c| {
            let p = c / total;
            -p * p.ln()
        })
        .sum();
    h / (networks as f64).ln()
}

fn finite_mean(x: &[f64]) -> f64 {
    let f: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
    if f.is_empty() {
        f64::NAN
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn an(layer: u16, atoms: &[u16], place: Place) -> AnPlace {
        AnPlace {
            model: "m".into(),
            layer,
            coded_atoms: atoms.to_vec(),
            place,
        }
    }

    /// Four ANs worked by hand: layer 0 has two in "A" (one on atoms 0 and 1); layer 1 has
    /// one in "B" and one uncoded. Over the model: shares A ½, B ¼, uncoded ¼; entropy of
    /// (2/3, 1/3) over F = 4 networks = 0.6365/ln 4 = 0.4591; 4 codes over 2 atoms = 2.
    #[test]
    fn worked_example() {
        let ans = vec![
            an(0, &[0, 1], Place::Network("A".into())),
            an(0, &[0], Place::Network("A".into())),
            an(1, &[1], Place::Network("B".into())),
            an(1, &[], Place::Uncoded),
        ];
        let m = organisation(&ans, 4, &[0.5, 0.3], &[0.8, f64::NAN], 2);
        let get = |layer: Option<u16>, name: &str| {
            m.iter()
                .find(|r| r.layer == layer && r.metric == name)
                .map(|r| r.value)
                .unwrap_or_else(|| panic!("{layer:?} {name}"))
        };
        assert_eq!(get(None, "share:A"), 0.5);
        assert_eq!(get(None, "share:uncoded"), 0.25);
        assert_eq!(get(None, "diversity_fbns"), 2.0);
        let h = -(2.0f64 / 3.0) * (2.0f64 / 3.0).ln() - (1.0f64 / 3.0) * (1.0f64 / 3.0).ln();
        assert!((get(None, "diversity_entropy") - h / 4f64.ln()).abs() < 1e-12);
        assert_eq!(get(None, "compactness_coded_share"), 0.75);
        assert_eq!(get(None, "compactness_mean_subgroup_size"), 2.0);
        assert_eq!(get(None, "consistency_best_score"), 0.4);
        assert_eq!(get(None, "consistency_split_half_dice"), 0.8);
        assert_eq!(get(Some(0), "share:A"), 1.0);
        assert_eq!(get(Some(0), "diversity_entropy"), 0.0);
        assert_eq!(get(Some(1), "compactness_coded_share"), 0.5);
        assert!(m
            .iter()
            .all(|r| r.layer.is_none() || r.metric != "assigned_atoms"));
    }
}
