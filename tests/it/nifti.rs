//! NIfTI reading against nibabel, writing read back by nibabel, resampling against
//! nilearn, and bad input.

use std::path::Path;

use cortexflow::io::nifti::{self, Mask};
use ndarray::{Array4, Axis};
use serde_json::Value;

use super::common::{close, fixture_json, fixtures, python_check, test_data};

fn path_of(fact: &Value) -> std::path::PathBuf {
    let p = fact["path"].as_str().unwrap();
    match p.strip_prefix("fixtures/") {
        Some(rest) => fixtures().join(rest),
        None => test_data().join(p),
    }
}

/// Every real NIfTI file in tests/data (and the synthetic scaled / big-endian / qform-only
/// fixtures) reads with nibabel's shape, affine, TR and voxel values.
/// Tolerances: affines 1e-5 mm (float32 header fields, same formulas); voxel values are
/// float32 here and float64 in nibabel, so 1e-6 relative per value and 1e-6 relative
/// for the sums (float64 accumulation of float32-rounded values).
#[test]
fn every_nifti_matches_nibabel() {
    let facts = fixture_json("nifti_nibabel.json");
    let facts = facts.as_array().unwrap();
    assert!(facts.len() >= 20, "fixture lists every shared NIfTI file");
    for fact in facts {
        let path = path_of(fact);
        let img = nifti::read_image(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = path.display();
        let shape: Vec<usize> = fact["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (nx, ny, nz, nt) = img.data.dim();
        assert_eq!(&[nx, ny, nz], &shape[..3], "{name}");
        assert_eq!(nt, shape.get(3).copied().unwrap_or(1), "{name}");
        for (r, row) in fact["affine"].as_array().unwrap().iter().enumerate() {
            for (c, v) in row.as_array().unwrap().iter().enumerate() {
                let ours = img.header.grid.affine.0[r][c];
                assert!(
                    (ours - v.as_f64().unwrap()).abs() < 1e-5,
                    "{name}: affine[{r}][{c}] {ours} vs {v}"
                );
            }
        }
        if let Some(pixdim4) = fact["pixdim4"].as_f64() {
            let unit = fact["time_unit"].as_str().unwrap();
            let mut expected = if unit == "msec" {
                pixdim4 / 1000.0
            } else {
                pixdim4
            };
            if expected > 100.0 {
                expected /= 1000.0; // the documented rule: 2000 "s" is read as 2000 ms
                assert!(
                    img.header.tr_note.is_some(),
                    "{name}: the reinterpretation is reported"
                );
            }
            assert!(
                close(img.header.tr.unwrap(), expected, 1e-9),
                "{name}: TR {:?} vs {expected}",
                img.header.tr
            );
        }
        // Values in file (x-fastest) order.
        let flat: Vec<f64> = img.data.t().iter().map(|&v| v as f64).collect();
        let fp = &fact["fingerprint"];
        let sum: f64 = flat.iter().sum();
        let sum_sq: f64 = flat.iter().map(|v| v * v).sum();
        let weighted: f64 = flat
            .iter()
            .enumerate()
            .map(|(i, v)| v * (i % 9973) as f64)
            .sum();
        for (what, ours, theirs) in [
            ("sum", sum, &fp["sum"]),
            ("sum_sq", sum_sq, &fp["sum_sq"]),
            ("sum_weighted", weighted, &fp["sum_weighted"]),
        ] {
            assert!(
                close(ours, theirs.as_f64().unwrap(), 1e-6),
                "{name}: {what} {ours} vs {theirs}"
            );
        }
        for s in fact["samples"].as_array().unwrap() {
            let (i, v) = (s[0].as_u64().unwrap() as usize, s[1].as_f64().unwrap());
            assert!(
                close(flat[i], v, 1e-6),
                "{name}: voxel {i}: {} vs {v}",
                flat[i]
            );
        }
    }
}

/// The nibabel quirk file: TR stored as 2000 with units = seconds is read as 2 s, with a note.
#[test]
fn implausible_tr_follows_the_documented_rule() {
    let h = nifti::read_header(&test_data().join("fmri/nibabel/example4d.nii.gz")).unwrap();
    assert_eq!(h.tr, Some(2.0));
    assert!(h.tr_note.as_deref().unwrap().contains("implausible"));
    let h = nifti::read_header(&fixtures().join("nifti/scaled_int16_ms.nii.gz")).unwrap();
    assert_eq!(h.tr, Some(1.5), "1500 ms");
    assert!(h.tr_note.is_none());
}

#[test]
fn bold_inside_a_mask_equals_the_image_values() {
    let path = test_data().join("fmri/nibabel/functional.nii");
    let img = nifti::read_image(&path).unwrap();
    let mask = Mask::from_image(&img, |v| v > 3600.0);
    assert!(mask.len() > 10 && mask.len() < img.header.grid.n_voxels());
    let bold = nifti::read_bold(&path, Some((&path, &mask))).unwrap();
    assert_eq!(bold.data.dim(), (20, mask.len()));
    for (v, ijk) in mask.ijk().enumerate() {
        for t in 0..20 {
            assert_eq!(bold.data[[t, v]], img.data[[ijk[0], ijk[1], ijk[2], t]]);
        }
    }
    // Blocks cover the voxels once, in order.
    let widths: Vec<usize> = bold.blocks(7).map(|(start, b)| start + b.ncols()).collect();
    assert_eq!(widths.last().copied(), Some(mask.len()));
}

/// A filtered read (volumes decoded on one thread, filtered by a helper or by the reader
/// itself when the slots are all waiting) puts each filtered volume in its own row: equal
/// to the filter applied to each volume in turn, whoever ran it and in whatever order the
/// uneven filter times finish them.
#[test]
fn a_filtered_read_equals_the_filter_applied_in_order() {
    let path = test_data().join("fmri/nitime/fmri1.nii.gz");
    let header = nifti::read_header(&path).unwrap();
    let img = nifti::read_image(&path).unwrap();
    let mask = Mask::from_image(&img, |v| v > 0.0);
    let filter = |buf: &mut [f32], scratch: &mut Vec<f32>| {
        // Uneven work, so the helper and the reader overtake each other.
        let spin = (buf[buf.len() / 2].to_bits() % 7) as usize * 20_000;
        scratch.resize(spin, 1.0);
        let drift: f32 = scratch.iter().sum::<f32>() * 0.0;
        let first = buf[0];
        buf.iter_mut().enumerate().for_each(|(i, v)| *v = *v * 0.5 + first + (i % 13) as f32 + drift);
    };
    let got = nifti::read_bold_each(&path, Some((&path, &mask)), filter).unwrap();
    let (nx, ny, nz) = (header.grid.shape[0], header.grid.shape[1], header.grid.shape[2]);
    for t in 0..header.n_vols {
        let mut volume: Vec<f32> = (0..nx * ny * nz)
            .map(|l| img.data[[l % nx, (l / nx) % ny, l / (nx * ny), t]])
            .collect();
        filter(&mut volume, &mut Vec::new());
        for (v, ijk) in mask.ijk().enumerate() {
            let l = ijk[0] + nx * (ijk[1] + ny * ijk[2]);
            assert_eq!(got.data[[t, v]], volume[l], "volume {t}, voxel {v}");
        }
    }
}

/// The map the writer produces (4D, rotated qform-only grid, TR 1.25 s) is byte-stable and
/// nibabel reads it (stored in written_map_nibabel.json by scripts/fixtures) with the same
/// affine, TR and the values we meant to write. The blessed file is our own writer's
/// output, so it only pins the bytes; the content is judged by nibabel's reading. Bless
/// with CORTEXFLOW_BLESS=1 after an intended format change, then rerun
/// scripts/fixtures/make_fixtures.py; a missing blessed file fails otherwise, and CI
/// (CORTEXFLOW_REQUIRE_PYTHON set) refuses to bless, so the byte check cannot pass vacuously.
#[test]
fn written_map_is_byte_stable_and_reads_in_nibabel() {
    let grid_src = nifti::read_header(&fixtures().join("nifti/qform_only.nii.gz")).unwrap();
    let grid = grid_src.grid.clone();
    let [nx, ny, nz] = grid.shape;
    let data = Array4::from_shape_fn((nx, ny, nz, 3), |(i, j, k, t)| {
        (i as f32) + 10.0 * j as f32 + 100.0 * k as f32 - 0.25 * t as f32
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("map.nii.gz");
    nifti::write_map(&out, &grid, &data, Some(1.25)).unwrap();
    let blessed = fixtures().join("written_map.nii.gz");
    if std::env::var("CORTEXFLOW_BLESS").as_deref() == Ok("1") {
        assert!(
            std::env::var_os("CORTEXFLOW_REQUIRE_PYTHON").is_none(),
            "CORTEXFLOW_BLESS=1 in CI would compare the written map with itself"
        );
        std::fs::copy(&out, &blessed).unwrap();
        eprintln!("note: blessed {}", blessed.display());
    }
    assert!(
        blessed.is_file(),
        "{} is missing: bless it with CORTEXFLOW_BLESS=1 (then rerun scripts/fixtures/make_fixtures.py)",
        blessed.display()
    );
    assert_eq!(
        gunzip(&out),
        gunzip(&blessed),
        "written bytes differ from the blessed map"
    );

    let nib = fixture_json("written_map_nibabel.json");
    assert_eq!(nib["shape"], serde_json::json!([nx, ny, nz, 3]));
    assert_eq!(nib["tr"].as_f64(), Some(1.25));
    assert_eq!(nib["time_unit"], "sec");
    for r in 0..3 {
        for c in 0..4 {
            assert!(
                (nib["affine"][r][c].as_f64().unwrap() - grid.affine.0[r][c]).abs() < 1e-5,
                "affine[{r}][{c}]"
            );
        }
    }
    let theirs: Vec<f64> = nib["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // `data` as we meant it (x-fastest), not as our reader gets it back.
    let ours: Vec<f64> = data.t().iter().map(|&v| v as f64).collect();
    assert_eq!(ours, theirs, "nibabel reads the values written");

    // Our reader agrees too, and in CI nibabel reopens the fresh file as well.
    let back = nifti::read_image(&out).unwrap();
    assert_eq!(back.data, data);
    assert!(back.header.grid.matches(&grid, 1e-5));
    python_check(
        "check_map.py",
        &[&out, &fixtures().join("written_map_nibabel.json")],
    );
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut out,
    )
    .unwrap();
    out
}

/// Nearest-neighbour resampling equals nilearn's resample_to_img(interpolation="nearest")
/// label for label (exact counts and index-weighted sums).
#[test]
fn nearest_resampling_matches_nilearn() {
    let refs = fixture_json("resample_nilearn.json");
    let src = nifti::read_image(
        &test_data().join("atlases/yeo2011/Yeo-7_space-MNI152NLin6_res-2x2x2.nii.gz"),
    )
    .unwrap();
    for (name, r) in refs.as_object().unwrap() {
        let target =
            nifti::read_header(&test_data().join(r["target"].as_str().unwrap())).unwrap();
        let out = nifti::resample_nearest(&src, &target.grid);
        let flat: Vec<f64> = out.t().iter().map(|&v| v as f64).collect();
        for k in 0..8 {
            let n = flat.iter().filter(|&&v| v == k as f64).count() as u64;
            assert_eq!(
                Some(n),
                r["counts"][k.to_string()].as_u64(),
                "{name}: label {k}"
            );
        }
        let weighted: f64 = flat
            .iter()
            .enumerate()
            .map(|(i, v)| v * (i % 9973) as f64)
            .sum();
        assert_eq!(
            weighted,
            r["fingerprint"]["sum_weighted"].as_f64().unwrap(),
            "{name}: voxel placement"
        );
    }
}

mod bad_input {
    use super::*;

    fn copy_with(
        dir: &Path,
        src: &Path,
        name: &str,
        edit: impl FnOnce(&mut Vec<u8>),
    ) -> std::path::PathBuf {
        let mut bytes = std::fs::read(src).unwrap();
        edit(&mut bytes);
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn error_of(path: &Path) -> String {
        let e = nifti::read_image(path)
            .expect_err("bad input must be an error")
            .to_string();
        assert!(
            e.contains(&path.display().to_string()),
            "error names the file: {e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn truncated_gz_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = test_data().join("fmri/nitime/fmri1.nii.gz");
        let p = copy_with(dir.path(), &src, "cut.nii.gz", |b| b.truncate(b.len() / 2));
        let e = error_of(&p);
        assert!(
            e.contains("truncated") || e.contains("ends early") || e.contains("corrupt"),
            "{e}"
        );
        // A filtered read stops at the same error (the helper's volumes are drained).
        let e = nifti::read_bold_each(&p, None, |b, _| b.iter_mut().for_each(|v| *v += 1.0));
        assert!(e.unwrap_err().to_string().contains("cut.nii.gz"));
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = test_data().join("fmri/nibabel/functional.nii");
        let p = copy_with(dir.path(), &src, "magic.nii", |b| {
            b[344..348].copy_from_slice(b"xyz\0")
        });
        let e = error_of(&p);
        assert!(e.contains("magic") || e.contains("NIfTI"), "{e}");
    }

    #[test]
    fn dims_that_disagree_with_the_file_size_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = test_data().join("fmri/nibabel/functional.nii");
        // dim[4] (little-endian int16 at byte 48): 20 → 40 volumes.
        let p = copy_with(dir.path(), &src, "dims.nii", |b| {
            b[48..50].copy_from_slice(&40i16.to_le_bytes())
        });
        let e = error_of(&p);
        assert!(e.contains("truncated: declares") && e.contains("holds"), "{e}");
        // The same lie inside a .nii.gz is caught while decompressing: the bytes declared
        // (40 volumes) against those the stream holds (20).
        let gz = dir.path().join("dims.nii.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::Write::write_all(&mut enc, &std::fs::read(&p).unwrap()).unwrap();
        enc.finish().unwrap();
        let e = error_of(&gz);
        let declared = std::fs::read(&p).unwrap().len() - 352;
        assert!(
            e.contains(&format!("truncated: declares {} bytes of data, holds {}", 2 * declared, declared)),
            "{e}"
        );
    }

    /// functional.nii with int16 `dims` written at byte 40 (dim[0], dim[1], …).
    fn with_dims(dir: &Path, name: &str, dims: &[i16]) -> std::path::PathBuf {
        let src = test_data().join("fmri/nibabel/functional.nii");
        copy_with(dir, &src, name, |b| {
            for (i, d) in dims.iter().enumerate() {
                b[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
            }
        })
    }

    fn gzip(path: &Path) -> std::path::PathBuf {
        let gz = path.with_extension("nii.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::Write::write_all(&mut enc, &std::fs::read(path).unwrap()).unwrap();
        enc.finish().unwrap();
        gz
    }

    /// dim[0] and negative dims are said as the file holds them, not byte-swapped.
    #[test]
    fn dims_are_reported_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = error_of(&with_dims(dir.path(), "eight.nii", &[8]));
        assert!(e.contains("dim[0]=8"), "{e}");
        let e = error_of(&with_dims(dir.path(), "neg.nii", &[4, 64, -45]));
        assert!(e.contains("dim[2]=-45"), "{e}");
        let e = error_of(&gzip(&with_dims(dir.path(), "zero.nii", &[0])));
        assert!(e.contains("dim[0]=0"), "{e}");
    }

    /// dims of 32767⁴ declare 2.3 EB: refused from the header, in well under a second,
    /// whether the file is plain (its size) or gzipped (the deflate ratio bound).
    #[test]
    fn huge_dims_are_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let huge = with_dims(dir.path(), "huge.nii", &[4, 32767, 32767, 32767, 32767]);
        let start = std::time::Instant::now();
        let e = error_of(&huge);
        assert!(e.contains("truncated: declares"), "{e}");
        let e = error_of(&gzip(&huge));
        assert!(e.contains("more than a gzip file"), "{e}");
        assert!(start.elapsed().as_secs_f64() < 1.0);
    }

    #[test]
    fn non_regular_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("dir.nii");
        std::fs::create_dir(&d).unwrap();
        assert!(error_of(&d).contains("is a directory"));
        let e = nifti::read_image(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("/dev/zero: is not a regular file"), "{e}");
        let e = error_of(&dir.path().join("absent.nii"));
        assert!(e.contains("no such file"), "{e}");
        let empty = dir.path().join("empty.nii");
        std::fs::write(&empty, b"").unwrap();
        assert!(error_of(&empty).contains("file is empty"));
    }

    #[test]
    fn a_four_d_mask_and_a_three_d_bold_are_errors() {
        let four_d = test_data().join("fmri/nitime/fmri1.nii.gz");
        let e = nifti::read_mask(&four_d).unwrap_err().to_string();
        assert!(
            e.contains("fmri1.nii.gz") && e.contains("a mask must be 3-D") && e.contains("40 volumes"),
            "{e}"
        );
        let three_d = test_data().join("stimuli/lpp-en/mask_lpp_en.nii.gz");
        let e = nifti::read_bold(&three_d, None).unwrap_err().to_string();
        assert!(
            e.contains("mask_lpp_en.nii.gz: is 3-D (one volume); a BOLD run needs 4 dimensions"),
            "{e}"
        );
    }

    #[test]
    fn garbage_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("noise.nii.gz");
        std::fs::write(
            &p,
            (0..5000u32)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        error_of(&p);
        let p = dir.path().join("empty.nii");
        std::fs::write(&p, b"").unwrap();
        error_of(&p);
        error_of(&dir.path().join("absent.nii.gz"));
    }

    #[test]
    fn a_mask_on_another_grid_is_an_error() {
        let bold = test_data().join("fmri/nitime/fmri1.nii.gz");
        let mask_path = test_data().join("stimuli/lpp-en/mask_lpp_en.nii.gz");
        let mask = nifti::read_mask(&mask_path).unwrap();
        let e = nifti::read_bold(&bold, Some((&mask_path, &mask)))
            .expect_err("grids differ")
            .to_string();
        assert!(
            e.contains("fmri1.nii.gz") && e.contains("mask_lpp_en.nii.gz") && e.contains("grid"),
            "{e}"
        );
        // A mask on the right grid works.
        let img = nifti::read_image(&bold).unwrap();
        let own = Mask::from_image(&img, |v| v > 0.0);
        assert_eq!(
            nifti::read_bold(&bold, Some((&bold, &own)))
                .unwrap()
                .data
                .ncols(),
            own.len()
        );
        assert_eq!(img.data.len_of(Axis(3)), 40);
    }
}
