//! The peaks of a statistical map's clusters, as nilearn's `get_clusters_table` lists them
//! (volume images): the map thresholded as `threshold_img` does (voxel threshold, then
//! clusters below a size removed), face-connected clusters of the voxels beyond the
//! threshold ordered by their peak, and for each up to four local maxima at least
//! `min_distance` mm apart (the cluster's peak and subpeaks "1a", "1b", "1c"), with the
//! cluster's size in mm³ on the peak's row. Ties between equal values keep their grid
//! order (numpy's sort leaves them unspecified). Checked against nilearn on stored maps
//! (tests/it/clusters.rs; scripts/fixtures/make_cluster_fixtures.py).

use ndarray::{s, Array3};

use crate::error::{bail, Result};
use crate::io::affine::Affine;
use crate::kernels::cluster::face_neighbours;

/// The settings of `get_clusters_table`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterOptions {
    /// Cluster-forming threshold, on the map's scale (negative: clusters below it).
    pub threshold: f64,
    /// Clusters of fewer voxels are removed first (0 or 1: none).
    pub min_voxels: usize,
    /// Negative clusters too, below −threshold (numbered after the positive ones).
    pub two_sided: bool,
    /// Least distance between a cluster's reported peaks, in mm (nilearn's default 8).
    pub min_distance: f64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { threshold: 3.0, min_voxels: 0, two_sided: false, min_distance: 8.0 }
    }
}

/// One row of the table: a cluster's peak (with its size) or one of its subpeaks.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterPeak {
    /// "1", "1a", …, as nilearn numbers them.
    pub id: String,
    pub ijk: [usize; 3],
    /// World coordinates (mm) of `ijk`.
    pub xyz: [f64; 3],
    pub value: f64,
    /// The cluster's size in mm³ (whole mm³, truncated), on its peak's row only.
    pub size_mm3: Option<u64>,
}

/// The cluster table of `map` (indexed [i, j, k]) on a grid placed by `affine`.
pub fn clusters_table(map: &Array3<f64>, affine: &Affine, o: &ClusterOptions) -> Result<Vec<ClusterPeak>> {
    if !o.threshold.is_finite() {
        bail!("cluster threshold {}: expected a finite value", o.threshold);
    }
    if o.two_sided && o.threshold < 0.0 {
        bail!("cluster threshold {}: a two-sided threshold must not be negative", o.threshold);
    }
    if !(o.min_distance.is_finite() && o.min_distance > 0.0) {
        bail!("cluster min_distance {}: expected a positive distance in mm", o.min_distance);
    }
    let (t, below) = (o.threshold, !o.two_sided && o.threshold < 0.0);
    // threshold_img: non-finite values count as 0; voxels within the threshold are zeroed.
    let mut data = map.mapv(|x| if x.is_finite() { x } else { 0.0 });
    data.mapv_inplace(|x| {
        let inside = match (o.two_sided, t >= 0.0) {
            (true, _) => -t < x && x < t,
            (false, true) => x < t,
            (false, false) => x > t,
        };
        if inside { 0.0 } else { x }
    });
    if o.min_voxels > 1 {
        for sign in [1.0, -1.0] {
            let (labels, sizes) = label(&data.mapv(|x| x * sign > 0.0));
            data.zip_mut_with(&labels, |x, &l| {
                if l > 0 && sizes[l - 1] < o.min_voxels {
                    *x = 0.0;
                }
            });
        }
    }
    let zooms: f64 = (0..3).map(|c| (0..3).map(|r| affine.0[r][c].powi(2)).sum::<f64>().sqrt()).product();
    let mut rows = Vec::new();
    for sign in if o.two_sided { vec![1.0, -1.0] } else { vec![1.0] } {
        let offset = rows.len();
        let signed = data.mapv(|x| x * sign);
        let (labels, sizes) = label(&signed.mapv(|x| if below { x < t } else { x > t }));
        // Each cluster's peak over the grid (nilearn takes it over the masked map, zeros
        // outside the cluster included).
        let mut peaks = vec![if below { f64::INFINITY } else { f64::NEG_INFINITY }; sizes.len()];
        for (&l, &x) in labels.iter().zip(&signed) {
            if l > 0 {
                peaks[l - 1] = if below { peaks[l - 1].min(x) } else { peaks[l - 1].max(x) };
            }
        }
        let peaks: Vec<f64> = peaks.iter().map(|&p| if below { p.min(0.0) } else { p.max(0.0) }).collect();
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by(|&a, &b| peaks[b].total_cmp(&peaks[a]));
        let boxes = bounding_boxes(&labels, sizes.len());
        for (rank, &c) in order.iter().enumerate() {
            // The cluster's map (zero outside it) within its bounding box and one voxel
            // more: every window of the 3 × 3 × 3 filters over the cluster lies inside, so
            // the maxima are those of the whole grid, at a cluster's cost, not a grid's.
            let (lo, hi) = boxes[c];
            let lo = lo.map(|v| v.saturating_sub(1));
            let hi = [0, 1, 2].map(|a| (hi[a] + 2).min(data.shape()[a]));
            let window = s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]];
            let mut masked = Array3::zeros((hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]));
            ndarray::Zip::from(&mut masked).and(labels.slice(window)).and(signed.slice(window)).for_each(|m, &l, &x| {
                if l == c + 1 {
                    *m = if below { -x } else { x };
                }
            });
            let size_mm3 = (sizes[c] as f64 * zooms) as u64;
            let id = rank + offset + 1;
            for (n, (ijk, value)) in local_maxima(&masked, lo, affine, o.min_distance).into_iter().take(4).enumerate() {
                rows.push(ClusterPeak {
                    id: match n {
                        0 => id.to_string(),
                        _ => format!("{id}{}", char::from(b'a' + n as u8 - 1)),
                    },
                    ijk,
                    xyz: affine.apply(ijk.map(|v| v as f64)),
                    value: value * sign,
                    size_mm3: (n == 0).then_some(size_mm3),
                });
            }
        }
    }
    Ok(rows)
}

