//! Data compiled into the binary so that `simulate` and `demo` run from any directory:
//! the Le Petit Prince word alignments and the Yeo 2011 7-network atlas (attribution in
//! `tests/data/*/ATTRIBUTION.md`).

/// Number of LPP sections (section k is fMRI run k).
pub const LPP_RUNS: usize = 9;

/// The bytes of LPP section `k` (1-based).
pub fn lpp_section(k: usize) -> Option<&'static [u8]> {
    const BYTES: [&[u8]; 9] = [
        include_bytes!("../tests/data/lpp-en/lppEN_section1.TextGrid"),
        include_bytes!("../tests/data/lpp-en/lppEN_section2.TextGrid"),
        include_bytes!("../tests/data/lpp-en/lppEN_section3.TextGrid"),
        include_bytes!("../tests/data/lpp-en/lppEN_section4.TextGrid"),
        include_bytes!("../tests/data/lpp-en/lppEN_section5.TextGrid"),
        include_bytes!("../tests/data/lpp-en/lppEN_section6.TextGrid"),
        include_bytes!("../tests/data/lpp-en/lppEN_section7.TextGrid"),
        include_bytes!("../tests/data/lpp-en/lppEN_section8.TextGrid"),
        include_bytes!("../tests/data/lpp-en/lppEN_section9.TextGrid"),
    ];
    k.checked_sub(1).and_then(|i| BYTES.get(i).copied())
}

/// The Yeo 2011 7-network atlas at 4 mm and 2 mm (MNI152NLin6).
pub const YEO7_4MM: &[u8] =
    include_bytes!("../tests/data/yeo2011/Yeo-7_space-MNI152NLin6_res-4x4x4.nii.gz");
pub const YEO7_2MM: &[u8] =
    include_bytes!("../tests/data/yeo2011/Yeo-7_space-MNI152NLin6_res-2x2x2.nii.gz");
/// Network names, `label,name` per line (label 0 = "empty").
pub const YEO7_NAMES: &str = include_str!("../tests/data/yeo2011/Yeo-7.csv");

/// (label, name) of the Yeo-7 networks.
pub fn yeo7_names() -> Vec<(u16, String)> {
    YEO7_NAMES
        .lines()
        .filter_map(|l| l.split_once(','))
        .filter_map(|(k, v)| Some((k.trim().parse().ok()?, v.trim().to_string())))
        .filter(|(k, _)| *k > 0)
        .collect()
}
