//! `cortexflow inspect` and `cortexflow discover`: what is in a file or a dataset.

use std::path::Path;

use crate::error::Result;
use crate::io::{bids, nifti, stimulus};

/// One paragraph per file: NIfTI header facts or stimulus word counts.
pub fn inspect(path: &Path, tier: Option<&str>) -> Result<String> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        let img = nifti::read_image(path)?;
        let h = &img.header;
        let (lo, hi) = img
            .data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let nonzero = img.data.iter().filter(|&&v| v != 0.0).count();
        let tr =
            h.tr.map_or("none".to_string(), |t| format!("{} s", t as f32));
        let mut s = format!(
            "{}\n  NIfTI-1 {:?}, grid {:?} × {} volumes, TR {tr}\n  affine {:?}\n  values {lo} to {hi}, {nonzero} non-zero",
            path.display(),
            h.datatype,
            h.grid.shape,
            h.n_vols,
            h.grid.affine.0
        );
        if let Some(note) = &h.tr_note {
            s.push_str(&format!("\n  note: {note}"));
        }
        Ok(s)
    } else {
        let st = stimulus::read_stimulus(path, tier)?;
        let (first, last) = (&st.words[0], &st.words[st.words.len() - 1]);
        Ok(format!(
            "{}\n  {} words from {:.3} s ('{}') to {:.3} s ('{}'), recording ends at {:.3} s",
            path.display(),
            st.words.len(),
            first.onset,
            first.text,
            last.offset,
            last.text,
            st.end
        ))
    }
}

pub fn discover(root: &Path, space: Option<&str>) -> Result<String> {
    Ok(bids::discover(root, space)?.to_string())
}
