//! Named tensors in safetensors files, as the parity fixtures and `popalign run-module` exchange them.
//! f64 stays f64 (for float64 reference fixtures), other floats come back as f32, integers as i64.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::load::LoadError;

/// Reads every tensor of a safetensors file.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, TensorData>, LoadError> {
    if !path.exists() {
        return Err(LoadError::Missing {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    tensors_from_bytes(path, &bytes)
}

/// Every tensor of a safetensors file already in memory; `path` names it in errors.
pub fn tensors_from_bytes(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, TensorData>, LoadError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| LoadError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => TensorData::new(decode(raw, f32::from_le_bytes), shape),
            Dtype::F64 => TensorData::new(decode(raw, f64::from_le_bytes), shape),
            Dtype::F16 => TensorData::new(
                decode(raw, |b: [u8; 2]| half::f16::from_le_bytes(b).to_f32()),
                shape,
            ),
            Dtype::BF16 => TensorData::new(
                decode(raw, |b: [u8; 2]| half::bf16::from_le_bytes(b).to_f32()),
                shape,
            ),
            Dtype::I64 => TensorData::new(decode(raw, i64::from_le_bytes), shape),
            Dtype::I32 => TensorData::new(
                decode(raw, |b: [u8; 4]| i32::from_le_bytes(b) as i64),
                shape,
            ),
            other => {
                return Err(LoadError::Tensor {
                    path: path.to_path_buf(),
                    key: name,
                    message: format!("unsupported dtype {other:?}"),
                });
            }
        };
        out.insert(name, data);
    }
    Ok(out)
}

fn decode<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("exact chunk")))
        .collect()
}

/// Writes f32 tensors to a safetensors file (through a temporary name, then renamed).
pub fn write_tensors(path: &Path, tensors: &BTreeMap<String, TensorData>) -> Result<(), String> {
    let serialized = tensors_to_bytes(tensors, None)?;
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, serialized).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// f32 tensors (and optional string metadata) → the bytes of a safetensors file.
pub fn tensors_to_bytes(
    tensors: &BTreeMap<String, TensorData>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
    let mut buffers = Vec::new();
    for (name, data) in tensors {
        let data = data.clone().convert_dtype(DType::F32);
        let values = data.to_vec::<f32>().map_err(|e| format!("{name}: {e:?}"))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.push((name.clone(), data.shape.to_vec(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    safetensors::serialize(views, metadata).map_err(|e| e.to_string())
}
