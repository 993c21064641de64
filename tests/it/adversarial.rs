//! Bad inputs through the built binary, as a matrix: each row makes one bad input in a
//! temporary directory (a forged header, a file cut short, a device, an option out of
//! range), runs one command, and names a fragment the error must hold. Every row must
//! end with exit status 1, no panic, one line on stderr naming the file (or option), no
//! output left behind, and — for the rows whose input declares a huge size — within a
//! second (5 s in debug builds) and without allocating what the input declares.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::common::{fixtures, test_data};

/// One row: what it is, the command line, the fragments its error must hold, a path the
/// failed command must not leave behind, and whether it must be fast and small.
struct Row {
    what: &'static str,
    args: Vec<String>,
    expect: Vec<String>,
    absent: Option<PathBuf>,
    bounded: bool,
}

fn row(what: &'static str, args: &[&str], expect: &[&str]) -> Row {
    Row {
        what,
        args: args.iter().map(|a| a.to_string()).collect(),
        expect: expect.iter().map(|e| e.to_string()).collect(),
        absent: None,
        bounded: false,
    }
}

impl Row {
    /// The row's input declares a huge size: the error must come fast and small.
    fn bounded(mut self) -> Row {
        self.bounded = true;
        self
    }

    /// The failed command must not have made `path`.
    fn leaves_no(mut self, path: &Path) -> Row {
        self.absent = Some(path.to_path_buf());
        self
    }
}

