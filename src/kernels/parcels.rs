//! Region means of a parcellation, as nilearn's `NiftiLabelsMasker(strategy="mean")`
//! computes them: per scan, the mean of the voxels carrying each label (0 is background),
//! regions in ascending label order, sums in float64.

use ndarray::{Array2, ArrayView2};

/// Which region each column (voxel) of a scans × voxels matrix belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Regions {
    /// The regions' labels, ascending.
    pub labels: Vec<u32>,
    /// Region index of each column.
    member: Vec<usize>,
    counts: Vec<usize>,
}

impl Regions {
    /// Regions of columns labelled `column_labels` (each > 0).
    pub fn new(column_labels: &[u32]) -> Regions {
        let mut labels: Vec<u32> = column_labels.to_vec();
        labels.sort_unstable();
        labels.dedup();
        let member: Vec<usize> = column_labels
            .iter()
            .map(|l| labels.binary_search(l).expect("a label of the columns"))
            .collect();
        let mut counts = vec![0; labels.len()];
        member.iter().for_each(|&r| counts[r] += 1);
        Regions { labels, member, counts }
    }

    /// Scans × regions means of `y` (scans × voxels).
    pub fn means(&self, y: ArrayView2<f32>) -> Array2<f64> {
        assert_eq!(y.ncols(), self.member.len(), "one label per column");
        let mut out = Array2::zeros((y.nrows(), self.labels.len()));
        for (row, mut o) in y.rows().into_iter().zip(out.rows_mut()) {
            for (&v, &r) in row.iter().zip(&self.member) {
                o[r] += f64::from(v);
            }
            o.iter_mut().zip(&self.counts).for_each(|(s, &n)| *s /= n as f64);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn means_by_label_in_label_order() {
        let r = Regions::new(&[7, 2, 7, 2, 2]);
        assert_eq!(r.labels, vec![2, 7]);
        let y = array![[1.0f32, 2.0, 3.0, 4.0, 6.0], [0.0, 1.0, 1.0, 0.0, 3.0]];
        assert_eq!(r.means(y.view()), array![[4.0, 2.0], [4.0 / 3.0, 0.5]]);
    }
}
