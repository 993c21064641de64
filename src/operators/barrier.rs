//! `agree`, `least` and `total`: a barrier at which every worker says whether its part went well, and all learn
//! whether every part did. Workers that build later dataflows only when all agree cannot
//! leave a peer waiting on a dataflow that one of them never built.

use std::cell::Cell;
use std::rc::Rc;

use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::worker::Worker;

/// Waits for every worker's `ok` and returns whether all were true.
///
/// ```
/// let all = timely::execute(timely::Config::process(2), |worker| {
///     let ok = worker.index() == 0;
///     cortexflow::operators::agree(worker, ok)
/// })
/// .unwrap()
/// .join();
/// assert!(all.into_iter().all(|a| a == Ok(false)));
/// ```
pub fn agree(worker: &mut Worker, ok: bool) -> bool {
    least(worker, ok as u64) == 1
}

/// Waits for every worker's `value` and returns the least of them (0 if a worker's value
/// did not arrive): how workers that may be configured apart (each process its own
/// `--memory-limit`) settle on one setting.
///
/// ```
/// let least = timely::execute(timely::Config::process(3), |worker| {
///     let value = 10 + worker.index() as u64;
///     cortexflow::operators::least(worker, value)
/// })
/// .unwrap()
/// .join();
/// assert!(least.into_iter().all(|l| l == Ok(10)));
/// ```
pub fn least(worker: &mut Worker, value: u64) -> u64 {
    all_reduce(worker, value, u64::MAX, u64::min)
}

/// Waits for every worker's `value` and returns their sum (0 if a worker's value did not
/// arrive): what every process counted, in every process.
///
/// ```
/// let total = timely::execute(timely::Config::process(3), |worker| {
///     cortexflow::operators::total(worker, worker.index() as u64 + 1)
/// })
/// .unwrap()
/// .join();
/// assert!(total.into_iter().all(|t| t == Ok(6)));
/// ```
pub fn total(worker: &mut Worker, value: u64) -> u64 {
    all_reduce(worker, value, 0, u64::saturating_add)
}

/// Every worker's `value` folded by `f` from `start`, in every worker; 0 unless every
/// worker's arrived.
fn all_reduce(worker: &mut Worker, value: u64, start: u64, f: fn(u64, u64) -> u64) -> u64 {
    let seen = Rc::new(Cell::new((0usize, start)));
    let s = seen.clone();
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Vec<u64>>();
        let (probe, _) = stream
            .broadcast()
            .inspect(move |&v| {
                let (count, acc) = s.get();
                s.set((count + 1, f(acc, v)));
            })
            .probe();
        (input, probe)
    });
    input.send(value);
    input.close();
    // Parks between steps (timely's `step_while` never does), so a worker that waits on
    // its peers leaves its core to them instead of spinning.
    worker.step_or_park_while(None, || !probe.done());
    match seen.get() {
        (count, acc) if count == worker.peers() => acc,
        _ => 0,
    }
}

