//! The cluster options of the computing commands (timely's own `-w/-n/-p/-h`).

use std::path::PathBuf;
use std::time::Duration;

use cortexflow::engine::budget;
use cortexflow::engine::cluster::Cluster;

/// Workers and processes. Every process runs the same command on the same store (or, with
/// --local-inputs, on its own inputs); worker 0 of process 0 writes the results. (`-h` is the hostfile here: help is `--help`.)
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Worker threads per process [default: this machine's cores, shared among the
    /// processes of -n that run on it].
    #[arg(short = 'w', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Option<u32>,
    /// Number of processes.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub processes: u32,
    /// This process's index (0-based, below --processes).
    #[arg(short = 'p', long, default_value_t = 0)]
    pub process: u32,
    /// Hostfile: one host:port per line, process i listening on line i+1 [default:
    /// 127.0.0.1:2101+i].
    #[arg(short = 'h', long, value_name = "FILE")]
    pub hostfile: Option<PathBuf>,
    /// Seconds to wait for the other processes before saying which do not answer.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub connect_timeout: u64,
    /// Memory this process may use for an update (e.g. 4G, 800M, 2GiB): sets how many
    /// subjects are fitted at once; an update that cannot fit is refused before any work
    /// [default: half the machine's memory].
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// No shared file system: each process gives only the runs on its own disks (--bold,
    /// --bids, --data), process 0 alone holds the store; the store's recipe, mask and
    /// atoms travel to the others, and their runs' statistics back, in the dataflow.
    #[arg(long)]
    pub local_inputs: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

impl ClusterArgs {
    pub fn cluster(&self) -> anyhow::Result<Cluster> {
        // Each worker is a thread and each process a connection: a typo such as
        // -w 1000000 would exhaust the machine before any work.
        const MOST: u32 = 1024;
        let workers = self.workers.unwrap_or(1);
        if workers > MOST || self.processes > MOST {
            anyhow::bail!(
                "-w {workers} / -n {}: at most {MOST} workers per process and {MOST} processes",
                self.processes
            );
        }
        if self.process >= self.processes {
            anyhow::bail!(
                "-p {}: the process index must be below -n {}",
                self.process,
                self.processes
            );
        }
        let mut cluster = Cluster {
            workers: workers as usize,
            processes: self.processes as usize,
            process: self.process as usize,
            hostfile: self.hostfile.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout),
            memory_limit: match &self.memory_limit {
                Some(text) => budget::parse_size(text)?,
                None => budget::default_limit(),
            },
            local_inputs: self.local_inputs,
            command: String::new(),
        };
        if self.workers.is_none() {
            cluster.workers = cluster.workers_for_cores()?;
        }
        Ok(cluster)
    }
}
