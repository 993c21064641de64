//! `share` and `send_to_first`: values handed between workers outside the fitting
//! dataflow — what a cluster without a shared file system sends instead of files (the
//! store's recipe, mask and atoms to the other processes, their runs' statistics back to
//! the writer).

use std::cell::RefCell;
use std::rc::Rc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Input, Operator, Probe};
use timely::container::CapacityContainerBuilder;
use timely::worker::Worker;
use timely::ExchangeData;

/// Every worker's `values`, at every worker: (worker index, value), in worker order (each
/// worker's values in the order it gave them).
///
/// ```
/// let got = timely::execute(timely::Config::process(2), |worker| {
///     let mine = vec![worker.index() * 10];
///     cortexflow::operators::share(worker, mine)
/// })
/// .unwrap()
/// .join();
/// assert!(got.into_iter().all(|g| g.unwrap() == vec![(0, 0), (1, 10)]));
/// ```
pub fn share<T: ExchangeData + Clone>(worker: &mut Worker, values: Vec<T>) -> Vec<(usize, T)> {
    collect(worker, values, true)
}

/// Every worker's `values` at worker 0 (in worker order); nothing elsewhere. Each value
/// crosses the network once, to worker 0 only.
///
/// ```
/// let got = timely::execute(timely::Config::process(3), |worker| {
///     let mine = vec![format!("w{}", worker.index())];
///     cortexflow::operators::send_to_first(worker, mine)
/// })
/// .unwrap()
/// .join();
/// let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
/// assert_eq!(got[0], vec![(0, "w0".to_string()), (1, "w1".into()), (2, "w2".into())]);
/// assert!(got[1].is_empty() && got[2].is_empty());
/// ```
pub fn send_to_first<T: ExchangeData + Clone>(worker: &mut Worker, values: Vec<T>) -> Vec<(usize, T)> {
    collect(worker, values, false)
}

fn collect<T: ExchangeData + Clone>(worker: &mut Worker, values: Vec<T>, everyone: bool) -> Vec<(usize, T)> {
    let got: Rc<RefCell<Vec<(usize, T)>>> = Rc::default();
    let sink = got.clone();
    let (index, peers) = (worker.index(), worker.peers());
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        // (worker to receive it, (worker that gave it, value)), routed by the first.
        let (input, stream) = scope.new_input::<Vec<(usize, (usize, T))>>();
        // Records are moved into the sink, not cloned as `inspect` would (a run's
        // statistics are tens of MB).
        let done = stream.unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Exchange::new(|(to, _): &(usize, (usize, T))| *to as u64),
            "Share",
            move |_, _| {
                move |input, _output| {
                    input.for_each_stamp(|_, data| {
                        let mut sink = sink.borrow_mut();
                        for batch in data {
                            sink.extend(batch.drain(..).map(|(_, v)| v));
                        }
                    });
                }
            },
        );
        (input, done.probe().0)
    });
    // `share` copies what it gives to every worker: it is meant for small values.
    for value in values {
        match everyone {
            true => (0..peers).for_each(|to| input.send((to, (index, value.clone())))),
            false => input.send((0, (index, value))),
        }
    }
    input.close();
    worker.step_or_park_while(None, || !probe.done());
    let mut got = std::mem::take(&mut *got.borrow_mut());
    // Stable: each worker's values keep their order.
    got.sort_by_key(|(w, _)| *w);
    got
}
