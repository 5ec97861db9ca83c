pub mod generate;
pub mod run_module;
pub mod schedule;
pub mod tokenize;
