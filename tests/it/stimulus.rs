//! TextGrid and table parsing against an independent reference parser and the LPP word
//! table, and bad input.

use std::path::Path;

use cortexflow::io::stimulus::{read_stimulus, Word};

use super::common::{fixture_json, fixtures, test_data};

fn section(k: usize) -> Vec<Word> {
    read_stimulus(
        &test_data().join(format!("stimuli/lpp-en/lppEN_section{k}.TextGrid")),
        Some("TokensAlign"),
    )
    .unwrap()
    .words
}

/// All nine TextGrids (UTF-8 and UTF-16) parse to exactly the words and times of the
/// reference regex parser in scripts/fixtures (count, first and last word, time sums to
/// 1e-9 s — the same decimal strings parsed by two float parsers).
#[test]
fn lpp_textgrids_match_the_reference_parse() {
    for r in fixture_json("lpp_textgrid_reference.json")
        .as_array()
        .unwrap()
    {
        let k = r["section"].as_u64().unwrap() as usize;
        let words = section(k);
        assert_eq!(
            words.len() as u64,
            r["n_words"].as_u64().unwrap(),
            "section {k}"
        );
        let first = &words[0];
        let last = &words[words.len() - 1];
        assert_eq!(first.text, r["first"][0].as_str().unwrap(), "section {k}");
        assert_eq!(last.text, r["last"][0].as_str().unwrap(), "section {k}");
        let on: f64 = words.iter().map(|w| w.onset).sum();
        let off: f64 = words.iter().map(|w| w.offset).sum();
        assert!(
            (on - r["sum_onset"].as_f64().unwrap()).abs() < 1e-9,
            "section {k}"
        );
        assert!(
            (off - r["sum_offset"].as_f64().unwrap()).abs() < 1e-9,
            "section {k}"
        );
    }
}

/// lppEN_word_information.csv is a later, edited alignment of the same audio. Matching its
/// rows to our parse by time (onset and offset within 1 ms, as the CSV rounds to 1 ms), the
/// words and times agree for 14,682 of 15,376 rows; the 694 others (numbers written as
/// digits, contractions split differently, re-timed passages, "TRUE" from a spreadsheet)
/// are listed in tests/data/fixtures/lpp_csv_differences.tsv, and this test reproduces that
/// list exactly.
#[test]
fn lpp_textgrids_agree_with_the_word_table_except_the_listed_edits() {
    let csv_path = test_data().join("stimuli/lpp-en/lppEN_word_information.csv");
    let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let mut diffs = vec!["section\tcsv_row\tcsv_word\ttextgrid_word\tkind".to_string()];
    let mut same = 0;
    for k in 1..=9 {
        let words = section(k);
        for row in rows.iter().filter(|r| r[7] == *k.to_string()) {
            let (on, off): (f64, f64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
            let i = words.partition_point(|w| w.onset < on - 1e-3);
            match words.get(i) {
                Some(w) if (w.onset - on).abs() <= 1e-3 && (w.offset - off).abs() <= 1e-3 => {
                    if w.text.to_lowercase() == row[1].to_lowercase() {
                        same += 1;
                    } else {
                        diffs.push(format!("{k}\t{}\t{}\t{}\ttext", &row[0], &row[1], w.text));
                    }
                }
                _ => diffs.push(format!("{k}\t{}\t{}\t\ttime", &row[0], &row[1])),
            }
        }
    }
    let expected = std::fs::read_to_string(fixtures().join("lpp_csv_differences.tsv")).unwrap();
    let got = diffs.join("\n") + "\n";
    assert_eq!(rows.len(), 15_376);
    assert_eq!(same, 14_683);
    assert_eq!(got, expected);
}

#[test]
fn tables_read_offsets_or_durations_and_skip_silence() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("words.csv");
    std::fs::write(
        &p,
        "onset,word,duration,extra\n0.5,hello,0.25,x\n0.8,#,0.1,x\n1.0,\"big, world\",0.5,y\n",
    )
    .unwrap();
    let s = read_stimulus(&p, None).unwrap();
    assert_eq!(
        s.words,
        vec![
            Word {
                text: "hello".into(),
                onset: 0.5,
                offset: 0.75
            },
            Word {
                text: "big, world".into(),
                onset: 1.0,
                offset: 1.5
            }
        ]
    );
    let p = dir.path().join("words.tsv");
    std::fs::write(
        &p,
        "word\tonset\toffset\nsp\t0\t0.2\na\t0.2\t0.4\nb\t0.4\t0.9\n",
    )
    .unwrap();
    assert_eq!(read_stimulus(&p, None).unwrap().words.len(), 2);
}

mod bad_input {
    use super::*;

    fn error(name: &str, content: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let e = read_stimulus(&p, None).expect_err("bad input").to_string();
        assert!(
            e.starts_with(&p.display().to_string()),
            "names the file: {e}"
        );
        e
    }

