//! Voxel-to-world affines (the NIfTI sform/qform rules as nibabel applies them) and the
//! grid they define.

use nifti::NiftiHeader;

/// A 3×4 affine: world = M·[i, j, k, 1]ᵀ (millimetres, RAS+ for MNI data).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [[f64; 4]; 3]);

impl Affine {
    /// The 3×3 linear part (rows).
    pub fn linear(&self) -> [[f64; 3]; 3] {
        std::array::from_fn(|r| [self.0[r][0], self.0[r][1], self.0[r][2]])
    }

    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        let m = &self.0;
        std::array::from_fn(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3])
    }

    /// The inverse affine, or `None` when the 3×3 part is singular.
    /// Inverse of the linear part by the adjugate: A⁻¹ = adj(A)/det(A).
    pub fn inverse(&self) -> Option<Affine> {
        let a = &self.0;
        let cof = |r0: usize, r1: usize, c0: usize, c1: usize| {
            a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0]
        };
        let adj = [
            [cof(1, 2, 1, 2), -cof(0, 2, 1, 2), cof(0, 1, 1, 2)],
            [-cof(1, 2, 0, 2), cof(0, 2, 0, 2), -cof(0, 1, 0, 2)],
            [cof(1, 2, 0, 1), -cof(0, 2, 0, 1), cof(0, 1, 0, 1)],
        ];
        let det = a[0][0] * adj[0][0] + a[0][1] * adj[1][0] + a[0][2] * adj[2][0];
        if !det.is_finite() || det.abs() < 1e-12 {
            return None;
        }
        let mut inv = [[0.0; 4]; 3];
        for r in 0..3 {
            for c in 0..3 {
                inv[r][c] = adj[r][c] / det;
            }
            inv[r][3] = -(0..3).map(|c| inv[r][c] * a[c][3]).sum::<f64>();
        }
        Some(Affine(inv))
    }

    /// Largest absolute difference between two affines' entries.
    pub fn max_abs_diff(&self, other: &Affine) -> f64 {
        self.0
            .iter()
            .flatten()
            .zip(other.0.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    /// The sform rows of a header.
    pub fn from_sform(h: &NiftiHeader) -> Affine {
        let row = |r: [f32; 4]| r.map(f64::from);
        Affine([row(h.srow_x), row(h.srow_y), row(h.srow_z)])
    }

    /// The qform affine: rotation from the quaternion (b, c, d; a = √(1−b²−c²−d²)),
    /// zooms pixdim[1..3] with the last one multiplied by qfac = pixdim[0] (−1 or 1),
    /// offsets qoffset_x/y/z — NIfTI-1 method 2, as nibabel's `get_qform`.
    pub fn from_qform(h: &NiftiHeader) -> Affine {
        let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let rot = quat_to_matrix(a, b, c, d);
        let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let zooms = [
            h.pixdim[1] as f64,
            h.pixdim[2] as f64,
            h.pixdim[3] as f64 * qfac,
        ];
        let offs = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
        Affine(std::array::from_fn(|r| {
            [
                rot[r][0] * zooms[0],
                rot[r][1] * zooms[1],
                rot[r][2] * zooms[2],
                offs[r],
            ]
        }))
    }

    /// The affine nibabel falls back to when neither sform nor qform is set: zooms on the
    /// diagonal with x flipped, the volume centre at the origin.
    pub fn base(shape: [usize; 3], zooms: [f64; 3]) -> Affine {
        let z = [-zooms[0], zooms[1], zooms[2]];
        let mut m = [[0.0; 4]; 3];
        for r in 0..3 {
            m[r][r] = z[r];
            m[r][3] = -((shape[r] as f64 - 1.0) / 2.0) * z[r];
        }
        Affine(m)
    }
}

/// Rotation matrix of the unit quaternion (w, x, y, z) (nibabel `quat2mat`).
fn quat_to_matrix(w: f64, x: f64, y: f64, z: f64) -> [[f64; 3]; 3] {
    let n = w * w + x * x + y * y + z * z;
    if n < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / n;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_round_trips() {
        let a = Affine([
            [-2.0, 0.1, 0.0, 90.0],
            [0.0, 2.0, 0.3, -126.0],
            [0.2, 0.0, 2.5, -72.0],
        ]);
        let inv = a.inverse().unwrap();
        for p in [[0.0, 0.0, 0.0], [10.0, -3.0, 7.5], [44.0, 53.0, 44.0]] {
            let back = inv.apply(a.apply(p));
            for k in 0..3 {
                assert!((back[k] - p[k]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn singular_affine_has_no_inverse() {
        let a = Affine([
            [1.0, 0.0, 0.0, 0.0],
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ]);
        assert!(a.inverse().is_none());
    }

    #[test]
    fn identity_quaternion_gives_zooms() {
        let h = NiftiHeader {
            pixdim: [-1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
            quatern_x: 5.0,
            ..Default::default()
        };
        let a = Affine::from_qform(&h);
        assert_eq!(
            a.0,
            [
                [2.0, 0.0, 0.0, 5.0],
                [0.0, 3.0, 0.0, 0.0],
                [0.0, 0.0, -4.0, 0.0]
            ]
        );
    }
}
