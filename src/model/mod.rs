//! Language models with artificial-neuron taps (BERT, Llama, GGUF), one file per family.
//! The model stage is tracked by issue 3; until it lands the simulator plants signals
//! from a synthetic AN population (see `cortexflow simulate --help`).
