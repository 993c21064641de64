//! `agree`: a barrier at which every worker says whether its part went well, and all learn
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
    let seen = Rc::new(Cell::new((0usize, 0usize)));
    let s = seen.clone();
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Vec<bool>>();
        let (probe, _) = stream
            .broadcast()
            .inspect(move |&b| {
                let (yes, no) = s.get();
                s.set(if b { (yes + 1, no) } else { (yes, no + 1) });
            })
            .probe();
        (input, probe)
    });
    input.send(ok);
    input.close();
    worker.step_while(|| !probe.done());
    let (yes, no) = seen.get();
    no == 0 && yes == worker.peers()
}
