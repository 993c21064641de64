//! Float32 NIfTI-1 maps written volume by volume: the header, then each 3D volume in
//! Fortran order (x fastest) straight into the gzip stream. A map of m volumes needs one
//! volume of memory, not the whole grid × m (231 MB for 64 atoms at 2 mm), and the data go
//! out in file order, so no strided transpose of a 4D array is made.
//!
//! The bytes are those the `nifti` crate writes for the same header and data (tested
//! below; decompressed, for gzip): the 348-byte header in little-endian, a 4-byte empty
//! extender, the data at offset 352, gzip by [`crate::io::gzip::GzWriter`].
//!
//! How maps are compressed was chosen by measurement: a subject's 64-atom β map at 2 mm
//! (231 MB raw, one core, the 2-core development machine; flate2's backends and zlib-rs's
//! run-length strategy by `scripts/studies/gzip_level.sh`, two runs each; our writer and
//! nibabel by `cargo bench --bench map_write`, medians of 3, a map of the same mask):
//!
//! | writer | deflate s | MB | inflate s |
//! |---|---|---|---|
//! | miniz_oxide 1 (the first writer) | 0.49 / 0.69 | 21.7 | 0.86 / 0.42 |
//! | miniz_oxide 2 | 1.19 / 1.77 | 20.3 | |
//! | zlib-rs 1 | 0.26 / 0.27 | 23.3 | |
//! | zlib-rs 2 | 0.40 / 0.41 | 20.0 | 0.24 / 0.36 |
//! | zlib-rs 3 | 0.50 / 0.50 | 19.9 | |
//! | zlib-rs run-length (`Z_RLE`, the previous writer) | 0.29 / 0.29 | 19.3 | 0.27 / 0.28 |
//! | nibabel `to_filename` (level 1; unmask included) | 1.24 / 1.50 | 21.2 | |
//! | [`crate::io::gzip`], a token per literal (unmask and byte copy included) | 0.24 | 18.9 (19.3 for the study's map) | see below |
//! | **[`crate::io::gzip`]**, literal runs, no byte copy (2026-12-02, another machine) | 0.17 | 18.9 | |
//!
//! Reading a subject's β map of a `run` store back, written by the previous writer and by
//! this one (the same decompressed bytes): `gzip -dc` 1.11 s against 1.10 s, Python's
//! `gzip` (what nibabel uses) 0.89 s against 0.85 s.
//!
//! [`crate::io::gzip`] looks only for the matches maps have (zero runs, repeated floats)
//! and codes the rest with each block's own Huffman codes: faster than zlib-rs's
//! run-length strategy with the unmasking and copying on top, at the same size (a count
//! map: 3.4 MB against 4.3 MB, since it also takes repeated floats).

use std::io::Write;
use std::path::Path;

use ndarray::{Array4, ArrayView2};
use nifti::NiftiHeader;

use super::{Grid, Mask};

use crate::error::{Error, Result};

/// NIFTI_TYPE_FLOAT32.
const FLOAT32: i16 = 16;
/// Header (348) + extender (4).
const VOX_OFFSET: f32 = 352.0;

/// Writes an m-volume float32 map on `grid` (a 3D image when m = 1, else 4D with `tr`
/// seconds in pixdim[4]); `fill(a, volume)` writes volume `a` into a buffer of the grid's
/// voxels in Fortran order, zero where no volume was written: each volume writes (at
/// least) the voxels the one before it wrote, so the zeros around a brain are set once,
/// not per volume. Gzip when the path ends in `.gz`. Atomic.
pub fn write_volumes(path: &Path, grid: &Grid, volumes: usize, tr: Option<f64>, mut fill: impl FnMut(usize, &mut [f32])) -> Result<()> {
    let header = header_bytes(grid, volumes, tr).map_err(|e| Error::format(path, e))?;
    let n = grid.n_voxels();
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut volume = vec![0f32; n];
    super::super::atomic::write_file_atomically(path, |out| {
        let mut body = |out: &mut dyn Write| -> std::io::Result<()> {
            out.write_all(&header)?;
            for a in 0..volumes {
                fill(a, &mut volume);
                out.write_all(&little_endian(&volume))?;
            }
            Ok(())
        };
        if gz {
            // finish(), not flush(): a flush would add a sync block the crate's files lack.
            let mut gz = crate::io::gzip::GzWriter::new(out);
            body(&mut gz).and_then(|()| gz.finish().map(drop))
        } else {
            body(out)
        }
    })
}

