//! Timed words: Praat TextGrids (long text form, UTF-8 or UTF-16) and TSV/CSV tables with
//! word, onset and offset (or duration) columns, in seconds.

use std::path::{Path, PathBuf};

use crate::error::{cut, Error, Result};

/// One spoken word.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    pub onset: f64,
    pub offset: f64,
}

/// The words of one run, in time order.
#[derive(Debug, Clone)]
pub struct Stimulus {
    pub path: PathBuf,
    pub words: Vec<Word>,
    /// End of the recording in seconds (TextGrid xmax, or the last offset of a table).
    pub end: f64,
}

/// Tolerance (s) for touching intervals: word boundaries computed in float arithmetic.
const TIME_EPS: f64 = 1e-6;

/// The largest stimulus file read (a day of speech as a TextGrid is ~100 MB).
const MAX_STIMULUS_BYTES: u64 = 1 << 30;

/// Tolerance (s) between a tier's declared end and its last interval's end: both are
/// written by Praat from the same number, so only a cut or edited file differs.
const END_EPS: f64 = 1e-4;

/// Silence and pause markers that are not words: `#`, `sp`, `sil`, `<sil>` and empty text.
pub fn is_silence(text: &str) -> bool {
    let t = text.trim();
    t.is_empty()
        || t == "#"
        || ["sp", "sil", "<sil>"]
            .iter()
            .any(|m| t.eq_ignore_ascii_case(m))
}