/// Each component's first and last index along each axis (components numbered from 1).
fn bounding_boxes(labels: &Array3<usize>, n: usize) -> Vec<([usize; 3], [usize; 3])> {
    let mut boxes = vec![([usize::MAX; 3], [0; 3]); n];
    for ((i, j, k), &l) in labels.indexed_iter() {
        if l > 0 {
            let (lo, hi) = &mut boxes[l - 1];
            for (a, v) in [i, j, k].into_iter().enumerate() {
                lo[a] = lo[a].min(v);
                hi[a] = hi[a].max(v);
            }
        }
    }
    boxes
}

/// Face-connected components of `on` (scipy's `label` with its default structure),
/// numbered from 1 in [i, j, k] order of their first voxel; and each one's voxels.
fn label(on: &Array3<bool>) -> (Array3<usize>, Vec<usize>) {
    let dim = on.dim();
    let mut labels = Array3::zeros(dim);
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for ((i, j, k), &v) in on.indexed_iter() {
        if !v || labels[[i, j, k]] != 0 {
            continue;
        }
        sizes.push(0);
        let l = sizes.len();
        labels[[i, j, k]] = l;
        stack.push([i, j, k]);
        while let Some(p) = stack.pop() {
            sizes[l - 1] += 1;
            for q in face_neighbours(p) {
                if q[0] < dim.0 && q[1] < dim.1 && q[2] < dim.2 && on[q] && labels[q] == 0 {
                    labels[q] = l;
                    stack.push(q);
                }
            }
        }
    }
    (labels, sizes)
}

/// The 3 × 3 × 3 neighbourhood's extreme of each voxel (scipy's `maximum_filter` /
/// `minimum_filter` of size 3; its default `reflect` edge repeats the edge voxel, which
/// the clipped window already holds).
fn filter3(data: &Array3<f64>, pick: fn(f64, f64) -> f64) -> Array3<f64> {
    let (ni, nj, nk) = data.dim();
    Array3::from_shape_fn(data.dim(), |(i, j, k)| {
        let mut out = data[[i, j, k]];
        for a in i.saturating_sub(1)..(i + 2).min(ni) {
            for b in j.saturating_sub(1)..(j + 2).min(nj) {
                for c in k.saturating_sub(1)..(k + 2).min(nk) {
                    out = pick(out, data[[a, b, c]]);
                }
            }
        }
        out
    })
}

