//! The report's noise-ceiling section: how far the encoding models are from the best a
//! model of the stories can reach (`cortexflow ceiling`).

use crate::error::Result;
use crate::io::nifti;
use crate::report::figures;
use crate::report::page::Page;
use crate::report::sections::positive_slices;
use crate::stages::ceiling::read_info;
use crate::store::Store;

pub fn ceiling(page: &mut Page, store: &Store) -> Result<()> {
    page.section(
        "ceiling",
        "Noise ceiling",
        "What the subjects who heard the same story share: the mean pairwise inter-subject correlation (ISC) of each voxel's cleaned BOLD. Its square root is the between-subject ceiling: the held-out r a model of what the subjects share can reach in a typical subject (a shared, stimulus-driven part plus noise independent across subjects, the subjects aligned voxel for voxel). A subject with more signal than the others, or misalignment between subjects, can put a model above it. The encoding models' mean held-out r is shown as a fraction of it, over the voxels whose ISC is above the summary's cut.",
    );
    let dir = store.paths().ceiling();
    let Some(info) = read_info(&dir)? else {
        page.note("No noise ceiling: `cortexflow ceiling STORE` computes it (`run` and `demo` do so).".into());
        page.end();
        return Ok(());
    };
    if info.epoch != store.manifest.epoch {
        page.note(format!(
            "The noise ceiling is of an earlier state of the store (epoch {} of {}): run `cortexflow ceiling STORE` again.",
            info.epoch, store.manifest.epoch
        ));
    }
    for f in ["ceiling.nii.gz", "fraction.nii.gz", "ceiling.json"] {
        store.verify_file(&dir.join(f))?;
    }
    let mask = nifti::read_mask(&store.paths().mask())?;
    let read = |name: &str| -> Result<Vec<f64>> { Ok(mask.rows(&nifti::read_image(&dir.join(name))?).row(0).to_vec()) };
    let (ceiling, fraction) = (read("ceiling.nii.gz")?, read("fraction.nii.gz")?);
    let reliable: Vec<f64> = fraction.iter().copied().filter(|f| f.is_finite()).collect();
    page.note(crate::stages::ceiling::headline(&info));
    if info.reliable_voxels == 0 {
        page.note(format!("No voxel has an ISC above {:.3}: nothing to compare the models with.", info.min_isc));
    } else if reliable.is_empty() {
        page.note("No held-out r to compare with the ceiling: cross-validation needs 2 runs per subject (and encoding.cv = true).".into());
    } else {
        let svg = figures::histogram("Held-out r as a fraction of the noise ceiling", "mean cv_r / √ISC", &reliable, 40)?;
        page.svg(&svg, &format!("{} voxels with ISC > {:.3}; 1 is √ISC", reliable.len(), info.min_isc))?;
    }
    if store.regions()?.is_none() {
        positive_slices(page, &mask, &ceiling, "noise ceiling", "noise ceiling √ISC")?;
    }
    page.end();
    Ok(())
}
