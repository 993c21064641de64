//! The streaming engine: timely/differential dataflows over the store.
//!
//! - [`cluster`]: workers and processes (timely's cluster mode);
//! - [`encoding`]: the encoding dataflow (runs → per-block fits → group tests);
//! - [`encode`]: the `encode` command's fits through the same dataflow;
//! - [`group`]: the `group` command's maps through the same group operator;
//! - [`stories`]: new stories through the recipe's model, dealt over every worker;
//! - [`update`]: one store command as one dataflow: plan, feed, gather, finish;
//! - [`cleaned`]: cleaned runs kept on disk from `run`'s reduce pass for its noise ceiling;
//! - [`many`]: several recipes' stores from one dataset, each BOLD run read once;
//! - [`watch`]: a long-lived dataflow that follows a folder;
//! - [`demo`]: the main job end to end.

pub mod budget;
pub mod cleaned;
pub mod cluster;
pub mod demo;
pub mod encode;
pub mod encoding;
pub mod group;
pub mod local_inputs;
pub mod many;
pub mod stories;
pub mod update;
pub mod watch;
pub mod waves;
