//! The on-disk schemas the front ends share.

pub mod report;
