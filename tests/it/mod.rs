mod cli;
mod common;
mod hrf;
mod nifti;
mod parquet;
mod simulate;
mod stimulus;