/// Exit code, stderr, seconds and peak resident memory (MB) of one run of the binary;
/// the peak is the child's own, read with wait4 (std's wait does not report it).
// The child is reaped by wait4 below, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measured(args: &[String]) -> (Option<i32>, String, f64, f64) {
    use std::process::{Command, Stdio};
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cortexflow"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cortexflow");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child spawned above, which nothing else waits for.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let secs = start.elapsed().as_secs_f64();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, stderr, secs, usage.ru_maxrss as f64 / 1024.0)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// functional.nii (little-endian, dims 17×21×3×20 int16) with int16 `dims` written from
/// dim[0] on.
fn nifti_with_dims(dir: &Path, name: &str, dims: &[i16]) -> PathBuf {
    let mut b = std::fs::read(test_data().join("fmri/nibabel/functional.nii")).unwrap();
    for (i, d) in dims.iter().enumerate() {
        b[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

fn gzip_to(src: &Path, dest: &Path) -> PathBuf {
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(dest).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut enc, &std::fs::read(src).unwrap()).unwrap();
    enc.finish().unwrap();
    dest.to_path_buf()
}

fn cut_to(src: &Path, dest: &Path, keep: impl FnOnce(usize) -> usize) -> PathBuf {
    let b = std::fs::read(src).unwrap();
    std::fs::write(dest, &b[..keep(b.len())]).unwrap();
    dest.to_path_buf()
}

/// The tiny fixture GGUF, and a copy with one weight of `tensor` set to NaN.
fn gguf_files(dir: &Path, tensor: &str) -> (PathBuf, PathBuf) {
    use candle_core::quantized::gguf_file::Content;
    let good = super::rope::gguf_of("default", dir, vec![], None);
    let content = Content::read(&mut std::fs::File::open(&good).unwrap()).unwrap();
    let info = &content.tensor_infos[tensor];
    assert_eq!(info.ggml_dtype, candle_core::quantized::GgmlDType::F32);
    let at = (content.tensor_data_offset + info.offset) as usize;
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let nan = dir.join("nan.gguf");
    std::fs::write(&nan, bytes).unwrap();
    (good, nan)
}

/// (Longer than ~80 lines on purpose: the matrix is one table, a row per bad input.)
fn rows(dir: &Path) -> Vec<Row> {
    let fmri1 = test_data().join("fmri/nitime/fmri1.nii.gz");
    let lpp1 = test_data().join("stimuli/lpp-en/lppEN_section1.TextGrid");
    let huge = nifti_with_dims(dir, "huge.nii", &[4, 32767, 32767, 32767, 32767]);
    let huge_gz = gzip_to(&huge, &dir.join("huge.nii.gz"));
    let eight = nifti_with_dims(dir, "eight.nii", &[8]);
    let negative = nifti_with_dims(dir, "negative.nii", &[4, 17, -45]);
    let cut_gz = cut_to(&fmri1, &dir.join("cut.nii.gz"), |n| n / 2);
    let empty = dir.join("empty.nii");
    std::fs::write(&empty, b"").unwrap();
    let folder = dir.join("folder.nii.gz");
    std::fs::create_dir(&folder).unwrap();
    let fifo = dir.join("fifo.nii");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let text = std::fs::read_to_string(&lpp1).unwrap();
    let starts: Vec<usize> = text.match_indices("intervals [").map(|(i, _)| i).collect();
    let half = dir.join("half.TextGrid");
    std::fs::write(&half, &text[..starts[starts.len() / 2]]).unwrap();
    let kept = starts.len() / 2;
    let short = dir.join("short.TextGrid");
    let mended = text[..starts[kept]].replace(
        &format!("intervals: size = {}", starts.len()),
        &format!("intervals: size = {kept}"),
    );
    std::fs::write(&short, mended).unwrap();
    let long = dir.join("long.tsv");
    std::fs::write(&long, format!("{}\n", "w".repeat(10 << 20))).unwrap();
    let story = dir.join("story.tsv");
    std::fs::write(&story, "word\tonset\toffset\nonce\t0.5\t1\nupon\t1.5\t2\n").unwrap();
    let gguf_dir = dir.join("gguf");
    std::fs::create_dir(&gguf_dir).unwrap();
    let (good_gguf, nan_gguf) = gguf_files(&gguf_dir, "blk.0.ffn_up.weight");
    let cut_gguf = cut_to(&good_gguf, &gguf_dir.join("cut.gguf"), |n| n * 2 / 3);
    let recipe = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let nan_lambda = recipe("nan_lambda.toml", "[basis]\nlambda = nan\n");
    let neg_z = recipe("neg_z.toml", "[group]\nz_cut = -1.0\n");
    let fdr2 = recipe("fdr2.toml", "[group]\nfdr = 2.0\n");
    let bad_toml = recipe("bad.toml", "[basis]\natoms = \"many\"\n");
    let out = dir.join("out");
    let store = dir.join("store");
    let recipe_demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("dataflows/demo.toml");
    vec![
        // NIfTI: sizes the header declares, the dims as written, files that are not files.
        row(
            "dims 32767⁴ in a .nii",
            &["inspect", s(&huge)],
            &["huge.nii: truncated: declares"],
        )
        .bounded(),
        row(
            "dims 32767⁴ in a .nii.gz",
            &["inspect", s(&huge_gz)],
            &["huge.nii.gz", "more than a gzip file"],
        )
        .bounded(),
        row(
            "/dev/zero",
            &["inspect", "/dev/zero"],
            &["/dev/zero: is not a regular file"],
        )
        .bounded(),
        row(
            "a FIFO",
            &["inspect", s(&fifo)],
            &["fifo.nii: is not a regular file"],
        )
        .bounded(),
        row(
            "a directory",
            &["inspect", s(&folder)],
            &["folder.nii.gz: is a directory"],
        ),
        row(
            "no such file",
            &["inspect", s(&dir.join("absent.nii"))],
            &["absent.nii: no such file"],
        ),
        row(
            "an empty file",
            &["inspect", s(&empty)],
            &["empty.nii: file is empty"],
        ),
        row(
            "dim[0] = 8",
            &["inspect", s(&eight)],
            &["eight.nii: dim[0]=8"],
        ),
        row(
            "a negative dim",
            &["inspect", s(&negative)],
            &["negative.nii: dim[2]=-45"],
        ),
        row(
            "a .nii.gz cut in half",
            &["inspect", s(&cut_gz)],
            &["cut.nii.gz: truncated: declares"],
        ),
        row(
            "a 4-D mask",
            &[
                "init",
                "--recipe",
                s(&recipe_demo),
                "--mask",
                s(&fmri1),
                s(&store),
            ],
            &["fmri1.nii.gz: a mask must be 3-D"],
        )
        .leaves_no(&store),
        // Stimuli.
        row(
            "a TextGrid cut in half",
            &["inspect", s(&half)],
            &["half.TextGrid: tier 'TokensAlign' declares 1712 intervals but holds 856"],
        ),
        row(
            "a TextGrid whose last interval ends before its xmax",
            &["inspect", s(&short)],
            &["short.TextGrid: tier 'TokensAlign': the tier declares xmax = 564 s"],
        ),
        row(
            "a 10 MB header line",
            &["inspect", s(&long)],
            &["long.tsv", "…"],
        ),
        // GGUF.
        row(
            "a GGUF cut short",
            &[
                "activations",
                "--model",
                s(&cut_gguf),
                "--text",
                s(&story),
                "--out",
                s(&out.join("a.parquet")),
            ],
            &["cut.gguf", "tensor '", "(truncated?)"],
        )
        .leaves_no(&out),
        row(
            "a NaN weight",
            &[
                "activations",
                "--model",
                s(&nan_gguf),
                "--text",
                s(&story),
                "--out",
                s(&out.join("a.parquet")),
            ],
            &["nan.gguf", "tensor 'blk.0.ffn_up.weight': 1 of"],
        )
        .leaves_no(&out),
        // Options out of range, refused before anything is written.
        row(
            "group --fdr 2",
            &[
                "group",
                "--encode",
                s(dir),
                "--mask",
                s(&fmri1),
                "--fdr",
                "2",
                "--out",
                s(&out),
            ],
            &["group.fdr = 2: a level in (0, 1)"],
        )
        .leaves_no(&out),
        row(
            "group --fdr nan",
            &[
                "group",
                "--encode",
                s(dir),
                "--mask",
                s(&fmri1),
                "--fdr",
                "nan",
                "--out",
                s(&out),
            ],
            &["group.fdr = NaN"],
        )
        .leaves_no(&out),
        row(
            "group --z-cut -1",
            &[
                "group",
                "--encode",
                s(dir),
                "--mask",
                s(&fmri1),
                "--z-cut=-1",
                "--out",
                s(&out),
            ],
            &["group.z_cut = -1: a positive |z|"],
        )
        .leaves_no(&out),
        row(
            "basis --lambda nan",
            &[
                "basis",
                "--responses",
                s(&story),
                "--lambda",
                "nan",
                "--out",
                s(&out),
            ],
            &["--lambda must be a positive number, got NaN"],
        )
        .leaves_no(&out),
        row(
            "basis --atoms 0",
            &[
                "basis",
                "--responses",
                s(&story),
                "--atoms",
                "0",
                "--out",
                s(&out),
            ],
            &["--atoms must be at least 1"],
        )
        .leaves_no(&out),
        row(
            "simulate --jitter 1000",
            &["simulate", "--out", s(&out), "--jitter", "1000"],
            &["--jitter 1000: a shift of 0 to 8 voxels"],
        )
        .leaves_no(&out)
        .bounded(),
        row(
            "simulate --scans 1000000",
            &["simulate", "--out", s(&out), "--scans", "1000000"],
            &["--scans 1000000: at most 10000"],
        )
        .leaves_no(&out)
        .bounded(),
        row(
            "simulate --factors 1000000",
            &["simulate", "--out", s(&out), "--factors", "1000000"],
            &["--factors 1000000: at most 10000"],
        )
        .leaves_no(&out)
        .bounded(),
        row(
            "simulate --subjects 100000",
            &["simulate", "--out", s(&out), "--subjects", "100000"],
            &["--subjects 100000: at most 1000"],
        )
        .leaves_no(&out)
        .bounded(),
        row(
            "responses --n-scans 1000000",
            &[
                "responses",
                "--model",
                s(&good_gguf),
                "--stimulus",
                s(&story),
                "--tr",
                "2",
                "--n-scans",
                "1000000",
                "--out",
                s(&out),
            ],
            &[
                "story.tsv: --n-scans 1000000 is more than the stimulus implies",
                "at most 102",
            ],
        )
        .leaves_no(&out)
        .bounded(),
        row(
            "responses --delays 0,1000000",
            &[
                "responses",
                "--model",
                s(&good_gguf),
                "--stimulus",
                s(&story),
                "--tr",
                "2",
                "--n-scans",
                "10",
                "--hrf",
                "fir",
                "--delays",
                "0,1000000",
                "--out",
                s(&out),
            ],
            &["story.tsv: FIR delay 1000000 scans is not shorter than the run (10 scans)"],
        )
        .leaves_no(&out),
        row(
            "responses --tr 0",
            &[
                "responses",
                "--model",
                s(&good_gguf),
                "--stimulus",
                s(&story),
                "--tr",
                "0",
                "--n-scans",
                "10",
                "--out",
                s(&out),
            ],
            &["--tr must be a positive number"],
        )
        .leaves_no(&out),
        row(
            "ingest --tr nan",
            &[
                "ingest",
                s(&store),
                "--stimulus",
                s(&story),
                "--tr",
                "nan",
                "--n-scans",
                "10",
            ],
            &["--tr NaN: a positive number of seconds"],
        )
        .leaves_no(&store),
        row(
            "activations --context 0",
            &[
                "activations",
                "--model",
                s(&good_gguf),
                "--text",
                s(&story),
                "--context",
                "0",
                "--out",
                s(&out.join("a.parquet")),
            ],
            &["--context 0: at least 1 token"],
        )
        .leaves_no(&out),
        row(
            "simulate needing more memory than there is",
            &[
                "simulate",
                "--out",
                s(&out),
                "--grid",
                "2mm",
                "--scans",
                "10000",
                "--neurons",
                "1000000",
            ],
            &["these options need about", "of memory", "is available"],
        )
        .leaves_no(&out)
        .bounded(),
        row(
            "ingest -w 1000000",
            &["ingest", s(&store), "-w", "1000000", "--bold", s(&fmri1)],
            &["-w 1000000 / -n 1: at most 1024 workers per process"],
        )
        .leaves_no(&store)
        .bounded(),
        // Recipes: one line naming the file and the key, and no store made.
        row(
            "recipe lambda = nan",
            &["init", "--recipe", s(&nan_lambda), s(&store)],
            &["nan_lambda.toml: basis.lambda = NaN"],
        )
        .leaves_no(&store),
        row(
            "recipe z_cut = -1",
            &["init", "--recipe", s(&neg_z), s(&store)],
            &["neg_z.toml: group.z_cut"],
        )
        .leaves_no(&store),
        row(
            "recipe fdr = 2",
            &["init", "--recipe", s(&fdr2), s(&store)],
            &["fdr2.toml: group.fdr = 2"],
        )
        .leaves_no(&store),
        row(
            "recipe with a type error",
            &["init", "--recipe", s(&bad_toml), s(&store)],
            &["bad.toml:2: not a valid recipe"],
        )
        .leaves_no(&store),
    ]
}

#[test]
fn every_bad_input_is_one_error_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Debug builds are slower; the bound is for what a release build does in < 1 s.
    let limit_s = if cfg!(debug_assertions) { 5.0 } else { 1.0 };
    let mut failures = Vec::new();
    for r in rows(dir.path()) {
        let (code, stderr, secs, peak_mb) = run_measured(&r.args);
        let line = stderr.trim_end();
        let mut why = Vec::new();
        if code != Some(1) {
            why.push(format!("exit {code:?}"));
        }
        if stderr.contains("panicked") {
            why.push("panicked".into());
        }
        if line.lines().count() != 1 || !line.starts_with("error: ") {
            why.push("not one error line".into());
        }
        if line.len() > 600 {
            why.push(format!("{} characters", line.len()));
        }
        why.extend(
            r.expect
                .iter()
                .filter(|e| !line.contains(e.as_str()))
                .map(|e| format!("no {e:?}")),
        );
        if line.contains(".tmp-") {
            why.push("names a temporary file".into());
        }
        if let Some(p) = r.absent.as_ref().filter(|p| p.exists()) {
            why.push(format!("left {}", p.display()));
        }
        if r.bounded && (secs > limit_s || peak_mb > 100.0) {
            why.push(format!("took {secs:.2} s and {peak_mb:.0} MB"));
        }
        if !why.is_empty() {
            failures.push(format!(
                "{}: {} — {}",
                r.what,
                why.join(", "),
                line.chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // The fixtures this matrix corrupts are still whole.
    assert!(fixtures().join("rope/default").is_dir());
}
