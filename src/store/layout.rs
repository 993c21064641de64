//! Where everything lives in a store: every path of the layout is spelled here once.
//!
//! ```text
//! STORE/manifest.json        what is in (stories, runs), epochs, subjects to refit
//! STORE/recipe.toml          the settings (canonical TOML); its fingerprint is in the manifest
//! STORE/mask.nii.gz          the analysis mask
//! STORE/responses/, neurons.parquet, basis/      the ANs and the basis (one version)
//! STORE/runs/sub-S/<story>.stats                 one BOLD run reduced to statistics
//! STORE/subjects/sub-S/{beta,t,z,cv_r,…}.nii.gz  each subject's fit
//! STORE/group/, STORE/map/                       group maps, networks, sub-groups, metrics
//! STORE/ceiling/                                 the noise ceiling (ISC) and cv_r as its fraction
//! ```

use std::path::{Path, PathBuf};

/// The paths of one store directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }
    pub fn recipe(&self) -> PathBuf {
        self.dir.join("recipe.toml")
    }
    pub fn mask(&self) -> PathBuf {
        self.dir.join("mask.nii.gz")
    }
    /// A store of region time series: its regions and their networks, in map order.
    pub fn regions(&self) -> PathBuf {
        self.dir.join(crate::io::regions::REGIONS_FILE)
    }
    /// Its networks as a label atlas on the regions' line (+ `.csv` names), written with
    /// the mapping.
    pub fn region_atlas(&self) -> PathBuf {
        self.map().join("atlas").join("region_networks.nii.gz")
    }
    pub fn neurons(&self) -> PathBuf {
        self.dir.join("neurons.parquet")
    }
    /// One `responses` table per story.
    pub fn responses(&self) -> PathBuf {
        self.dir.join("responses")
    }
    /// A story's responses table.
    pub fn responses_of(&self, story: &str) -> PathBuf {
        self.responses().join(format!("{story}.parquet"))
    }
    /// The basis (as `cortexflow basis` writes it).
    pub fn basis(&self) -> PathBuf {
        self.dir.join("basis")
    }
    /// One atoms table per story.
    pub fn atoms_dir(&self) -> PathBuf {
        self.basis().join("atoms")
    }
    pub fn atoms(&self, story: &str) -> PathBuf {
        self.atoms_dir().join(format!("{story}.parquet"))
    }
    pub fn codes(&self) -> PathBuf {
        self.basis().join("codes.parquet")
    }
    /// A run's statistics: `runs/<run key>.stats`.
    pub fn stats(&self, run_key: &str) -> PathBuf {
        self.dir.join("runs").join(format!("{run_key}.stats"))
    }
    /// A subject's maps (`beta`, `t`, `z`, `cv_r`, …).
    pub fn subject(&self, subject: &str) -> PathBuf {
        self.dir.join("subjects").join(format!("sub-{subject}"))
    }
    pub fn subject_map(&self, subject: &str, map: &str) -> PathBuf {
        self.subject(subject).join(format!("{map}.nii.gz"))
    }
    /// The cache of each subject's network profiles ([`crate::stages::profiles`]): derived
    /// from its map, checked against the map's checksum, so it is not sealed.
    pub fn profile_cache(&self) -> PathBuf {
        self.dir.join("cache").join("profiles")
    }
    pub fn group(&self) -> PathBuf {
        self.dir.join("group")
    }
    pub fn map(&self) -> PathBuf {
        self.dir.join("map")
    }
    /// Where new stories' responses are made before they are ingested.
    pub fn incoming(&self) -> PathBuf {
        self.dir.join(".incoming")
    }
    /// Cleaned runs `run` keeps for its noise ceiling while it runs (hidden: not a store
    /// file; see [`crate::engine::cleaned`]).
    pub fn cleaned(&self) -> PathBuf {
        self.dir.join(".cleaned")
    }
    /// The noise ceiling (`cortexflow ceiling`): ISC, ceiling and cv_r / ceiling.
    pub fn ceiling(&self) -> PathBuf {
        self.dir.join(crate::store::CEILING)
    }
    pub fn report(&self) -> PathBuf {
        self.dir.join("report.html")
    }
}
