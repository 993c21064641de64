//! `cortexflow map`: each atom's group map matched to functional brain networks, AN
//! sub-groups tied to them, and the organisation metrics.

use std::path::PathBuf;

use cortexflow::stages::mapping::{self, Score};
use cortexflow::stages::ties::TieRule;
use cortexflow::stages::profiles::SubjectMap;
use cortexflow::store::recipe::MapSection;

fn defaults() -> MapSection {
    MapSection::default()
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory of `cortexflow group`.
    #[arg(long)]
    pub group: PathBuf,
    /// Network atlas: yeo7, yeo17, seitzman2018, dosenbach2010, or a file (3-D label or
    /// 4-D probability NIfTI, names from a `label,name` CSV of the same stem; or a table
    /// of ROI centres with x, y, z and network columns).
    #[arg(long, default_value_t = defaults().atlas)]
    pub atlas: String,
    /// 4-D atlases: a voxel belongs to a network when its value is at least this.
    #[arg(long, default_value_t = defaults().atlas_threshold)]
    pub atlas_threshold: f64,
    /// Coordinate atlases without a radius column: sphere radius in mm [default: 5].
    #[arg(long)]
    pub sphere_radius: Option<f64>,
    /// The measure that ranks networks and decides assignment.
    #[arg(long, value_enum, default_value_t = defaults().score)]
    pub score: Score,
    /// An atom is assigned its best network when the score is at least this.
    #[arg(long, default_value_t = defaults().assign_threshold)]
    pub assign_threshold: f64,
    /// The codes table of the basis (`cortexflow basis` OUT/codes.parquet).
    #[arg(long)]
    pub codes: PathBuf,
    /// The neurons table of the ANs (from `responses` or `simulate`) [default: the coded
    /// ANs only, layer from the AN id].
    #[arg(long)]
    pub neurons: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The subjects' β maps behind the group maps (the estimator's, one 4-D file per
    /// subject), for the bootstrap stability of the AN ties; without them none is measured.
    #[arg(long, num_args = 1..)]
    pub subject_maps: Vec<PathBuf>,
    /// Variogram-matched surrogate maps per atom (Burt et al. 2020) for a spatial-null p
    /// value of every atom × network score, FDR-corrected over them (0: none).
    #[arg(long, default_value_t = defaults().surrogates)]
    pub surrogates: usize,
    /// Seed of the surrogates.
    #[arg(long, default_value_t = defaults().surrogate_seed)]
    pub surrogate_seed: u64,
    /// How an AN is tied to a network: the network whose fitted course its response
    /// follows best in both halves of the stories (course), or its dominant atom's
    /// network (dominant).
    #[arg(long, value_enum, default_value_t = defaults().ties)]
    pub ties: TieRule,
    /// The |r| with a network's fitted course an AN needs in both halves under --ties course.
    #[arg(long, default_value_t = defaults().tie_r)]
    pub tie_r: f64,
}

impl Args {
    /// The settings, checked as a recipe's are.
    pub fn section(&self) -> anyhow::Result<MapSection> {
        let section = MapSection {
            atlas: self.atlas.clone(),
            atlas_threshold: self.atlas_threshold,
            sphere_radius: self.sphere_radius,
            score: self.score,
            assign_threshold: self.assign_threshold,
            surrogates: self.surrogates,
            surrogate_seed: self.surrogate_seed,
            ties: self.ties,
            tie_r: self.tie_r,
        };
        section.check()?;
        Ok(section)
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let opt = a.section()?.options();
    // A standalone map has no store to keep the subjects' profiles in or to check the
    // maps against: each map is read as it is.
    let maps: Vec<SubjectMap> = a.subject_maps.iter().map(|p| SubjectMap { path: p.clone(), cache: None }).collect();
    let s = mapping::run(mapping::GroupMaps::read(&a.group)?, &a.codes, a.neurons.as_deref(), (&maps, &|_| Ok(())), &opt, &a.out)?;
    say!("{}", s.assignment);
    s.lines.iter().for_each(|l| say!("{l}"));
    s.files.iter().for_each(|f| say!("wrote {}", f.display()));
    Ok(())
}
