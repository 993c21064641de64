//! The group mask of several subjects' brain masks, as nilearn's `intersect_masks`:
//! a voxel is kept when more than `threshold · n` of the n masks hold it (`threshold` in
//! [0, 1]; 1 is read as 1 − 1e-7, so 1 is the intersection and 0 the union), then, when
//! `connected`, only the largest 6-connected component (scipy's `label` with its default
//! structure) is kept; of equally large components, the one met first in C order of
//! (x, y, z), as numpy's `argmax` over scipy's labels picks it.
//!
//! Masks are boolean volumes in NIfTI order (x fastest) on one grid.

/// Voxels of the group mask (NIfTI order). `masks` must be non-empty and of one length.
pub fn intersect(masks: &[Vec<bool>], shape: [usize; 3], threshold: f64, connected: bool) -> Vec<bool> {
    let n = masks.len();
    let cut = threshold.min(1.0 - 1e-7) * n as f64;
    let len = shape.iter().product::<usize>();
    let mut group: Vec<bool> = (0..len)
        .map(|v| masks.iter().filter(|m| m[v]).count() as f64 > cut)
        .collect();
    if connected && group.iter().any(|&g| g) {
        group = largest_component(&group, shape);
    }
    group
}

/// The largest 6-connected component of `volume` (ties: first in C order of (x, y, z)).
pub fn largest_component(volume: &[bool], shape: [usize; 3]) -> Vec<bool> {
    let [nx, ny, nz] = shape;
    let at = |x: usize, y: usize, z: usize| x + nx * (y + ny * z);
    let mut label = vec![0u32; volume.len()];
    // (size, C-order key of the first voxel (x, y, z), label) of the best component so far.
    let mut best: Option<(usize, (usize, usize, usize), u32)> = None;
    let mut stack = Vec::new();
    let mut next = 0u32;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let start = at(x, y, z);
                if !volume[start] || label[start] != 0 {
                    continue;
                }
                next += 1;
                let (mut size, mut first) = (0usize, (x, y, z));
                label[start] = next;
                stack.push((x, y, z));
                while let Some((x, y, z)) = stack.pop() {
                    size += 1;
                    first = first.min((x, y, z));
                    let neighbours = [
                        (x.wrapping_sub(1), y, z),
                        (x + 1, y, z),
                        (x, y.wrapping_sub(1), z),
                        (x, y + 1, z),
                        (x, y, z.wrapping_sub(1)),
                        (x, y, z + 1),
                    ];
                    for (a, b, c) in neighbours {
                        if a < nx && b < ny && c < nz {
                            let v = at(a, b, c);
                            if volume[v] && label[v] == 0 {
                                label[v] = next;
                                stack.push((a, b, c));
                            }
                        }
                    }
                }
                let better = match best {
                    None => true,
                    Some((s, f, _)) => size > s || (size == s && first < f),
                };
                if better {
                    best = Some((size, first, next));
                }
            }
        }
    }
    let keep = best.map_or(0, |b| b.2);
    label.iter().map(|&l| l != 0 && l == keep).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nilearn's docstring example (a 1 × 3 × 3 volume).
    #[test]
    fn union_and_intersection_as_nilearns_example() {
        // mask1 = [[[0,1,1],[0,1,1],[0,1,1]]], mask2 = [[[0,0,0],[0,1,1],[1,0,0]]]; the
        // arrays are indexed [x][y][z] with x of length 1.
        let grid = |rows: [[u8; 3]; 3]| -> Vec<bool> {
            // NIfTI order: x fastest (1), then y, then z.
            let mut v = vec![false; 9];
            for (y, row) in rows.iter().enumerate() {
                for (z, &b) in row.iter().enumerate() {
                    v[y + 3 * z] = b == 1;
                }
            }
            v
        };
        let m1 = grid([[0, 1, 1], [0, 1, 1], [0, 1, 1]]);
        let m2 = grid([[0, 0, 0], [0, 1, 1], [1, 0, 0]]);
        let masks = [m1, m2];
        assert_eq!(intersect(&masks, [1, 3, 3], 0.0, true), grid([[0, 1, 1], [0, 1, 1], [1, 1, 1]]));
        assert_eq!(intersect(&masks, [1, 3, 3], 1.0, true), grid([[0, 0, 0], [0, 1, 1], [0, 0, 0]]));
    }

    #[test]
    fn ties_go_to_the_component_met_first_in_c_order() {
        // Two single voxels on a 3 × 1 × 3 grid: (2, 0, 0) and (0, 0, 2). C order scans x
        // slowest, so (0, 0, 2) comes first although its NIfTI index is larger.
        let mut v = vec![false; 9];
        v[2] = true; // x = 2, z = 0
        v[6] = true; // x = 0, z = 2
        let kept = largest_component(&v, [3, 1, 3]);
        assert!(kept[6] && !kept[2]);
    }
}
