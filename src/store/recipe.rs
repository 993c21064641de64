//! Recipes: every setting of an analysis in one TOML file (`dataflows/*.toml`). A store
//! keeps a copy of its recipe and refuses input meant for another one.

use std::path::{Path, PathBuf};

use crate::error::{err, bail, Context, Error, Result};
use serde::{Deserialize, Serialize};

pub use super::settings::{EstimatorSetting, HrfSetting, LassoSetting, MethodSetting, PoolingSetting};

use crate::stages::confounds::Component;
use crate::stages::mapping::Score;
use crate::stages::ties::TieRule;

/// The settings of an analysis: the one source of every default (the command line takes
/// its defaults from [`Recipe::default`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// What the recipe is for.
    pub description: String,
    pub model: ModelSection,
    pub basis: BasisSection,
    pub encoding: EncodingSection,
    /// fMRIPrep confounds and censoring (nilearn's `load_confounds`); off when absent, and
    /// then left out of the canonical text, so recipes written before it keep their
    /// fingerprints.
    #[serde(skip_serializing_if = "ConfoundsSection::is_default")]
    pub confounds: ConfoundsSection,
    pub group: GroupSection,
    pub map: MapSection,
}

pub use crate::stages::confounds::Strategy as ConfoundsSection;

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
    pub pooling: PoolingSetting,
    pub hrf: HrfSetting,
    /// With `hrf = "fir"`: the delays in scans.
    #[serde(skip_serializing_if = "is_default_delays")]
    pub fir_delays: Vec<usize>,
    pub zscore_responses: bool,
    /// Seconds into each run at which its stimulus file's time 0 falls (an audio that
    /// starts after the first scan); 0 for BIDS events, whose onsets count from the run's
    /// start. Left out of the canonical text when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub stimulus_onset: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The latest stimulus onset accepted (s): later is a typo, not a story.
pub const MAX_STIMULUS_ONSET_S: f64 = 3600.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasisSection {
    pub method: MethodSetting,
    pub atoms: usize,
    pub lambda: f64,
    pub lasso: LassoSetting,
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
    /// Gaussian smoothing of each BOLD volume, FWHM in mm (nilearn's `smooth_img`);
    /// none when unset.
    pub smoothing_fwhm: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSection {
    /// The subjects' β that the group test takes. `ols` by default: in the README's study it
    /// ties with `ridge` at 16 atoms and needs no second run; the paper recipe (64 atoms)
    /// takes `ridge`, the study's winner there. Left out of the canonical text when `ols`,
    /// so stores made before the setting existed keep their fingerprints.
    #[serde(skip_serializing_if = "EstimatorSetting::is_ols")]
    pub estimator: EstimatorSetting,
    pub fdr: f64,
    /// Threshold |z| instead of FDR when set.
    pub z_cut: Option<f64>,
    pub min_cluster: usize,
    /// Sign-flip permutations of the subjects' maps; when > 0 the maps are thresholded at
    /// family-wise error `fwer` by the maximum |t| (nilearn's `non_parametric_inference`),
    /// instead of FDR. These three are left out of the canonical text at their defaults.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub permutations: usize,
    #[serde(skip_serializing_if = "is_default_fwer")]
    pub fwer: f64,
    /// Seed of the sign flips.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub permutation_seed: u64,
}

fn is_zero_usize(x: &usize) -> bool {
    *x == 0
}

fn is_zero_u64(x: &u64) -> bool {
    *x == 0
}

/// The family-wise error level when none is given.
pub const DEFAULT_FWER: f64 = 0.05;

fn is_default_fwer(x: &f64) -> bool {
    *x == DEFAULT_FWER
}

/// The most sign-flip permutations accepted (each costs a pass over every map).
pub const MAX_PERMUTATIONS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapSection {
    pub atlas: String,
    pub atlas_threshold: f64,
    pub sphere_radius: Option<f64>,
    pub score: Score,
    pub assign_threshold: f64,
    /// Variogram-matched surrogate maps per atom for the spatial-null p value of every
    /// atom × network score (0: none). Left out of the canonical text at 0.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub surrogates: usize,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub surrogate_seed: u64,
    /// How ANs are tied to networks (`course` or `dominant`) and the |r| with a network's
    /// fitted course, in both halves of the stories, the `course` rule needs; left out of the canonical text at their
    /// defaults, chosen by `scripts/studies/an_ties.sh`.
    #[serde(skip_serializing_if = "is_default_ties")]
    pub ties: TieRule,
    #[serde(skip_serializing_if = "is_default_tie_r")]
    pub tie_r: f64,
}

/// The default AN → network rule and its |r| (README, "Which ANs belong to a network").
pub const DEFAULT_TIES: TieRule = TieRule::Course;
pub const DEFAULT_TIE_R: f64 = 0.7;

fn is_default_ties(t: &TieRule) -> bool {
    *t == DEFAULT_TIES
}

fn is_default_tie_r(r: &f64) -> bool {
    *r == DEFAULT_TIE_R
}

/// The fewest surrogates accepted: 19 give the smallest p, 1/20 = 0.05.
pub const MIN_SURROGATES: usize = 19;
/// The most surrogates accepted per atom map.
pub const MAX_SURROGATES: usize = 100_000;

/// The widest smoothing accepted (mm): wider blurs a whole brain into a few voxels.
pub const MAX_FWHM_MM: f64 = 50.0;

/// The FIR delays when none are given: 0..6 scans.
pub const DEFAULT_FIR_DELAYS: [usize; 6] = [0, 1, 2, 3, 4, 5];

fn is_default_delays(d: &Vec<usize>) -> bool {
    d.as_slice() == DEFAULT_FIR_DELAYS
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            path: None,
            taps: vec!["ffn.out".into()],
            layers: "all".into(),
            context: 256,
            pooling: PoolingSetting::Mean,
            hrf: HrfSetting::Spm,
            fir_delays: DEFAULT_FIR_DELAYS.to_vec(),
            zscore_responses: false,
            stimulus_onset: 0.0,
        }
    }
}

