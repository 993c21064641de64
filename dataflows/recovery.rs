//! `cortexflow recovery`: how well a store recovered what `simulate` planted.

use std::path::PathBuf;

use cortexflow::stages::recovery;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store (or an analysis holding group/ and map/).
    pub store: PathBuf,
    /// The simulated dataset (holding truth/planted.json).
    #[arg(long)]
    pub data: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let scores = recovery::score(&a.data, &a.store)?;
    let wrong = recovery::false_assignments(&a.data, &a.store)?;
    for s in &scores {
        say!("{}", s.line());
        s.layer_lines().iter().for_each(|l| say!("  {l}"));
    }
    for (atom, fbn) in &wrong {
        say!("atom {atom}: assigned to {fbn}, where nothing was planted");
    }
    let assigned = scores.iter().filter(|s| !s.atoms.is_empty()).count();
    let recovered = scores.iter().filter(|s| s.recovered()).count();
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    say!(
        "summary: {assigned} of {} planted networks assigned, {recovered} recovered (Dice ≥ {}), mean best Dice {:.3}, {} false assignments, mean sub-group F1 {:.3}, mean AN F1 {:.3}, min AN F1 {:.3}",
        scores.len(),
        recovery::RECOVERED_DICE,
        mean(scores.iter().map(|s| s.best.map_or(0.0, |b| b.1)).collect()),
        wrong.len(),
        mean(scores.iter().map(|s| s.f1).collect()),
        mean(scores.iter().map(|s| s.tied_f1).collect()),
        scores.iter().map(|s| s.tied_f1).fold(f64::INFINITY, f64::min),
    );
    Ok(())
}
