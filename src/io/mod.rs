//! Readers and writers: leaves of the dependency graph, no numerics beyond decoding.

pub mod affine;
pub mod atlas;
pub mod bids;
pub mod nifti;
pub mod parquet;
pub mod schema;
pub mod stimulus;
pub mod atomic;
pub mod embedded;
pub mod inspect;
pub mod name;
