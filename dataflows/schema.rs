//! `cortexflow schema`: the columns of the output tables.

use cortexflow::io::schema;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Table name: activations, neurons, responses, atoms, codes, voxel_fits, atom_fbn,
    /// subgroups, metrics, planted_timecourses.
    pub table: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let names: Vec<&str> = match &a.table {
        Some(t) => vec![t.as_str()],
        None => schema::TABLES.iter().map(|(n, _)| *n).collect(),
    };
    for n in names {
        let t = schema::table(n)?;
        say!("{}: {}", t.name, t.doc);
        for c in &t.columns {
            let size = c.size.as_ref().map(|s| format!("[{s}]")).unwrap_or_default();
            let null = if c.nullable { ", nullable" } else { "" };
            say!("  {:<14} {}{size}{null}  {}", c.name, c.ty, c.doc);
        }
    }
    Ok(())
}
