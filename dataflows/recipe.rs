//! Recipes: every setting of an analysis in one TOML file (`dataflows/*.toml`). A store
//! keeps a copy of its recipe and refuses input meant for another one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The settings of an analysis. Every field has the default of the matching CLI option.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// What the recipe is for.
    pub description: String,
    pub model: ModelSection,
    pub basis: BasisSection,
    pub encoding: EncodingSection,
    pub group: GroupSection,
    pub map: MapSection,
}

/// The language model that reads the stories (`ingest --stimulus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Hugging Face folder or GGUF file, relative to the recipe's directory or absolute.
    pub path: Option<PathBuf>,
    pub taps: Vec<String>,
    /// `all` or indices and ranges such as 0,3,6-11.
    pub layers: String,
    pub context: usize,
    /// mean or last.
    pub pooling: String,
    /// spm, glover or fir.
    pub hrf: String,
    pub zscore_responses: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasisSection {
    /// odl or pca.
    pub method: String,
    pub atoms: usize,
    pub lambda: f64,
    /// cd or lars.
    pub lasso: String,
    pub positive: bool,
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodingSection {
    /// Ridge penalties; empty = 10 values log-spaced from 1e-2 to 1e5.
    pub alphas: Vec<f64>,
    /// Cosine drift cut-off in Hz (0: intercept only).
    pub high_pass: f64,
    pub zscore_bold: bool,
    /// Leave-one-run-out ridge (needs 2 runs per subject).
    pub cv: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSection {
    pub fdr: f64,
    /// Threshold |z| instead of FDR when set.
    pub z_cut: Option<f64>,
    pub min_cluster: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapSection {
    pub atlas: String,
    pub atlas_threshold: f64,
    pub sphere_radius: Option<f64>,
    /// iou, dice, overlap-rate or corr.
    pub score: String,
    pub assign_threshold: f64,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            path: None,
            taps: vec!["ffn.out".into()],
            layers: "all".into(),
            context: 256,
            pooling: "mean".into(),
            hrf: "spm".into(),
            zscore_responses: false,
        }
    }
}

impl Default for BasisSection {
    fn default() -> Self {
        BasisSection {
            method: "odl".into(),
            atoms: 64,
            lambda: 0.1,
            lasso: "cd".into(),
            positive: false,
            epochs: 20,
            batch: 256,
            seed: 0,
        }
    }
}

impl Default for EncodingSection {
    fn default() -> Self {
        EncodingSection {
            alphas: Vec::new(),
            high_pass: 0.01,
            zscore_bold: true,
            cv: true,
        }
    }
}

impl Default for GroupSection {
    fn default() -> Self {
        GroupSection {
            fdr: 0.05,
            z_cut: None,
            min_cluster: 0,
        }
    }
}

impl Default for MapSection {
    fn default() -> Self {
        MapSection {
            atlas: "yeo7".into(),
            atlas_threshold: 0.5,
            sphere_radius: None,
            score: "iou".into(),
            assign_threshold: 0.2,
        }
    }
}

impl Recipe {
    /// Reads and checks a recipe file; a relative model path is taken relative to it and
    /// made absolute, so the store's copy names the same model from anywhere.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the recipe", path.display()))?;
        let mut r: Recipe = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a valid recipe: {e}", path.display()))?;
        if let Some(m) = &r.model.path {
            if m.is_relative() {
                let joined = path.parent().unwrap_or(Path::new(".")).join(m);
                r.model.path = Some(std::path::absolute(&joined).with_context(|| {
                    format!(
                        "{}: model.path {} cannot be made absolute",
                        path.display(),
                        m.display()
                    )
                })?);
            }
        }
        r.check().with_context(|| format!("{}", path.display()))?;
        Ok(r)
    }

    fn check(&self) -> Result<()> {
        let one_of = |what: &str, v: &str, ok: &[&str]| -> Result<()> {
            if !ok.contains(&v) {
                bail!("{what} = '{v}': expected one of {}", ok.join(", "));
            }
            Ok(())
        };
        one_of("basis.method", &self.basis.method, &["odl", "pca"])?;
        one_of("basis.lasso", &self.basis.lasso, &["cd", "lars"])?;
        one_of("model.pooling", &self.model.pooling, &["mean", "last"])?;
        one_of("model.hrf", &self.model.hrf, &["spm", "glover", "fir"])?;
        one_of(
            "map.score",
            &self.map.score,
            &["iou", "dice", "overlap-rate", "corr"],
        )?;
        if self.basis.atoms == 0 || self.basis.lambda < 0.0 {
            bail!("basis: atoms must be ≥ 1 and lambda ≥ 0");
        }
        if !(0.0..=1.0).contains(&self.group.fdr) {
            bail!("group.fdr = {}: expected a level in [0, 1]", self.group.fdr);
        }
        Ok(())
    }

    /// The recipe as canonical TOML (what the store keeps and fingerprints).
    pub fn canonical(&self) -> String {
        toml::to_string(self).expect("a recipe serialises")
    }

    /// FNV-1a 64 of the canonical text: equal recipes, equal fingerprints.
    pub fn fingerprint(&self) -> String {
        let hash = self
            .canonical()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
            });
        format!("{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_recipes_load_and_round_trip() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows");
        for name in ["paper.toml", "demo.toml"] {
            let r = Recipe::load(&dir.join(name)).unwrap();
            let again: Recipe = toml::from_str(&r.canonical()).unwrap();
            assert_eq!(again, r, "{name}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<Recipe>("[basis]\natom = 3\n").is_err());
        let r: Recipe = toml::from_str("[basis]\nmethod = \"svd\"\n").unwrap();
        assert!(r
            .check()
            .unwrap_err()
            .to_string()
            .contains("basis.method = 'svd'"));
    }
}
