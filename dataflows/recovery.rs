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
        println!("{}", s.line());
    }
    for (atom, fbn) in &wrong {
        println!("atom {atom}: assigned to {fbn}, where nothing was planted");
    }
    let assigned = scores.iter().filter(|s| !s.atoms.is_empty()).count();
    let recovered = scores.iter().filter(|s| s.recovered()).count();
    let dice: Vec<f64> = scores.iter().map(|s| s.best.map_or(0.0, |b| b.1)).collect();
    println!(
        "summary: {assigned} of {} planted networks assigned, {recovered} recovered (Dice ≥ {}), mean best Dice {:.3}, {} false assignments",
        scores.len(),
        recovery::RECOVERED_DICE,
        dice.iter().sum::<f64>() / dice.len().max(1) as f64,
        wrong.len()
    );
    Ok(())
}
