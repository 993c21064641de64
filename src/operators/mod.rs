//! Thin timely/differential operators over the kernels, one per file. The streaming
//! engine is tracked by issue 7.