/// nilearn's `_local_max`: the local maxima of one cluster's map (zero outside it), each
/// plateau reported at its value-weighted centre of mass (rounded half to even; the
/// nearest plateau voxel when that falls outside it), sorted by value, then pared so that
/// no peak lies within `min_distance` mm of the last kept one before it. `data` is a box
/// of the grid whose first voxel is `origin`; the peaks are grid indices (a centre is
/// rounded in grid indices: half to even depends on the index's parity).
fn local_maxima(data: &Array3<f64>, origin: [usize; 3], affine: &Affine, min_distance: f64) -> Vec<([usize; 3], f64)> {
    let high = filter3(data, f64::max);
    let nonzero = data.iter().filter(|&&x| x != 0.0);
    let (lo, hi) = nonzero.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    // numpy's isclose(max, min): |a − b| ≤ 1e-8 + 1e-5·|b|.
    let constant = (hi - lo).abs() <= 1e-8 + 1e-5 * lo.abs();
    let low = (!constant).then(|| filter3(data, f64::min));
    let maxima = Array3::from_shape_fn(data.dim(), |p| {
        data[p] != 0.0 && data[p] == high[p] && low.as_ref().is_none_or(|low| high[p] - low[p] > 0.0)
    });
    let (labels, sizes) = label(&maxima);
    let mut weight = vec![0.0; sizes.len()];
    let mut moment = vec![[0.0; 3]; sizes.len()];
    for ((i, j, k), &l) in labels.indexed_iter() {
        if l > 0 {
            let x = data[[i, j, k]];
            weight[l - 1] += x;
            for (m, v) in moment[l - 1].iter_mut().zip([i + origin[0], j + origin[1], k + origin[2]]) {
                *m += x * v as f64;
            }
        }
    }
    let mut peaks: Vec<([usize; 3], f64)> = (0..sizes.len())
        .map(|l| {
            let centre = moment[l].map(|m| (m / weight[l]).round_ties_even());
            // The centre in the box's indices, when it falls in the box.
            let local: Option<[usize; 3]> = (0..3)
                .map(|a| centre[a] - origin[a] as f64)
                .zip(data.shape().iter().copied())
                .map(|(c, n)| (c >= 0.0 && (c as usize) < n).then_some(c as usize))
                .collect::<Option<Vec<usize>>>()
                .map(|v| [v[0], v[1], v[2]]);
            let ijk = match local {
                Some(ijk) if labels[ijk] == l + 1 => ijk,
                _ => nearest_voxel(&labels, l + 1, centre, origin),
            };
            ([0, 1, 2].map(|a| ijk[a] + origin[a]), data[ijk])
        })
        .collect();
    peaks.sort_by(|a, b| b.1.total_cmp(&a.1));
    let xyz: Vec<[f64; 3]> = peaks.iter().map(|(p, _)| affine.apply(p.map(|v| v as f64))).collect();
    // nilearn's loop, kept as it is: a later peak's fate is set by the last kept peak
    // before it that is checked against it.
    let mut keep = vec![true; peaks.len()];
    for i in 0..peaks.len() {
        for j in i + 1..peaks.len() {
            if keep[i] {
                let d = (0..3).map(|a| (xyz[i][a] - xyz[j][a]).powi(2)).sum::<f64>().sqrt();
                keep[j] = d > min_distance;
            }
        }
    }
    peaks.into_iter().zip(keep).filter(|(_, k)| *k).map(|(p, _)| p).collect()
}

