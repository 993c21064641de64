#!/usr/bin/env bash
# The study behind io::gzip (table in src/io/nifti/write.rs): deflate time, size and inflate
# time of one map (its raw bytes, fed as the writer feeds them, a 2 mm volume at a time)
# with flate2's miniz_oxide and zlib-rs backends at levels 1–3, and with zlib-rs's
# run-length strategy (Z_RLE, the previous writer). One core, no store involved. The
# writer itself is measured against nibabel by `cargo bench --bench map_write`.
#
#   scripts/studies/gzip_level.sh STORE/subjects/sub-01/beta.nii.gz
set -euo pipefail
map=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "gzip-level"
version = "0.1.0"
edition = "2021"
[dependencies]
flate2 = { version = "1", default-features = false, features = ["rust_backend"] }
zlib-rs = { version = "0.6", optional = true }
[features]
zlib-rs = ["flate2/zlib-rs", "dep:zlib-rs"]
TOML
cat > "$work/src/main.rs" <<'RUST'
use std::io::{Read, Write};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let gz = std::fs::read(&path).unwrap();
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
    for level in [1u32, 2, 3] {
        let t = std::time::Instant::now();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        raw.chunks(3_610_000).for_each(|c| e.write_all(c).unwrap());
        let out = e.finish().unwrap();
        println!("level {level}: deflate {:.2} s, {:.1} MB", t.elapsed().as_secs_f64(), out.len() as f64 / 1e6);
    }
    #[cfg(feature = "zlib-rs")]
    {
        use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Method, Strategy};
        let config = DeflateConfig { level: 1, method: Method::Deflated, window_bits: 31, mem_level: 8, strategy: Strategy::Rle };
        let t = std::time::Instant::now();
        let mut d = Deflate::new_with_config(config);
        let mut out = vec![0u8; raw.len() / 2 + (1 << 20)];
        let mut made = 0;
        let chunks: Vec<&[u8]> = raw.chunks(3_610_000).collect();
        for (i, c) in chunks.iter().enumerate() {
            let flush = if i + 1 == chunks.len() { DeflateFlush::Finish } else { DeflateFlush::NoFlush };
            let before = d.total_out();
            d.compress(c, &mut out[made..], flush).unwrap();
            made += (d.total_out() - before) as usize;
        }
        println!("run-length (Z_RLE): deflate {:.2} s, {:.1} MB", t.elapsed().as_secs_f64(), made as f64 / 1e6);
        let t = std::time::Instant::now();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..made]).read_to_end(&mut back).unwrap();
        assert!(back == raw);
        println!("run-length (Z_RLE): inflate {:.2} s", t.elapsed().as_secs_f64());
    }
    let t = std::time::Instant::now();
    let mut back = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
    println!("inflate {:.2} s ({:.0} MB raw)", t.elapsed().as_secs_f64(), back.len() as f64 / 1e6);
}
RUST
for backend in miniz_oxide zlib-rs; do
  features=(); [ "$backend" = zlib-rs ] && features=(--features zlib-rs)
  (cd "$work" && cargo build --release -q "${features[@]}")
  echo "== $backend"
  "$work/target/release/gzip-level" "$map"
done