impl Default for BasisSection {
    fn default() -> Self {
        BasisSection {
            method: MethodSetting::Odl,
            atoms: 64,
            lambda: 0.1,
            lasso: LassoSetting::Cd,
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
            smoothing_fwhm: None,
        }
    }
}

impl Default for GroupSection {
    fn default() -> Self {
        GroupSection {
            estimator: EstimatorSetting::Ols,
            fdr: 0.05,
            z_cut: None,
            min_cluster: 0,
            permutations: 0,
            fwer: DEFAULT_FWER,
            permutation_seed: 0,
        }
    }
}

impl Default for MapSection {
    fn default() -> Self {
        MapSection {
            atlas: "yeo7".into(),
            atlas_threshold: 0.5,
            sphere_radius: None,
            score: Score::Iou,
            assign_threshold: 0.2,
            surrogates: 0,
            surrogate_seed: 0,
            ties: DEFAULT_TIES,
            tie_r: DEFAULT_TIE_R,
        }
    }
}

impl Recipe {
    /// Reads and checks a recipe file; a relative model path is taken relative to it and
    /// made absolute, so the store's copy names the same model from anywhere.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the recipe", path.display()))?;
        let mut r: Recipe = toml::from_str(&text).map_err(|e| {
            // One line: the parser's message at its line (its own text spans several).
            let line = e.span().map_or(1, |s| text[..s.start].lines().count().max(1));
            let msg = e.message().trim().replace('\n', " ");
            Error::at_line(path, line, format!("not a valid recipe: {msg}"))
        })?;
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