/// The volume's bytes as the file stores them (little-endian): the buffer itself where
/// the machine is little-endian.
#[cfg(target_endian = "little")]
fn little_endian(volume: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    std::borrow::Cow::Borrowed(bytemuck::cast_slice(volume))
}

#[cfg(not(target_endian = "little"))]
fn little_endian(volume: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    std::borrow::Cow::Owned(volume.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// Writes the maps `values` (m × len) of the mask's voxels `voxels` (column n is masked
/// voxel `voxels[n]`): masked voxels not in `voxels` are NaN (excluded), voxels outside
/// the mask 0.
pub fn write_masked(path: &Path, mask: &Mask, voxels: &[usize], values: ArrayView2<f64>, tr: Option<f64>) -> Result<()> {
    let linear: Vec<usize> = mask.linear().collect();
    if values.ncols() != voxels.len() || voxels.iter().any(|&v| v >= linear.len()) {
        return Err(Error::Invalid(format!(
            "{}: {} values a row for {} voxels (of a mask of {}): a map needs one value per listed mask voxel",
            path.display(),
            values.ncols(),
            voxels.len(),
            linear.len()
        )));
    }
    write_volumes(path, &mask.grid, values.nrows(), tr, |a, volume| {
        for &i in &linear {
            volume[i] = f32::NAN;
        }
        for (&v, &value) in voxels.iter().zip(values.row(a)) {
            volume[linear[v]] = value as f32;
        }
    })
}

/// Writes a 4D series (BOLD) of the mask's voxels (voxels × volumes), zero outside the
/// mask, with `tr` seconds in pixdim[4].
pub fn write_series(path: &Path, mask: &Mask, series: ArrayView2<f32>, tr: f64) -> Result<()> {
    let linear: Vec<usize> = mask.linear().collect();
    if series.nrows() != linear.len() {
        return Err(Error::Invalid(format!("{}: a series of {} voxels for a mask of {}", path.display(), series.nrows(), linear.len())));
    }
    write_volumes(path, &mask.grid, series.ncols(), Some(tr), |t, volume| {
        for (&i, &value) in linear.iter().zip(series.column(t)) {
            volume[i] = value;
        }
    })
}

/// Writes a float32 map on `grid` — a 3D volume when `data` has one volume, else 4D with
/// `tr` seconds in pixdim[4] (units mm and s). The affine goes in the sform (with the
/// source's sform code, or its qform code when it had only a qform) and the source's qform
/// fields are copied, so nibabel and FSL-style readers agree. Written atomically.
pub fn write_map(path: &Path, grid: &Grid, data: &Array4<f32>, tr: Option<f64>) -> Result<()> {
    let [nx, ny, nz] = grid.shape;
    let (dx, dy, dz, nt) = data.dim();
    if [dx, dy, dz] != [nx, ny, nz] {
        return Err(Error::Invalid(format!(
            "{}: map shape {:?} does not match the grid {:?}",
            path.display(),
            [dx, dy, dz],
            grid.shape
        )));
    }
    write_volumes(path, grid, nt, tr, |a, volume| {
        for ((x, y, z), &v) in data.index_axis(ndarray::Axis(3), a).indexed_iter() {
            volume[x + nx * (y + ny * z)] = v;
        }
    })
}

/// The header and empty extender of an m-volume float32 map on `grid`.
fn header_bytes(grid: &Grid, volumes: usize, tr: Option<f64>) -> std::result::Result<Vec<u8>, String> {
    let [nx, ny, nz] = grid.shape;
    // dim[] is a signed 16-bit field.
    let dim16 = |d: usize| match d {
        0..=32_767 => Ok(d as u16),
        _ => Err(format!("a map dimension of {d} is beyond NIfTI-1's 32,767")),
    };
    let mut dim = [1u16; 8];
    dim[0] = if volumes == 1 { 3 } else { 4 };
    dim[1] = dim16(nx)?;
    dim[2] = dim16(ny)?;
    dim[3] = dim16(nz)?;
    if volumes != 1 {
        dim[4] = dim16(volumes)?;
    }
    let mut h = map_header(grid, tr);
    h.dim = dim;
    h.sizeof_hdr = 348;
    h.datatype = FLOAT32;
    h.bitpix = 32;
    h.vox_offset = VOX_OFFSET;
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    h.magic = *b"n+1\0";
    Ok(serialise(&h))
}

/// The map header's spatial fields (units mm and s, the grid's affine and qform).
fn map_header(grid: &Grid, tr: Option<f64>) -> NiftiHeader {
    let sp = &grid.spatial;
    let a = grid.affine.0.map(|r| r.map(|v| v as f32));
    let mut h = NiftiHeader {
        pixdim: [
            sp.pixdim_xyz[0],
            sp.pixdim_xyz[1],
            sp.pixdim_xyz[2],
            sp.pixdim_xyz[3],
            tr.unwrap_or(0.0) as f32,
            0.0,
            0.0,
            0.0,
        ],
        xyzt_units: 2 | 8, // NIFTI_UNITS_MM | NIFTI_UNITS_SEC
        sform_code: if sp.sform_code > 0 {
            sp.sform_code
        } else {
            sp.qform_code.max(2)
        },
        qform_code: sp.qform_code,
        srow_x: a[0],
        srow_y: a[1],
        srow_z: a[2],
        quatern_b: sp.quatern[0],
        quatern_c: sp.quatern[1],
        quatern_d: sp.quatern[2],
        quatern_x: sp.quatern[3],
        quatern_y: sp.quatern[4],
        quatern_z: sp.quatern[5],
        ..NiftiHeader::default()
    };
    if h.pixdim[0] != -1.0 {
        h.pixdim[0] = 1.0;
    }
    h.descrip = b"cortexflow".to_vec();
    h
}

/// The NIfTI-1 header in little-endian, field by field in the standard's order, and the
/// 4-byte extender (no extensions).
fn serialise(h: &NiftiHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(VOX_OFFSET as usize);
    let f32s = |b: &mut Vec<u8>, v: &[f32]| v.iter().for_each(|x| b.extend(x.to_le_bytes()));
    let padded = |b: &mut Vec<u8>, v: &[u8], len: usize| b.extend(v.iter().copied().chain(std::iter::repeat(0)).take(len));
    b.extend(h.sizeof_hdr.to_le_bytes());
    b.extend(h.data_type);
    b.extend(h.db_name);
    b.extend(h.extents.to_le_bytes());
    b.extend(h.session_error.to_le_bytes());
    b.extend([h.regular, h.dim_info]);
    h.dim.iter().for_each(|d| b.extend(d.to_le_bytes()));
    f32s(&mut b, &[h.intent_p1, h.intent_p2, h.intent_p3]);
    for v in [h.intent_code, h.datatype, h.bitpix, h.slice_start] {
        b.extend(v.to_le_bytes());
    }
    f32s(&mut b, &h.pixdim);
    f32s(&mut b, &[h.vox_offset, h.scl_slope, h.scl_inter]);
    b.extend(h.slice_end.to_le_bytes());
    b.extend([h.slice_code, h.xyzt_units]);
    f32s(&mut b, &[h.cal_max, h.cal_min, h.slice_duration, h.toffset]);
    b.extend(h.glmax.to_le_bytes());
    b.extend(h.glmin.to_le_bytes());
    padded(&mut b, &h.descrip, 80);
    b.extend(h.aux_file);
    b.extend(h.qform_code.to_le_bytes());
    b.extend(h.sform_code.to_le_bytes());
    f32s(&mut b, &[h.quatern_b, h.quatern_c, h.quatern_d, h.quatern_x, h.quatern_y, h.quatern_z]);
    f32s(&mut b, &h.srow_x);
    f32s(&mut b, &h.srow_y);
    f32s(&mut b, &h.srow_z);
    b.extend(h.intent_name);
    b.extend(h.magic);
    debug_assert_eq!(b.len(), 348);
    b.extend([0u8; 4]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;
    use nifti::writer::WriterOptions;

    fn grid() -> Grid {
        let mut g = Grid::with_affine([5, 4, 3], crate::io::affine::Affine([[2.0, 0.0, 0.0, -4.0], [0.0, 2.0, 0.0, -3.0], [0.0, 0.0, 2.0, -2.0]]));
        g.spatial.qform_code = 1;
        g.spatial.quatern = [0.0, 0.0, 1.0, -4.0, -3.0, -2.0];
        g
    }

    /// The bytes of the `nifti` crate's writer for the same header and data: the
    /// reference these streamed maps must equal.
    fn crate_bytes(grid: &Grid, data: &Array4<f32>, tr: Option<f64>, name: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let header = map_header(grid, tr);
        let writer = WriterOptions::new(&path).reference_header(&header);
        if data.dim().3 == 1 {
            writer.write_nifti(&data.index_axis(ndarray::Axis(3), 0)).unwrap();
        } else {
            writer.write_nifti(data).unwrap();
        }
        std::fs::read(path).unwrap()
    }

    #[test]
    fn streamed_maps_are_the_nifti_crates_bytes_3d_4d_plain_and_gzip_decompressed() {
        let g = grid();
        for volumes in [1, 7] {
            let data = Array4::from_shape_fn((5, 4, 3, volumes), |(x, y, z, t)| (x as f32 - 2.5) * 0.5 + y as f32 * 10.0 + z as f32 * 100.0 + t as f32 * 1e3);
            for name in ["m.nii", "m.nii.gz"] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join(name);
                write_map(&path, &g, &data, Some(2.0)).unwrap();
                // gzip: the same decompressed bytes (the deflate stream depends on how the
                // input is fed to the compressor, which is not the format).
                let plain = |bytes: Vec<u8>| match name.ends_with(".gz") {
                    true => {
                        let mut out = Vec::new();
                        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut out).unwrap();
                        out
                    }
                    false => bytes,
                };
                assert_eq!(plain(std::fs::read(&path).unwrap()), plain(crate_bytes(&g, &data, Some(2.0), name)), "{volumes} volumes, {name}");
            }
        }
    }

    #[test]
    fn masked_maps_put_nan_on_unfitted_mask_voxels_and_zero_outside() {
        let g = grid();
        let keep = |x: usize, y: usize, z: usize| (x + y + z).is_multiple_of(2);
        let vol = ndarray::Array3::from_shape_fn(g.shape, |(x, y, z)| keep(x, y, z) as u8 as f32);
        let mask = Mask::from_volume(&g, vol.view(), |v| v > 0.0);
        let voxels: Vec<usize> = (0..mask.len()).filter(|v| v % 3 != 0).collect();
        let values = ndarray::Array2::from_shape_fn((2, voxels.len()), |(a, n)| (a * 100 + n) as f64 + 0.25);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.nii.gz");
        write_masked(&path, &mask, &voxels, values.view(), None).unwrap();
        let image = super::super::read_image(&path).unwrap();
        let ijk: Vec<[usize; 3]> = mask.ijk().collect();
        for (v, &[x, y, z]) in ijk.iter().enumerate() {
            for a in 0..2 {
                let got = image.data[[x, y, z, a]];
                match voxels.iter().position(|&u| u == v) {
                    Some(n) => assert_eq!(got, values[[a, n]] as f32),
                    None => assert!(got.is_nan(), "masked voxel {v} not fitted must be NaN"),
                }
            }
        }
        let outside = image.data.indexed_iter().filter(|((x, y, z, _), _)| !keep(*x, *y, *z));
        assert!(outside.clone().count() > 0 && outside.into_iter().all(|(_, &v)| v == 0.0));
    }

    #[test]
    fn a_dimension_beyond_nifti_1_is_refused_in_words() {
        let g = Grid::with_affine([40_000, 1, 1], crate::io::affine::Affine::base([40_000, 1, 1], [1.0; 3]));
        let dir = tempfile::tempdir().unwrap();
        let e = write_volumes(&dir.path().join("m.nii"), &g, 1, None, |_, _| {}).unwrap_err().to_string();
        assert!(e.contains("m.nii") && e.contains("32,767"), "{e}");
    }
}
