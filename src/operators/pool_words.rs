//! `pool_words`: the tokens' activation rows of stories, one story per timestamp, brought
//! to worker 0 and pooled into word activations (in token order, so the numbers do not
//! depend on which worker ran which window) once the frontier has passed the story.

use std::collections::HashMap;
use std::rc::Rc;

use ndarray::ArrayView1;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

use crate::model::extract::{Pooling, WordPooler};

/// A token's row: (token index in its story, activation of every AN column).
pub type TokenRow = (u32, Vec<f32>);

/// A story's word activations: (story index, words × columns row-major, words with no
/// token).
pub type StoryWords = (u64, Vec<f32>, usize);

/// What the operator needs to know of each story: the word of each token, the number of
/// words and of columns.
#[derive(Debug, Clone)]
pub struct StoryShape {
    pub word_of: Vec<usize>,
    pub n_words: usize,
    pub n_columns: usize,
}

/// Extension trait: pool the token rows of each story into word activations.
pub trait PoolWords<'s> {
    /// Story `s` travels at time `s`; its word activations leave worker 0 when the
    /// frontier has passed `s`.
    fn pool_words(
        self,
        stories: Rc<Vec<StoryShape>>,
        pooling: Pooling,
    ) -> Stream<'s, u64, Vec<StoryWords>>;
}

impl<'s> PoolWords<'s> for Stream<'s, u64, Vec<TokenRow>> {
    fn pool_words(
        self,
        stories: Rc<Vec<StoryShape>>,
        pooling: Pooling,
    ) -> Stream<'s, u64, Vec<StoryWords>> {
        self.unary_frontier::<CapacityContainerBuilder<Vec<StoryWords>>, _, _, _>(
            Exchange::new(|_: &TokenRow| 0),
            "PoolWords",
            move |_, _| {
                // Keyed by capability, timely's idiom for work held per time: its hash and
                // order are its time's, which never change while it is a key.
                #[allow(clippy::mutable_key_type)]
                let mut pending = HashMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        if let Some(cap) = cap.retain_least(output.output_index()) {
                            let rows: &mut Vec<TokenRow> = pending.entry(cap).or_default();
                            for batch in data {
                                rows.append(batch);
                            }
                        }
                    });
                    for (cap, rows) in pending.iter_mut() {
                        if frontier.less_equal(cap.time()) {
                            continue;
                        }
                        let shape = &stories[*cap.time() as usize];
                        rows.sort_by_key(|r| r.0);
                        let mut pooler = WordPooler::new(shape.n_words, shape.n_columns, pooling);
                        for (t, row) in rows.drain(..) {
                            pooler.add(shape.word_of[t as usize], ArrayView1::from(&row));
                        }
                        let (acts, empty) = pooler.finish();
                        output
                            .session(cap)
                            .give((*cap.time(), acts.into_iter().collect(), empty));
                    }
                    pending.retain(|_, rows| !rows.is_empty());
                }
            },
        )
    }
}