    #[test]
    fn table_errors_name_file_and_line() {
        assert!(error("a.tsv", "word\tonset\nx\t1\n").contains(":1: missing column 'offset'"));
        assert!(error("a.tsv", "text\tonset\toffset\n").contains(":1: missing column 'word'"));
        assert!(error("a.tsv", "word\tonset\toffset\na\t0\t1\nb\tsoon\t2\n")
            .contains(":3: onset 'soon' is not a number"));
        assert!(
            error("a.tsv", "word\tonset\toffset\na\t1\t2\nb\t0.5\t0.7\n").contains(":3: onset 0.5")
        );
        assert!(
            error("a.tsv", "word\tonset\toffset\na\t1\t2\nb\t1.5\t2.5\n").contains(
                ":3: word 'b' starts at 1.5 before the previous word 'a' ends at 2 (overlap)"
            )
        );
        assert!(error("a.tsv", "word\tonset\toffset\na\t1\t0.5\n").contains(":2: word 'a' ends"));
        assert!(error("a.csv", "word,onset,offset\n#,0,1\n").contains("no words"));
        assert!(error("a.wav", "RIFF").contains("unknown stimulus extension"));
    }

    #[test]
    fn textgrid_errors() {
        let head = "File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\nxmin = 0\nxmax = 3\ntiers? <exists>\nsize = 1\nitem []:\n";
        let points = format!("{head}    item [1]:\n        class = \"TextTier\"\n        name = \"events\"\n        xmin = 0\n        xmax = 3\n        points: size = 1\n        points [1]:\n            number = 1.5\n            mark = \"beep\"\n");
        assert!(error("a.TextGrid", &points)
            .contains("no interval tier holding words; tiers: 'events' (TextTier)"));
        let bad_time = format!("{head}    item [1]:\n        class = \"IntervalTier\"\n        name = \"words\"\n        xmin = 0\n        xmax = 3\n        intervals: size = 1\n        intervals [1]:\n            xmin = zero\n            xmax = 1\n            text = \"a\"\n");
        assert!(error("a.TextGrid", &bad_time).contains(":16: xmin = 'zero' is not a number"));
        assert!(error("a.TextGrid", "just some text\n").contains("not a Praat TextGrid"));
        let unclosed = format!("{head}    item [1]:\n        class = \"IntervalTier\"\n        name = \"words\"\n        intervals [1]:\n            xmin = 0\n            xmax = 1\n            text = \"a\n");
        assert!(error("a.TextGrid", &unclosed).contains("never closed"));
        let overlap = format!("{head}    item [1]:\n        class = \"IntervalTier\"\n        name = \"w\"\n        intervals [1]:\n            xmin = 0\n            xmax = 1\n            text = \"a\"\n        intervals [2]:\n            xmin = 0.5\n            xmax = 2\n            text = \"b\"\n");
        assert!(error("a.TextGrid", &overlap).contains("(overlap)"));
    }

    #[test]
    fn a_missing_tier_name_lists_the_tiers() {
        let p = test_data().join("stimuli/lpp-en/lppEN_section1.TextGrid");
        let e = read_stimulus(&p, Some("words")).unwrap_err().to_string();
        assert!(
            e.contains("no tier named 'words'; tiers: 'TokensAlign' (IntervalTier)"),
            "{e}"
        );
        assert!(read_stimulus(Path::new("/nonexistent/x.TextGrid"), None)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/x.TextGrid"));
    }

    /// A TextGrid cut in half at an interval boundary parses line by line: only the count
    /// it declares (and the end it declares) show that words are missing.
    #[test]
    fn a_textgrid_cut_short_is_an_error() {
        let src = test_data().join("stimuli/lpp-en/lppEN_section1.TextGrid");
        let text = std::fs::read_to_string(&src).unwrap();
        let starts: Vec<usize> = text.match_indices("intervals [").map(|(i, _)| i).collect();
        let half = &text[..starts[starts.len() / 2]];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("half.TextGrid");
        std::fs::write(&p, half).unwrap();
        let e = read_stimulus(&p, None).unwrap_err().to_string();
        let declared = starts.len();
        assert!(
            e.contains("half.TextGrid")
                && e.contains(&format!(
                    "tier 'TokensAlign' declares {declared} intervals but holds {}",
                    starts.len() / 2
                )),
            "{e}"
        );
        // With the count mended, the declared end still says the file was cut.
        let mended = half.replace(
            &format!("intervals: size = {declared}"),
            &format!("intervals: size = {}", starts.len() / 2),
        );
        std::fs::write(&p, mended).unwrap();
        let e = read_stimulus(&p, None).unwrap_err().to_string();
        assert!(
            e.contains("half.TextGrid: tier 'TokensAlign': the tier declares xmax ="),
            "{e}"
        );
    }
}
