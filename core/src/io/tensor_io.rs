//! Named tensors in safetensors files, as the parity fixtures and `popalign run-module` exchange them.
//! f64 stays f64 (for float64 reference fixtures), other floats come back as f32, integers as i64.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::io::load::LoadError;

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
    write_tensors_with_metadata(path, tensors, None)
}

/// [`write_tensors`] with string metadata in the header (written with its keys sorted).
pub fn write_tensors_with_metadata(
    path: &Path,
    tensors: &BTreeMap<String, TensorData>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), String> {
    let serialized = tensors_to_bytes(tensors, metadata)?;
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
    let bytes = safetensors::serialize(views, None).map_err(|e| e.to_string())?;
    Ok(match metadata {
        Some(metadata) => with_sorted_metadata(bytes, metadata),
        None => bytes,
    })
}

/// Adds `__metadata__` to a serialised file's header with its keys sorted. safetensors writes metadata from
/// a hash map, in a different order each run; sorted, equal tensors and metadata give equal bytes (a
/// resumed run must end with the uninterrupted run's files).
fn with_sorted_metadata(
    bytes: Vec<u8>,
    metadata: std::collections::HashMap<String, String>,
) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length")) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).expect("safetensors writes a UTF-8 header");
    let tensors = header.trim_end().strip_prefix('{').expect("a JSON object");
    let sorted: BTreeMap<String, String> = metadata.into_iter().collect();
    let meta = serde_json::to_string(&sorted).expect("strings serialise");
    let separator = if tensors == "}" { "" } else { "," };
    let mut text = format!("{{\"__metadata__\":{meta}{separator}{tensors}");
    // The data must start at a multiple of 8 bytes; safetensors pads headers with spaces.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_written_sorted_and_reads_back() {
        let tensors = BTreeMap::from([
            ("b".to_string(), TensorData::new(vec![1.0f32, 2.0], [2])),
            ("a".to_string(), TensorData::new(vec![3.0f32], [0usize; 0])),
        ]);
        let metadata = || (0..6).map(|i| (format!("key{i}"), i.to_string())).collect();
        let (first, second) = (
            tensors_to_bytes(&tensors, Some(metadata())).unwrap(),
            tensors_to_bytes(&tensors, Some(metadata())).unwrap(),
        );
        assert_eq!(first, second, "same tensors and metadata, same bytes");
        let (_, read) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(read.metadata().clone(), Some(metadata()));
        assert_eq!(tensors_from_bytes(Path::new("t"), &first).unwrap(), tensors);
        let empty = tensors_to_bytes(&BTreeMap::new(), Some(metadata())).unwrap();
        safetensors::SafeTensors::deserialize(&empty).unwrap();
    }
}
