//! Pure numerics: no I/O, no dataflow, no model code. Each kernel documents its formula
//! and the reference it is tested against.

pub mod cluster;
pub mod courses;
pub mod cv;
pub mod design;
pub mod dictionary;
pub mod estimators;
pub mod fdr;
pub mod glm;
pub mod group;
pub mod hrf;
pub mod isc;
pub mod ipca;
pub mod lasso;
pub mod masks;
pub mod parcels;
pub mod noise;
pub mod organisation;
pub mod overlap;
pub mod permutation;
pub mod ridge_stats;
pub mod smooth;
pub mod surrogates;
pub mod tdist;
