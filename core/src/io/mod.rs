//! Reading model folders and safetensors files (through burn-store), and writing safetensors atomically.

pub mod load;
pub mod tensor_io;