    /// Every value the library would reject later (and nonsense such as a negative
    /// assignment threshold), rejected here, before a store is made.
    pub fn check(&self) -> Result<()> {
        self.model.check()?;
        self.basis.check()?;
        self.encoding.check()?;
        self.confounds.check()?;
        if self.confounds.strategy.contains(&Component::HighPass) && self.encoding.high_pass > 0.0 {
            bail!(
                "confounds.strategy has high_pass (fMRIPrep's cosines) and encoding.high_pass = {} adds cortexflow's: two drift models of one run; set encoding.high_pass = 0 or drop high_pass from confounds.strategy",
                self.encoding.high_pass
            );
        }
        self.group.check()?;
        if self.group.estimator == EstimatorSetting::Ridge && !self.encoding.cv {
            bail!("group.estimator = \"ridge\" takes the cross-validated ridge's β: set encoding.cv = true (and give each subject 2 or more runs)");
        }
        self.map.check()
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

/// The first rule that fails, as an error naming the setting and what it must be.
fn first_broken<const N: usize>(rules: [(bool, String); N]) -> Result<()> {
    match rules.into_iter().find(|(ok, _)| !ok) {
        Some((_, why)) => bail!("{why}"),
        None => Ok(()),
    }
}

/// An optional setting as written in a recipe (`-1`, not `Some(-1.0)`).
fn shown(x: Option<f64>) -> String {
    x.map_or("(none)".into(), |v| v.to_string())
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

impl ModelSection {
    pub fn check(&self) -> Result<()> {
        first_broken([
            (self.context >= 1, format!("model.context = {}: at least 1 token", self.context)),
            (!self.fir_delays.is_empty(), "model.fir_delays: at least one delay".into()),
            (
                (0.0..=MAX_STIMULUS_ONSET_S).contains(&self.stimulus_onset),
                format!("model.stimulus_onset = {}: seconds in [0, {MAX_STIMULUS_ONSET_S}]", self.stimulus_onset),
            ),
        ])?;
        crate::stages::responses::parse_layers(&self.layers).context("model.layers")?;
        for t in &self.taps {
            t.parse::<crate::model::Tap>()
                .map_err(|e| err!("model.taps: {e}"))?;
        }
        Ok(())
    }
}

impl BasisSection {
    pub fn check(&self) -> Result<()> {
        first_broken([
            (self.atoms >= 1, format!("basis.atoms = {}: at least 1", self.atoms)),
            (
                positive(self.lambda)
                    || (self.method == MethodSetting::Pca && self.lambda.is_finite()),
                format!("basis.lambda = {}: a positive number", self.lambda),
            ),
            (self.epochs >= 1, format!("basis.epochs = {}: at least 1", self.epochs)),
            (self.batch >= 1, format!("basis.batch = {}: at least 1", self.batch)),
        ])
    }
}

impl EncodingSection {
    pub fn check(&self) -> Result<()> {
        first_broken([
            (
                self.alphas.iter().all(|&a| positive(a)),
                format!("encoding.alphas = {:?}: positive numbers", self.alphas),
            ),
            (
                self.high_pass.is_finite() && self.high_pass >= 0.0,
                format!("encoding.high_pass = {}: a cut-off ≥ 0 Hz", self.high_pass),
            ),
            (
                self.smoothing_fwhm.is_none_or(|f| positive(f) && f <= MAX_FWHM_MM),
                format!(
                    "encoding.smoothing_fwhm = {}: a width in mm, in (0, {MAX_FWHM_MM}]",
                    shown(self.smoothing_fwhm)
                ),
            ),
        ])
    }
}

impl GroupSection {
    pub fn check(&self) -> Result<()> {
        first_broken([
            (
                // 0 would find nothing and 1 everything: neither is a test.
                self.fdr > 0.0 && self.fdr < 1.0,
                format!("group.fdr = {}: a level in (0, 1)", self.fdr),
            ),
            (
                self.z_cut.is_none_or(positive),
                format!("group.z_cut = {}: a positive |z|", shown(self.z_cut)),
            ),
            (
                self.fwer > 0.0 && self.fwer < 1.0,
                format!("group.fwer = {}: a level in (0, 1)", self.fwer),
            ),
            (
                self.permutations <= MAX_PERMUTATIONS,
                format!("group.permutations = {}: at most {MAX_PERMUTATIONS}", self.permutations),
            ),
            (
                self.permutations == 0 || self.z_cut.is_none(),
                "group.permutations and group.z_cut are two thresholds: give one".into(),
            ),
            (
                self.permutations > 0 || self.fwer == DEFAULT_FWER,
                format!("group.fwer = {}: the level of the permutation threshold; set group.permutations too", self.fwer),
            ),
            (
                // Below 1/fwer − 1 permutations no p value can reach the level.
                self.permutations == 0 || (1.0 / (self.permutations as f64 + 1.0)) <= self.fwer,
                format!(
                    "group.permutations = {}: too few for a family-wise level of {} (at least {})",
                    self.permutations,
                    self.fwer,
                    (1.0 / self.fwer).ceil() as usize - 1
                ),
            ),
        ])
    }
}

impl MapSection {
    pub fn check(&self) -> Result<()> {
        first_broken([
            (
                self.atlas_threshold.is_finite(),
                format!("map.atlas_threshold = {}: a number", self.atlas_threshold),
            ),
            (
                self.sphere_radius.is_none_or(positive),
                format!("map.sphere_radius = {}: a positive radius in mm", shown(self.sphere_radius)),
            ),
            (
                self.assign_threshold.is_finite() && self.assign_threshold >= 0.0,
                format!("map.assign_threshold = {}: a score ≥ 0", self.assign_threshold),
            ),
            (!self.atlas.trim().is_empty(), "map.atlas: a built-in atlas name or a file".into()),
            (
                self.surrogates == 0 || (MIN_SURROGATES..=MAX_SURROGATES).contains(&self.surrogates),
                format!(
                    "map.surrogates = {}: 0 (none) or {MIN_SURROGATES} to {MAX_SURROGATES} (fewer cannot give a p below 0.05)",
                    self.surrogates
                ),
            ),
            (
                self.tie_r > 0.0 && self.tie_r <= 1.0,
                format!("map.tie_r = {}: a correlation in (0, 1]", self.tie_r),
            ),
        ])
    }
}

impl ModelSection {
    /// The model stage's options for the checkpoint at `model`.
    pub fn tap_options(&self, model: PathBuf) -> Result<crate::stages::responses::TapOptions> {
        use crate::stages::responses::{parse_layers, TapOptions};
        Ok(TapOptions {
            model,
            taps: self
                .taps
                .iter()
                .map(|t| t.parse().map_err(|e| err!("model.taps: {e}")))
                .collect::<Result<_>>()?,
            layers: parse_layers(&self.layers)?,
            context: self.context,
            batch: TapOptions::BATCH,
            pooling: self.pooling.into(),
            dtype: Default::default(),
        })
    }
}

impl BasisSection {
    /// The basis stage's options.
    pub fn options(&self) -> crate::stages::basis::BasisOptions {
        crate::stages::basis::BasisOptions {
            method: self.method.into(),
            odl: crate::kernels::dictionary::OdlOptions {
                atoms: self.atoms,
                lambda: self.lambda,
                positive_codes: self.positive,
                batch: self.batch,
                max_epochs: self.epochs,
                seed: self.seed,
                lasso: self.lasso.into(),
                ..Default::default()
            },
        }
    }
}

impl EncodingSection {
    /// The ridge penalties: the recipe's, or 10 values log-spaced from 1e-2 to 1e5.
    pub fn alpha_grid(&self) -> Vec<f64> {
        if self.alphas.is_empty() {
            crate::kernels::cv::alpha_grid(-2.0, 5.0, 10)
        } else {
            self.alphas.clone()
        }
    }
}

impl GroupSection {
    /// The group stage's options.
    pub fn options(&self) -> crate::stages::group::GroupOptions {
        use crate::kernels::group::Threshold;
        let threshold = match (self.permutations, self.z_cut) {
            (0, None) => Threshold::Fdr(self.fdr),
            (0, Some(z)) => Threshold::ZCut(z),
            _ => Threshold::MaxT(self.fwer),
        };
        crate::stages::group::GroupOptions {
            estimator: self.estimator.into(),
            threshold,
            split_threshold: match threshold {
                Threshold::MaxT(_) => Threshold::Fdr(self.fdr),
                t => t,
            },
            permutation_seed: self.permutation_seed,
            min_cluster: self.min_cluster,
        }
    }
}

impl GroupSection {
    /// The sign-flip permutations of the group operator, when asked for.
    pub fn permutations(&self) -> Option<crate::operators::Permutations> {
        (self.permutations > 0).then_some(crate::operators::Permutations {
            n: self.permutations,
            seed: self.permutation_seed,
        })
    }

    /// What the group operator's block tests compute: the permutations, and how far the
    /// halves' p and z need be exact for their threshold.
    pub fn block_tests(&self) -> crate::operators::BlockTests {
        crate::operators::BlockTests {
            perm: self.permutations(),
            halves_pass: self.options().split_threshold.passing_p(),
        }
    }
}

impl MapSection {
    /// The mapping stage's options.
    pub fn options(&self) -> crate::stages::mapping::MapOptions {
        crate::stages::mapping::MapOptions {
            atlas: self.atlas.clone(),
            atlas_threshold: self.atlas_threshold,
            sphere_radius_mm: self.sphere_radius,
            score: self.score,
            assign_threshold: self.assign_threshold,
            surrogates: self.surrogates,
            surrogate_seed: self.surrogate_seed,
            ties: self.ties,
            tie_r: self.tie_r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_recipes_load_and_round_trip() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows");
        for name in ["paper.toml", "demo.toml", "fmriprep.toml"] {
            let r = Recipe::load(&dir.join(name)).unwrap();
            let again: Recipe = toml::from_str(&r.canonical()).unwrap();
            assert_eq!(again, r, "{name}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<Recipe>("[basis]\natom = 3\n").is_err());
        let e = toml::from_str::<Recipe>("[basis]\nmethod = \"svd\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown variant `svd`"), "{e}");
    }

    /// Every value that a stage would reject later is rejected when the recipe is loaded,
    /// naming the setting, before any store exists.
    #[test]
    fn values_the_library_rejects_are_rejected_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[basis]\nlambda = 0.0\n", "basis.lambda"),
            ("[map]\ntie_r = 0.0\n", "map.tie_r"),
            ("[map]\ntie_r = nan\n", "map.tie_r"),
            ("[map]\ntie_r = 1.5\n", "map.tie_r"),
            ("[basis]\nlambda = nan\n", "basis.lambda"),
            ("[basis]\nlambda = -1.0\n", "basis.lambda"),
            ("[basis]\natoms = 0\n", "basis.atoms"),
            ("[basis]\nepochs = 0\n", "basis.epochs"),
            ("[basis]\nbatch = 0\n", "basis.batch"),
            ("[model]\ncontext = 0\n", "model.context"),
            ("[model]\nlayers = \"1-x\"\n", "model.layers"),
            ("[model]\ntaps = [\"ffn.middle\"]\n", "model.taps"),
            ("[model]\nhrf = \"fir\"\nfir_delays = []\n", "model.fir_delays"),
            ("[encoding]\nalphas = [1.0, -2.0]\n", "encoding.alphas"),
            ("[encoding]\nhigh_pass = -0.01\n", "encoding.high_pass"),
            ("[group]\nfdr = 2.0\n", "group.fdr"),
            ("[group]\nfdr = nan\n", "group.fdr"),
            ("[group]\nfdr = 0.0\n", "group.fdr"),
            ("[group]\nfdr = 1.0\n", "group.fdr"),
            ("[group]\nz_cut = nan\n", "group.z_cut"),
            ("[basis]\nmethod = \"pca\"\nlambda = nan\n", "basis.lambda"),
            ("[group]\nz_cut = -1.0\n", "group.z_cut"),
            ("[group]\npermutations = 10\n", "group.permutations"),
            ("[group]\npermutations = 100\nz_cut = 3.0\n", "group.permutations"),
            ("[group]\npermutations = 100\nfwer = 1.5\n", "group.fwer"),
            ("[group]\nfwer = 0.1\n", "group.fwer"),
            ("[map]\nsurrogates = 5\n", "map.surrogates"),
            ("[group]\nestimator = \"ridge\"\n[encoding]\ncv = false\n", "group.estimator"),
            ("[map]\nassign_threshold = -1.0\n", "map.assign_threshold"),
            ("[map]\nassign_threshold = nan\n", "map.assign_threshold"),
            ("[map]\nsphere_radius = 0.0\n", "map.sphere_radius"),
            ("[map]\natlas = \"\"\n", "map.atlas"),
        ];
        for (i, (text, setting)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("r{i}.toml"));
            std::fs::write(&path, text).unwrap();
            let e = Recipe::load(&path).unwrap_err().to_string();
            // One line naming the file and the setting.
            assert!(e.contains(setting), "{text:?}: {e}");
            assert!(e.starts_with(&path.display().to_string()), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        // The shipped recipes and the defaults pass.
        Recipe::default().check().unwrap();
    }

    /// The canonical text of a recipe without FIR settings is what format-2 stores hold,
    /// so their fingerprints still match.
    #[test]
    fn canonical_text_keeps_the_stored_spelling() {
        let text = Recipe::default().canonical();
        assert!(text.contains("method = \"odl\""), "{text}");
        assert!(text.contains("score = \"iou\""), "{text}");
        assert!(text.contains("pooling = \"mean\""), "{text}");
        assert!(!text.contains("fir_delays"), "{text}");
    }
}