/// The voxel of component `l` nearest `point` (grid indices; `labels` is the box from
/// `origin`), in the box's indices: the first in [i, j, k] order among equals.
fn nearest_voxel(labels: &Array3<usize>, l: usize, point: [f64; 3], origin: [usize; 3]) -> [usize; 3] {
    let mut best = ([0; 3], f64::INFINITY);
    for ((i, j, k), &m) in labels.indexed_iter() {
        if m == l {
            let d = [i + origin[0], j + origin[1], k + origin[2]].iter().zip(point).map(|(&v, p)| (v as f64 - p).powi(2)).sum::<f64>();
            if d < best.1 {
                best = ([i, j, k], d);
            }
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Affine {
        Affine([[2.0, 0.0, 0.0, -10.0], [0.0, 2.0, 0.0, -20.0], [0.0, 0.0, 2.0, -30.0]])
    }

    /// Two blobs: a large one with a second maximum 12 mm from its peak, and a small one
    /// with the lower peak; and one voxel below the threshold between them.
    #[test]
    fn clusters_are_ordered_by_peak_and_subpeaks_are_pared() {
        let mut map = Array3::zeros((12, 6, 6));
        for i in 0..8 {
            map[[i, 2, 2]] = 4.0 + (i as f64 - 1.0).abs().min((i as f64 - 7.0).abs()) * -0.5 + 2.0;
        }
        map[[1, 2, 2]] = 9.0;
        map[[7, 2, 2]] = 8.0;
        map[[10, 2, 2]] = 5.0;
        map[[10, 3, 2]] = 4.0;
        map[[9, 2, 2]] = 1.0;
        let rows = clusters_table(&map, &grid(), &ClusterOptions::default()).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["1", "1a", "2"]);
        assert_eq!(rows[0].ijk, [1, 2, 2]);
        assert_eq!(rows[0].xyz, [-8.0, -16.0, -26.0]);
        assert_eq!(rows[0].size_mm3, Some(8 * 8));
        assert_eq!((rows[1].ijk, rows[1].value, rows[1].size_mm3), ([7, 2, 2], 8.0, None));
        assert_eq!((rows[2].ijk, rows[2].size_mm3), ([10, 2, 2], Some(2 * 8)));
        // Two clusters of 8 and 2 voxels: a minimum of 3 removes the second.
        let big = ClusterOptions { min_voxels: 3, ..ClusterOptions::default() };
        assert_eq!(clusters_table(&map, &grid(), &big).unwrap().len(), 2);
        // 14 mm apart: a 16 mm minimum distance keeps only the peak.
        let far = ClusterOptions { min_distance: 16.0, ..ClusterOptions::default() };
        assert_eq!(clusters_table(&map, &grid(), &far).unwrap().len(), 2);
    }

    #[test]
    fn a_flat_cluster_reports_its_centre_or_the_nearest_voxel() {
        // An L of equal values: its centre of mass (1/3, 1/3) rounds to a voxel inside.
        let mut map = Array3::zeros((4, 4, 1));
        for p in [[0, 0, 0], [1, 0, 0], [0, 1, 0]] {
            map[p] = 5.0;
        }
        let rows = clusters_table(&map, &grid(), &ClusterOptions::default()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ijk, [0, 0, 0]);
        // A U whose centre falls in its hole: the nearest voxel of the U instead.
        let mut u = Array3::zeros((3, 3, 1));
        for p in [[0, 0, 0], [0, 1, 0], [0, 2, 0], [1, 0, 0], [2, 0, 0], [2, 1, 0], [2, 2, 0]] {
            u[p] = 5.0;
        }
        let rows = clusters_table(&u, &grid(), &ClusterOptions::default()).unwrap();
        assert_eq!(rows[0].ijk, [0, 1, 0], "centre (1, 6/7) rounds to (1, 1), in the hole; the first voxel 1 away");
    }

    #[test]
    fn bad_settings_are_errors() {
        let map = Array3::zeros((2, 2, 2));
        let two = ClusterOptions { threshold: -1.0, two_sided: true, ..ClusterOptions::default() };
        assert!(clusters_table(&map, &grid(), &two).is_err());
        let near = ClusterOptions { min_distance: 0.0, ..ClusterOptions::default() };
        assert!(clusters_table(&map, &grid(), &near).is_err());
        assert!(clusters_table(&map, &grid(), &ClusterOptions::default()).unwrap().is_empty());
    }
}
