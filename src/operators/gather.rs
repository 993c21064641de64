//! `gather`: a collection's updates brought to worker 0 and accumulated there, so the one
//! writer of the analysis store sees the current contents whatever the number of workers
//! and processes.

use std::cell::RefCell;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::rc::Rc;

use differential_dataflow::VecCollection;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Operator, Probe};

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

    /// The current records, leaving the accumulation empty (moved out, not copied: a
    /// whole-brain subject's fit is ~360 MB).
    pub fn take(&self) -> Vec<D> {
        let counts = std::mem::take(&mut *self.counts.borrow_mut());
        counts.into_iter().filter(|(_, c)| *c > 0).map(|(d, _)| d).collect()
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
        // An operator that takes the records (moved into the accumulation, not cloned
        // from a reference as `inspect` would) and sends nothing on: its output's frontier
        // tells the probe when worker 0 has taken every record of a time.
        let probe = self
            .inner
            .unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(Exchange::new(|_: &(D, u64, isize)| 0), "Gather", move |_, _| {
                move |input, _output| {
                    input.for_each_stamp(|_, data| {
                        let mut counts = c.borrow_mut();
                        for (d, _t, r) in data.flat_map(|batch| batch.drain(..)) {
                            match counts.entry(d) {
                                Entry::Occupied(mut e) => {
                                    *e.get_mut() += r;
                                    if *e.get() == 0 {
                                        e.remove();
                                    }
                                }
                                Entry::Vacant(e) if r != 0 => {
                                    e.insert(r);
                                }
                                Entry::Vacant(_) => {}
                            }
                        }
                    });
                }
            })
            .probe();
        (Gathered { counts }, probe.0)
    }
}
