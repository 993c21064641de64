//! `gather`: a collection's updates brought to worker 0 and accumulated there, so the one
//! writer of the analysis store sees the current contents whatever the number of workers
//! and processes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::VecCollection;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Exchange, Inspect, Probe};

/// The contents gathered at worker 0 (empty on the other workers).
pub struct Gathered<D> {
    counts: Rc<RefCell<BTreeMap<D, isize>>>,
}

impl<D: Ord + Clone> Gathered<D> {
    /// Records present now (count > 0), in order.
    pub fn current(&self) -> Vec<D> {
        self.counts
            .borrow()
            .iter()
            .filter(|(_, &c)| c > 0)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// The current records, leaving the accumulation empty.
    pub fn take(&self) -> Vec<D> {
        let out = self.current();
        self.counts.borrow_mut().clear();
        out
    }
}

/// Extension trait: gather a collection at worker 0.
pub trait Gather<D> {
    /// Sends every update to worker 0, which accumulates them; the probe tells when a time
    /// is complete there.
    fn gather(self) -> (Gathered<D>, Handle<u64>);
}

impl<D> Gather<D> for VecCollection<'_, u64, D>
where
    D: timely::ExchangeData + Ord + Clone,
{
    fn gather(self) -> (Gathered<D>, Handle<u64>) {
        let counts = Rc::new(RefCell::new(BTreeMap::new()));
        let c = counts.clone();
        let probe = self
            .inner
            .exchange(|_| 0)
            .inspect(move |(d, _t, r): &(D, u64, isize)| {
                let mut counts = c.borrow_mut();
                let entry = counts.entry(d.clone()).or_insert(0);
                *entry += r;
                if *entry == 0 {
                    counts.remove(d);
                }
            })
            .probe();
        (Gathered { counts }, probe.0)
    }
}