/// Reads a stimulus file; the format follows the extension (`.TextGrid`, `.tsv`, `.csv`).
/// `tier` names the TextGrid word tier; by default the first interval tier is used.
pub fn read_stimulus(path: &Path, tier: Option<&str>) -> Result<Stimulus> {
    // Checked first: a device such as /dev/zero would be read until memory runs out.
    let len = super::regular_file(path)?;
    if len > MAX_STIMULUS_BYTES {
        return Err(Error::format(
            path,
            format!(
                "is {}; a stimulus (timed words) is at most {}",
                super::human_bytes(len.into()),
                super::human_bytes(MAX_STIMULUS_BYTES.into())
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_stimulus(path, &bytes, tier)
}

/// Parses stimulus `bytes` as if read from `path` (whose extension picks the format and
/// which names the source in errors).
pub fn parse_stimulus(path: &Path, bytes: &[u8], tier: Option<&str>) -> Result<Stimulus> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "textgrid" => parse_textgrid(path, bytes, tier),
        "tsv" | "txt" => parse_table(path, bytes, b'\t'),
        "csv" => parse_table(path, bytes, b','),
        _ => Err(Error::format(
            path,
            format!("unknown stimulus extension '.{ext}': expected .TextGrid, .tsv or .csv"),
        )),
    }
}

/// Decodes text by its byte-order mark: UTF-16 BE/LE (Praat writes these for non-ASCII
/// text) or UTF-8.
fn decode_text(path: &Path, bytes: &[u8]) -> Result<String> {
    let utf16 = |be: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| {
                if be {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| Error::format(path, "invalid UTF-16 text"))
    };
    match bytes {
        [0xFE, 0xFF, ..] => utf16(true),
        [0xFF, 0xFE, ..] => utf16(false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec())
            .map_err(|e| Error::format(path, format!("invalid UTF-8: {e}"))),
        _ => String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::format(path, format!("invalid UTF-8 (not a text file?): {e}"))),
    }
}

#[derive(Debug, Default)]
struct Tier {
    class: String,
    name: String,
    /// `intervals: size = N` as declared, and the tier's own `xmax`.
    declared: Option<usize>,
    xmax: Option<f64>,
    intervals: Vec<Interval>,
}

/// An interval (or point) as read, with the line it starts on.
#[derive(Debug)]
struct Interval {
    line: usize,
    xmin: Option<f64>,
    xmax: Option<f64>,
    text: Option<String>,
}

/// Long-form ("ooTextFile") TextGrid parser: a line-oriented walk over `item [n]:`,
/// `intervals [k]:`, `xmin/xmax = number` and `text = "quoted"` lines. In quoted text,
/// `""` is an escaped quote and a string may run over several lines. Praat's backslash
/// trigraphs (e.g. `\i"` for ï) are kept as written.
/// (Longer than ~80 lines on purpose: One pass with one parser state over both TextGrid forms (long and short); split, that state would travel through every piece.)
fn parse_textgrid(path: &Path, bytes: &[u8], tier_name: Option<&str>) -> Result<Stimulus> {
    let text = decode_text(path, bytes)?;
    if !text.contains("ooTextFile") || !text.contains("TextGrid") {
        return Err(Error::at_line(path, 1, "not a Praat TextGrid: expected 'File type = \"ooTextFile\"' and 'Object class = \"TextGrid\"'"));
    }
    let mut tiers: Vec<Tier> = Vec::new();
    let mut file_xmax = None;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((no, line)) = lines.next() {
        let l = line.trim();
        if l.starts_with("item [") && l.ends_with(':') && l != "item []:" {
            tiers.push(Tier::default());
            continue;
        }
        let Some((key, value)) = l.split_once('=') else {
            if l.starts_with("intervals [") || l.starts_with("points [") {
                if let Some(t) = tiers.last_mut() {
                    t.intervals.push(Interval {
                        line: no,
                        xmin: None,
                        xmax: None,
                        text: None,
                    });
                }
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let in_interval = tiers.last().is_some_and(|t| !t.intervals.is_empty());
        match key {
            "class" | "name" if !in_interval => {
                let v = unquote(path, no, value, &mut lines)?;
                if let Some(t) = tiers.last_mut() {
                    if key == "class" {
                        t.class = v
                    } else {
                        t.name = v
                    }
                }
            }
            "intervals: size" | "points: size" => {
                let n: usize = value.parse().map_err(|_| {
                    let value = cut(value, 80);
                    Error::at_line(path, no, format!("{key} = '{value}' is not a count"))
                })?;
                if let Some(t) = tiers.last_mut() {
                    t.declared = Some(n);
                }
            }
            "xmin" | "xmax" | "number" => {
                let v: f64 = value.parse().map_err(|_| {
                    let value = cut(value, 80);
                    Error::at_line(path, no, format!("{key} = '{value}' is not a number"))
                })?;
                match tiers.last_mut() {
                    None if key == "xmax" => file_xmax = Some(v),
                    None => {}
                    Some(t) => match t.intervals.last_mut() {
                        Some(iv) if key == "xmax" => iv.xmax = Some(v),
                        Some(iv) => iv.xmin = Some(v),
                        None if key == "xmax" => t.xmax = Some(v),
                        None => {}
                    },
                }
            }
            "text" | "mark" => {
                let v = unquote(path, no, value, &mut lines)?;
                if let Some(iv) = tiers.last_mut().and_then(|t| t.intervals.last_mut()) {
                    iv.text = Some(v);
                }
            }
            _ => {}
        }
    }
    if tiers.is_empty() {
        return Err(Error::format(path, "no tiers found; only the long text form of TextGrid is read (in Praat: Save as text file)"));
    }
    let names = || {
        tiers
            .iter()
            .map(|t| format!("'{}' ({})", t.name, t.class))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tier = match tier_name {
        Some(name) => tiers.iter().find(|t| t.name == name).ok_or_else(|| {
            Error::format(path, format!("no tier named '{name}'; tiers: {}", names()))
        })?,
        None => tiers
            .iter()
            .find(|t| t.class == "IntervalTier")
            .ok_or_else(|| {
                Error::format(
                    path,
                    format!("no interval tier holding words; tiers: {}", names()),
                )
            })?,
    };
    if tier.class != "IntervalTier" {
        return Err(Error::format(
            path,
            format!(
                "tier '{}' is a {}, not an IntervalTier",
                tier.name, tier.class
            ),
        ));
    }
    check_count(path, tier)?;
    let mut words = Vec::new();
    for iv in &tier.intervals {
        let (Some(onset), Some(offset), Some(text)) = (iv.xmin, iv.xmax, &iv.text) else {
            return Err(Error::at_line(
                path,
                iv.line,
                "interval without xmin, xmax and text",
            ));
        };
        if !is_silence(text) {
            words.push((
                iv.line,
                Word {
                    text: text.trim().to_string(),
                    onset,
                    offset,
                },
            ));
        }
    }
    let stimulus = finish(path, words, file_xmax)?;
    check_end(path, tier, file_xmax)?;
    Ok(stimulus)
}

/// The intervals read against `intervals: size = N`: a file cut short (or two files
/// pasted together) would otherwise pass as a shorter story.
fn check_count(path: &Path, tier: &Tier) -> Result<()> {
    match tier.declared {
        Some(n) if n != tier.intervals.len() => Err(Error::format(
            path,
            format!(
                "tier '{}' declares {n} intervals but holds {} (file cut short?)",
                cut(&tier.name, 80),
                tier.intervals.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// The last interval's end against the tier's and the file's declared `xmax`: interval
/// tiers cover the whole recording, so they end together.
fn check_end(path: &Path, tier: &Tier, file_xmax: Option<f64>) -> Result<()> {
    let Some(last) = tier.intervals.last().and_then(|iv| iv.xmax) else {
        return Ok(());
    };
    for (whose, xmax) in [("tier", tier.xmax), ("file", file_xmax)] {
        if let Some(x) = xmax.filter(|x| (x - last).abs() > END_EPS) {
            return Err(Error::format(
                path,
                format!(
                    "tier '{}': the {whose} declares xmax = {x} s but its last interval ends at {last} s (file cut short?)",
                    cut(&tier.name, 80)
                ),
            ));
        }
    }
    Ok(())
}

/// The content of a `"..."` value, reading further lines while the string is open.
fn unquote<'a>(
    path: &Path,
    no: usize,
    value: &str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<String> {
    let Some(mut rest) = value.strip_prefix('"').map(str::to_string) else {
        return Err(Error::at_line(
            path,
            no,
            format!("expected a quoted string, found '{}'", cut(value, 80)),
        ));
    };
    loop {
        // The string closes at a quote not followed by another quote.
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push('"');
                } else {
                    return Ok(out);
                }
            } else {
                out.push(c);
            }
        }
        match lines.next() {
            Some((_, next)) => rest = format!("{rest}\n{next}"),
            None => return Err(Error::at_line(path, no, "quoted text is never closed")),
        }
    }
}

/// Reads a delimited table with a header row naming `word`, `onset` and `offset` (or
/// `duration`) columns; other columns are ignored.
fn parse_table(path: &Path, bytes: &[u8], delimiter: u8) -> Result<Stimulus> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(bytes);
    let header = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let find = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
    };
    let columns: Vec<&str> = header.iter().collect();
    let missing = |what: &str| {
        Error::at_line(
            path,
            1,
            cut(
                &format!("missing column {what}; the header has {columns:?}"),
                200,
            ),
        )
    };
    let word_col = find(&["word"]).ok_or_else(|| missing("'word'"))?;
    let onset_col = find(&["onset"]).ok_or_else(|| missing("'onset'"))?;
    let end_col = match (find(&["offset"]), find(&["duration"])) {
        (Some(c), _) => (c, false),
        (None, Some(c)) => (c, true),
        (None, None) => return Err(missing("'offset' (or 'duration')")),
    };
    let mut words = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let no = record.position().map_or(0, |p| p.line() as usize);
        let field = |c: usize, name: &str| {
            record.get(c).ok_or_else(|| {
                Error::at_line(
                    path,
                    no,
                    format!("row has {} fields, no '{name}'", record.len()),
                )
            })
        };
        let time = |c: usize, name: &str| -> Result<f64> {
            let v = field(c, name)?;
            v.trim().parse::<f64>().map_err(|_| {
                let v = cut(v, 80);
                Error::at_line(path, no, format!("{name} '{v}' is not a number of seconds"))
            })
        };
        let text = field(word_col, "word")?;
        if is_silence(text) {
            continue;
        }
        let onset = time(onset_col, "onset")?;
        let end = time(end_col.0, if end_col.1 { "duration" } else { "offset" })?;
        let offset = if end_col.1 { onset + end } else { end };
        words.push((
            no,
            Word {
                text: text.trim().to_string(),
                onset,
                offset,
            },
        ));
    }
    finish(path, words, None)
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    match e.position() {
        Some(p) => Error::at_line(path, p.line() as usize, e.to_string()),
        None => Error::format(path, e.to_string()),
    }
}

/// Checks times (finite, offset ≥ onset, onsets increasing, no overlap) and builds the stimulus.
fn finish(path: &Path, words: Vec<(usize, Word)>, end: Option<f64>) -> Result<Stimulus> {
    let mut prev: Option<&Word> = None;
    for (no, w) in &words {
        let at = |msg: String| Err(Error::at_line(path, *no, msg));
        if !(w.onset.is_finite() && w.offset.is_finite()) {
            return at(format!("word '{}' has non-finite times", cut(&w.text, 80)));
        }
        if w.offset < w.onset {
            return at(format!(
                "word '{}' ends ({}) before it starts ({})",
                cut(&w.text, 80),
                w.offset,
                w.onset
            ));
        }
        if let Some(p) = prev {
            if w.onset < p.onset {
                return at(format!(
                    "onset {} of '{}' is earlier than the previous onset {} (times must increase)",
                    w.onset,
                    cut(&w.text, 80),
                    p.onset
                ));
            }
            if w.onset < p.offset - TIME_EPS {
                return at(format!(
                    "word '{}' starts at {} before the previous word '{}' ends at {} (overlap)",
                    cut(&w.text, 80),
                    w.onset,
                    cut(&p.text, 80),
                    p.offset
                ));
            }
        }
        prev = Some(w);
    }
    if words.is_empty() {
        return Err(Error::format(
            path,
            "no words (only silence markers or no rows)",
        ));
    }
    let words: Vec<Word> = words.into_iter().map(|(_, w)| w).collect();
    let last = words.last().map_or(0.0, |w| w.offset);
    Ok(Stimulus {
        path: path.to_path_buf(),
        end: end.unwrap_or(last).max(last),
        words,
    })
}

/// Writes words as BIDS events (`onset`, `duration`, `trial_type` = word, `word`),
/// atomically: the form of a run's `…_events.tsv`.
pub fn write_events(path: &Path, words: &[Word]) -> Result<()> {
    super::atomic::write_file_atomically(path, |out| {
        writeln!(out, "onset\tduration\ttrial_type\tword")?;
        for w in words {
            let text = w.text.replace(['\t', '\n'], " ");
            writeln!(out, "{}\t{}\tword\t{text}", w.onset, w.offset - w.onset)?;
        }
        Ok(())
    })
}

/// Writes words as a TSV table (`word`, `onset`, `offset`), atomically.
pub fn write_tsv(path: &Path, words: &[Word]) -> Result<()> {
    super::atomic::write_file_atomically(path, |out| {
        writeln!(out, "word\tonset\toffset")?;
        for w in words {
            writeln!(
                out,
                "{}\t{}\t{}",
                w.text.replace(['\t', '\n'], " "),
                w.onset,
                w.offset
            )?;
        }
        Ok(())
    })
}
