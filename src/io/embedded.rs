//! Data compiled into the binary so that `simulate` and `demo` run from any directory:
//! the Le Petit Prince word alignments and the Yeo 2011 7-network atlas (attribution in
//! `tests/data/*/ATTRIBUTION.md`).

/// Number of LPP sections (section k is fMRI run k).
pub const LPP_RUNS: usize = 9;

/// The bytes of LPP section `k` (1-based).
pub fn lpp_section(k: usize) -> Option<&'static [u8]> {
    const BYTES: [&[u8]; 9] = [
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section1.TextGrid"),
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section2.TextGrid"),
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section3.TextGrid"),
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section4.TextGrid"),
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section5.TextGrid"),
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section6.TextGrid"),
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section7.TextGrid"),
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section8.TextGrid"),
        include_bytes!("../../tests/data/stimuli/lpp-en/lppEN_section9.TextGrid"),
    ];
    k.checked_sub(1).and_then(|i| BYTES.get(i).copied())
}

/// The Yeo 2011 7-network atlas at 4 mm and 2 mm (MNI152NLin6).
pub const YEO7_4MM: &[u8] =
    include_bytes!("../../tests/data/atlases/yeo2011/Yeo-7_space-MNI152NLin6_res-4x4x4.nii.gz");
pub const YEO7_2MM: &[u8] =
    include_bytes!("../../tests/data/atlases/yeo2011/Yeo-7_space-MNI152NLin6_res-2x2x2.nii.gz");
/// The MNI152 T1 template on the same two grids, uint8 (the report's background).
pub const MNI_T1_4MM: &[u8] = include_bytes!("../../tests/data/mni152/MNI152-T1_res-4x4x4.nii.gz");
pub const MNI_T1_2MM: &[u8] = include_bytes!("../../tests/data/mni152/MNI152-T1_res-2x2x2.nii.gz");
/// Network names, `label,name` per line (label 0 = "empty").
/// An embedded NIfTI image, read through a temporary file (the reader takes paths);
/// errors name it as `what`.
pub fn image(bytes: &[u8], what: &str) -> crate::error::Result<super::nifti::Image> {
    let dir = std::env::temp_dir().join(format!("cortexflow-embedded-{}-{:x}", std::process::id(), twox_hash::XxHash64::oneshot(0, bytes)));
    let path = dir.join("image.nii.gz");
    super::atomic::write_file_atomically(&path, |w| w.write_all(bytes))?;
    let image = super::nifti::read_image(&path);
    std::fs::remove_dir_all(&dir).ok();
    crate::error::Context::context(image, what)
}

pub const YEO7_NAMES: &str = include_str!("../../tests/data/atlases/yeo2011/Yeo-7.csv");

/// (label, name) of the Yeo-7 networks.
pub fn yeo7_names() -> Vec<(u16, String)> {
    YEO7_NAMES
        .lines()
        .filter_map(|l| l.split_once(','))
        .filter_map(|(k, v)| Some((k.trim().parse().ok()?, v.trim().to_string())))
        .filter(|(k, _)| *k > 0)
        .collect()
}

/// A built-in atlas of `cortexflow map --atlas NAME`.
pub enum BuiltinAtlas {
    /// A label volume at 4 mm and 2 mm (file name, bytes), and its `label,name` CSV.
    Labels {
        grids: [(&'static str, &'static [u8]); 2],
        names: &'static str,
    },
    /// ROI centres with network labels (file name, text); spheres of the given radius when
    /// the file has none.
    Coordinates {
        file: &'static str,
        text: &'static str,
        default_radius_mm: f64,
    },
}

/// Names accepted by `--atlas` besides a path.
pub const ATLAS_NAMES: [&str; 4] = ["yeo7", "yeo17", "seitzman2018", "dosenbach2010"];

pub fn atlas(name: &str) -> Option<BuiltinAtlas> {
    Some(match name {
        "yeo7" => BuiltinAtlas::Labels {
            grids: [
                ("Yeo-7_space-MNI152NLin6_res-4x4x4.nii.gz", YEO7_4MM),
                ("Yeo-7_space-MNI152NLin6_res-2x2x2.nii.gz", YEO7_2MM),
            ],
            names: YEO7_NAMES,
        },
        "yeo17" => BuiltinAtlas::Labels {
            grids: [
                (
                    "Yeo-17_space-MNI152NLin6_res-4x4x4.nii.gz",
                    include_bytes!(
                        "../../tests/data/atlases/yeo2011/Yeo-17_space-MNI152NLin6_res-4x4x4.nii.gz"
                    ),
                ),
                (
                    "Yeo-17_space-MNI152NLin6_res-2x2x2.nii.gz",
                    include_bytes!(
                        "../../tests/data/atlases/yeo2011/Yeo-17_space-MNI152NLin6_res-2x2x2.nii.gz"
                    ),
                ),
            ],
            names: include_str!("../../tests/data/atlases/yeo2011/Yeo-17.csv"),
        },
        "seitzman2018" => BuiltinAtlas::Coordinates {
            file: "seitzman_2018_ROIs_300inVol_MNI_allInfo.txt",
            text: include_str!(
                "../../tests/data/atlases/coordinates/seitzman_2018_ROIs_300inVol_MNI_allInfo.txt"
            ),
            default_radius_mm: 5.0,
        },
        "dosenbach2010" => BuiltinAtlas::Coordinates {
            file: "dosenbach_2010.csv",
            text: include_str!("../../tests/data/atlases/coordinates/dosenbach_2010.csv"),
            // Dosenbach et al. 2010 used spheres of 10 mm diameter.
            default_radius_mm: 5.0,
        },
        _ => return None,
    })
}
