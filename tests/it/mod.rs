mod cli;
mod common;
mod hrf;
mod models;
mod nifti;
mod parquet;
mod simulate;
mod stimulus;
