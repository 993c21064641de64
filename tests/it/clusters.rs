//! Cluster tables against nilearn's `get_clusters_table` (issue 20): on smoothed-noise
//! maps one- and two-sided, with cluster-size and distance settings and a negative
//! threshold, and on flat clusters reported at their centre of mass (or the nearest voxel
//! when it falls outside). Ids, coordinates and sizes must be equal; peaks too, as the
//! float32 values both sides read. Fixtures: scripts/fixtures/make_cluster_fixtures.py.

use cortexflow::io::nifti;
use cortexflow::kernels::clusters_table::{clusters_table, ClusterOptions};

use super::common::fixtures;

#[test]
fn cluster_tables_equal_nilearns() {
    let dir = fixtures().join("clusters");
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tables_nilearn.json")).unwrap()).unwrap();
    let mut rows_seen = 0;
    for case in cases.as_array().unwrap() {
        let image = nifti::read_image(&dir.join(case["map"].as_str().unwrap())).unwrap();
        let map = image.data.index_axis(ndarray::Axis(3), 0).mapv(f64::from);
        let o = ClusterOptions {
            threshold: case["threshold"].as_f64().unwrap(),
            min_voxels: case["cluster_threshold"].as_u64().unwrap() as usize,
            two_sided: case["two_sided"].as_bool().unwrap(),
            min_distance: case["min_distance"].as_f64().unwrap(),
        };
        let ours = clusters_table(&map, &image.header.grid.affine, &o).unwrap();
        let theirs = case["rows"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{case}");
        for (a, b) in ours.iter().zip(theirs) {
            let what = format!("{} {o:?}: ours {a:?}, nilearn {b}", case["map"]);
            assert_eq!(a.id, b[0].as_str().unwrap(), "{what}");
            for (axis, x) in a.xyz.iter().enumerate() {
                assert!((x - b[axis + 1].as_f64().unwrap()).abs() < 1e-9, "{what}");
            }
            // Equal as float32, the maps' type (serde_json may read the f64 text 1 ulp off).
            assert_eq!(a.value as f32, b[4].as_f64().unwrap() as f32, "{what}");
            assert_eq!(a.value, f64::from(a.value as f32), "{what}: a value of the map");
            assert_eq!(a.size_mm3, b[5].as_u64(), "{what}");
        }
        rows_seen += theirs.len();
    }
    assert!(rows_seen > 100, "the fixtures hold {rows_seen} rows");
}
