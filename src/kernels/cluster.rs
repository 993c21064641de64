//! Connected clusters of supra-threshold voxels on a 3-D grid, face connectivity (the
//! 6 neighbours that share a face; `scipy.ndimage.label`'s default structure), for a
//! minimum-cluster-size rule.

use std::collections::HashMap;

/// The six face neighbours of a voxel; an index below 0 wraps to `usize::MAX`, which no
/// grid holds, so callers need only check the upper bound.
pub fn face_neighbours([i, j, k]: [usize; 3]) -> [[usize; 3]; 6] {
    [
        [i.wrapping_sub(1), j, k],
        [i + 1, j, k],
        [i, j.wrapping_sub(1), k],
        [i, j + 1, k],
        [i, j, k.wrapping_sub(1)],
        [i, j, k + 1],
    ]
}

/// Keeps only the voxels of `keep` whose face-connected cluster has at least `min_size`
/// voxels. `ijk[v]` is voxel v's grid index; `keep[v]` says whether it passed threshold.
pub fn min_cluster_size(ijk: &[[usize; 3]], keep: &[bool], min_size: usize) -> Vec<bool> {
    if min_size <= 1 {
        return keep.to_vec();
    }
    let index: HashMap<[usize; 3], usize> = ijk
        .iter()
        .enumerate()
        .filter(|&(v, _)| keep[v])
        .map(|(v, &p)| (p, v))
        .collect();
    let mut label = vec![usize::MAX; ijk.len()];
    let mut out = vec![false; ijk.len()];
    let mut stack = Vec::new();
    for start in (0..ijk.len()).filter(|&v| keep[v]) {
        if label[start] != usize::MAX {
            continue;
        }
        // Flood fill one cluster, then keep it whole or drop it whole.
        let mut members = vec![start];
        label[start] = start;
        stack.push(start);
        while let Some(v) = stack.pop() {
            for p in face_neighbours(ijk[v]) {
                if let Some(&u) = index.get(&p) {
                    if label[u] == usize::MAX {
                        label[u] = start;
                        members.push(u);
                        stack.push(u);
                    }
                }
            }
        }
        if members.len() >= min_size {
            members.into_iter().for_each(|v| out[v] = true);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2×2×1 block (4 voxels), an L of 3, a diagonal pair (not face-connected: 2 singles).
    #[test]
    fn keeps_whole_clusters_of_the_minimum_size() {
        let ijk = vec![
            [0, 0, 0],
            [1, 0, 0],
            [0, 1, 0],
            [1, 1, 0],
            [5, 5, 5],
            [6, 5, 5],
            [6, 6, 5],
            [9, 9, 9],
            [10, 10, 10],
            [3, 3, 3],
        ];
        let mut keep = vec![true; ijk.len()];
        keep[9] = false;
        let kept = min_cluster_size(&ijk, &keep, 3);
        assert_eq!(
            kept,
            vec![true, true, true, true, true, true, true, false, false, false]
        );
        assert_eq!(min_cluster_size(&ijk, &keep, 1), keep);
        assert_eq!(min_cluster_size(&ijk, &keep, 5), vec![false; ijk.len()]);
    }
}
