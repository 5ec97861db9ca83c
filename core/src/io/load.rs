//! Loading weights and configs from diffusers / transformers folders.
//!
//! Weights go through burn-store: `PyTorchToBurnAdapter` transposes `Linear` weights and renames norm
//! parameters, a cast adapter brings fp16/bf16 files to the model's float type, 0-dim tensors become
//! rank-1 `[1]` (burn has no rank-0 tensors), and key remappings handle the known layout variants.
//! Every tensor of the module must be found, every tensor of the file must be used, and every shape
//! must match; otherwise the error names the file, the key and both shapes.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{
    ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot,
};
use serde::de::DeserializeOwned;

/// Everything that can go wrong while reading a model folder. All variants are "bad input" (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: file not found")]
    Missing { path: PathBuf },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: invalid config: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: unsupported configuration: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("{path}: cannot read safetensors: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: missing tensor `{key}`{more}")]
    MissingTensor {
        path: PathBuf,
        key: String,
        more: More,
    },
    #[error("{path}: unexpected tensor `{key}` not used by the model{more}")]
    UnexpectedTensor {
        path: PathBuf,
        key: String,
        more: More,
    },
    #[error("{path}: tensor `{key}`: {message}")]
    Tensor {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// How many more tensors share the problem, printed only when there are any.
#[derive(Debug)]
pub struct More(pub usize);

impl std::fmt::Display for More {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 > 0 {
            write!(f, " (and {} more)", self.0)
        } else {
            Ok(())
        }
    }
}

/// Reads a JSON config file into `T`, naming the file and the serde error on failure.
pub fn read_config<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = read_text(path)?;
    // serde_path_to_error names the offending field, e.g. `layers_per_block: expected ...`.
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text)).map_err(|e| {
        LoadError::Config {
            path: path.to_path_buf(),
            message: format!("field `{}`: {}", e.path(), e.inner()),
        }
    })
}

pub(crate) fn read_text(path: &Path) -> Result<String, LoadError> {
    if !path.exists() {
        return Err(LoadError::Missing {
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| LoadError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Resolves the folder of one component: `root/<name>` when `dir` is a model root (has
/// `model_index.json` or the sub-folder), otherwise `dir` itself (the component folder).
pub fn component_dir(dir: &Path, name: &str) -> PathBuf {
    let sub = dir.join(name);
    if sub.is_dir() { sub } else { dir.to_path_buf() }
}

/// The weight files of a component folder, diffusers-style: `<stem>.safetensors`, or
/// `<stem>.<variant>.safetensors`, or the shards named by `<stem>.safetensors.index.json`.
pub fn weight_files(
    dir: &Path,
    stem: &str,
    variant: Option<&str>,
) -> Result<Vec<PathBuf>, LoadError> {
    let name = match variant {
        Some(v) => format!("{stem}.{v}.safetensors"),
        None => format!("{stem}.safetensors"),
    };
    let single = dir.join(&name);
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join(format!("{name}.index.json"));
    if index.exists() {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: std::collections::BTreeMap<String, String>,
        }
        let index_data: Index = read_config(&index)?;
        let mut shards: Vec<PathBuf> = index_data
            .weight_map
            .values()
            .map(|f| dir.join(f))
            .collect();
        shards.sort();
        shards.dedup();
        return Ok(shards);
    }
    Err(LoadError::Missing { path: single })
}

/// A key rename applied to the file's keys before matching (regex, replacement).
pub type KeyRemap = (&'static str, &'static str);

/// Writes the parameters of `module` that `keep` selects (by path and container type) to `file`, in
/// PyTorch layout with the checkpoint's key names (`remaps` turn our paths into them), atomically.
pub fn save_weights<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: &M,
    file: &Path,
    keep: fn(&str, &str) -> bool,
    remaps: &[(&str, &str)],
) -> Result<(), String> {
    use burn_store::BurnToPyTorchAdapter;
    let tmp = file.with_extension("safetensors.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut store = SafetensorsStore::from_file(tmp.clone())
        .with_predicate(keep)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true);
    for (pattern, replacement) in remaps {
        store = store.with_key_remapping(*pattern, *replacement);
    }
    module
        .save_into(&mut store)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    canonical_header(&tmp)?;
    std::fs::rename(&tmp, file).map_err(|e| format!("{}: {e}", file.display()))
}

/// Rewrites a safetensors file with the single metadata entry `format = pt` (what PyTorch tools write and
/// transformers checks). burn-store writes its metadata from a hash map, in a different order each run,
/// so two saves of equal weights would differ in bytes; after this they are identical.
fn canonical_header(file: &Path) -> Result<(), String> {
    use safetensors::SafeTensors;
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let tensors =
        SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let out = safetensors::serialize(tensors.tensors(), Some(metadata))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    std::fs::write(file, out).map_err(|e| format!("{}: {e}", file.display()))
}

/// Loads `files` into `module`, failing on any missing, unexpected or mis-shaped tensor.
pub fn load_weights<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: M,
    files: &[PathBuf],
    remaps: &[KeyRemap],
) -> Result<M, LoadError> {
    load_weights_except(module, files, remaps, |_| false)
}

/// [`load_weights`], tolerating missing module tensors for which `missing_ok` holds (e.g. fresh LoRA
/// adapters when loading a base checkpoint, or the base weights when loading a LoRA file).
pub fn load_weights_except<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    mut module: M,
    files: &[PathBuf],
    remaps: &[KeyRemap],
    missing_ok: impl Fn(&str) -> bool,
) -> Result<M, LoadError> {
    let mut missing: Option<std::collections::BTreeSet<String>> = None;
    let mut first_missing_file = files[0].clone();
    for file in files {
        check_header(file)?;
        let store = SafetensorsStore::from_file(file.clone());
        let now;
        (module, now) = apply_store(module, store, file, remaps, &missing_ok)?;
        missing = Some(match missing {
            None => now,
            Some(before) => before.intersection(&now).cloned().collect(),
        });
        first_missing_file = file.clone();
    }
    missing_error(&first_missing_file, missing.unwrap_or_default())?;
    Ok(module)
}

/// [`load_weights`] from a safetensors file already in memory (the browser has no file system); `name`
/// stands for the file in errors.
pub fn load_weights_from_bytes<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: M,
    name: &str,
    bytes: Vec<u8>,
) -> Result<M, LoadError> {
    let path = PathBuf::from(name);
    check_header_bytes(&path, &bytes, bytes.len() as u64)?;
    let store = SafetensorsStore::from_bytes(Some(bytes));
    let (module, missing) = apply_store(module, store, &path, &[], &|_: &str| false)?;
    missing_error(&path, missing)?;
    Ok(module)
}

/// Applies one safetensors store to `module`: every tensor of the store must be used and fit its shape.
/// Returns the module and the module tensors the store did not have (except those `missing_ok` allows).
fn apply_store<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    mut module: M,
    store: SafetensorsStore,
    file: &Path,
    remaps: &[KeyRemap],
    missing_ok: &dyn Fn(&str) -> bool,
) -> Result<(M, std::collections::BTreeSet<String>), LoadError> {
    let mut store = store
        .with_from_adapter(
            PyTorchToBurnAdapter
                .chain(CastToFloat(float_dtype::<B>()))
                .chain(ScalarAsVector),
        )
        .skip_enum_variants(true)
        .allow_partial(true)
        .validate(false);
    for (pattern, replacement) in remaps {
        store = store.with_key_remapping(*pattern, *replacement);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| LoadError::Safetensors {
            path: file.to_path_buf(),
            message: e.to_string(),
        })?;
    if let Some(error) = result.errors.first() {
        return Err(apply_error(file, error));
    }
    let unused = truly_unused(&result);
    if let Some(key) = unused.first() {
        return Err(LoadError::UnexpectedTensor {
            path: file.to_path_buf(),
            key: key.clone(),
            more: More(unused.len() - 1),
        });
    }
    let missing = result
        .missing
        .iter()
        .map(|(path, _)| path.clone())
        .filter(|path| !missing_ok(path))
        .collect();
    Ok((module, missing))
}

/// The error for module tensors no file provided, naming the first.
fn missing_error(
    file: &Path,
    missing: std::collections::BTreeSet<String>,
) -> Result<(), LoadError> {
    match missing.iter().next() {
        Some(key) => Err(LoadError::MissingTensor {
            path: file.to_path_buf(),
            key: key.clone(),
            more: More(missing.len() - 1),
        }),
        None => Ok(()),
    }
}

/// burn-store lists a file key as unused when it was matched through an alternative name (norm
/// `weight`/`bias` loaded as `gamma`/`beta`) or through an enum variant; only the rest are really unused.
/// BatchNorm's `num_batches_tracked` is a training counter that inference never reads (PyTorch checkpoints
/// carry it; burn has no such field), so it is not unused either.
fn truly_unused(result: &burn_store::ApplyResult) -> Vec<String> {
    let applied: std::collections::HashSet<String> = result
        .applied
        .iter()
        .map(|path| {
            let segments: Vec<&str> = path
                .split('.')
                .filter(|s| !s.starts_with(|c: char| c.is_ascii_uppercase()))
                .map(|s| match s {
                    "gamma" => "weight",
                    "beta" => "bias",
                    other => other,
                })
                .collect();
            segments.join(".")
        })
        .collect();
    result
        .unused
        .iter()
        .filter(|key| !applied.contains(*key) && !key.ends_with(".num_batches_tracked"))
        .cloned()
        .collect()
}

/// Reads only the safetensors header (not the weights, which burn-store maps lazily) and checks that the
/// file exists and holds every byte the header promises, so a missing, truncated or corrupt file is reported
/// as such.
fn check_header(file: &Path) -> Result<(), LoadError> {
    read_header(file).map(drop)
}

/// Every tensor's shape in a safetensors file, read from its header alone (the file is checked as
/// [`load_weights`] checks it); for models whose widths follow from their weights.
pub fn tensor_shapes(
    file: &Path,
) -> Result<std::collections::BTreeMap<String, Vec<usize>>, LoadError> {
    let shape = |t: &serde_json::Value| -> Option<Vec<usize>> {
        t.get("shape")?
            .as_array()?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect()
    };
    Ok(read_header(file)?
        .iter()
        .filter_map(|(name, t)| Some((name.clone(), shape(t)?)))
        .collect())
}

/// The parsed header of a safetensors file, after checking it fits the file.
fn read_header(file: &Path) -> Result<serde_json::Map<String, serde_json::Value>, LoadError> {
    if !file.exists() {
        return Err(LoadError::Missing {
            path: file.to_path_buf(),
        });
    }
    use std::io::Read;
    let io = |e: std::io::Error| LoadError::Io {
        path: file.to_path_buf(),
        message: e.to_string(),
    };
    let mut handle = std::fs::File::open(file).map_err(io)?;
    let file_len = handle.metadata().map_err(io)?.len();
    // The 8-byte length, then as much of the header as it announces (capped: a corrupt length must not
    // make us read the whole file); check_header_bytes judges what was read.
    let mut start = vec![0u8; 8];
    if handle.read_exact(&mut start).is_ok() {
        let announced = u64::from_le_bytes(start[..8].try_into().expect("8 bytes"));
        let mut header = Vec::new();
        handle
            .take(announced.min(100_000_000))
            .read_to_end(&mut header)
            .map_err(io)?;
        start.extend(header);
    } else {
        start.clear();
    }
    parse_header(file, &start, file_len)
}

/// [`check_header`] on the start of a safetensors file (at least its header) whose full length is
/// `file_len`.
fn check_header_bytes(file: &Path, start: &[u8], file_len: u64) -> Result<(), LoadError> {
    parse_header(file, start, file_len).map(drop)
}

/// The header of [`check_header_bytes`], parsed.
fn parse_header(
    file: &Path,
    start: &[u8],
    file_len: u64,
) -> Result<serde_json::Map<String, serde_json::Value>, LoadError> {
    let bad = |message: String| LoadError::Safetensors {
        path: file.to_path_buf(),
        message,
    };
    let len_bytes: [u8; 8] = start
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("shorter than the 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len.saturating_sub(8) || header_len > 100_000_000 {
        return Err(bad(format!(
            "header length {header_len} does not fit the {file_len}-byte file"
        )));
    }
    let header = start
        .get(8..8 + header_len as usize)
        .ok_or_else(|| bad("the header is cut short".into()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(format!("invalid header: {e}")))?;
    let data_end = header
        .values()
        .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if 8 + header_len + data_end > file_len {
        return Err(bad(format!(
            "truncated: the header needs {} bytes, the file has {file_len}",
            8 + header_len + data_end
        )));
    }
    Ok(header)
}

fn apply_error(file: &Path, error: &burn_store::ApplyError) -> LoadError {
    use burn_store::ApplyError;
    match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => {
            let (mut expected, mut found) = (expected.to_vec(), found.to_vec());
            // Linear weights were transposed to burn's [in, out]; report them in the file's [out, in].
            if expected.len() == 2 && found.len() == 2 && !path.ends_with("embedding.weight") {
                expected.reverse();
                found.reverse();
            }
            LoadError::Shape {
                path: file.to_path_buf(),
                key: path.clone(),
                expected,
                found,
            }
        }
        ApplyError::DTypeMismatch {
            path,
            expected,
            found,
        } => LoadError::Tensor {
            path: file.to_path_buf(),
            key: path.clone(),
            message: format!("dtype {found:?}, expected {expected:?}"),
        },
        ApplyError::AdapterError { path, message } | ApplyError::LoadError { path, message } => {
            LoadError::Tensor {
                path: file.to_path_buf(),
                key: path.clone(),
                message: message.clone(),
            }
        }
    }
}

/// The float dtype a backend computes in (f32 on ndarray, f16/bf16 on some GPU setups).
pub fn float_dtype<B: Backend>() -> DType {
    <B::FloatElem as burn::tensor::Element>::dtype()
}

/// Casts every floating-point tensor to the backend's float type (fp16 checkpoints into f32 models).
#[derive(Clone)]
struct CastToFloat(DType);

impl ModuleAdapter for CastToFloat {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let target = self.0;
        if !snapshot.dtype.is_float() || snapshot.dtype == target {
            return snapshot.clone();
        }
        let data_fn = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            std::rc::Rc::new(move || Ok(data_fn()?.convert_dtype(target))),
            target,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// PyTorch 0-dim parameters (CLIP's `logit_scale`, a `torch.tensor(2.6592)`) → shape `[1]`, the nearest
/// burn tensor. The value is untouched; any other shape passes through, so a wrong one is still reported.
#[derive(Clone)]
struct ScalarAsVector;

impl ModuleAdapter for ScalarAsVector {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if snapshot.shape.num_dims() != 0 {
            return snapshot.clone();
        }
        let data_fn = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            std::rc::Rc::new(move || {
                let mut data = data_fn()?;
                data.shape = burn::tensor::Shape::new([1]);
                Ok(data)
            }),
            snapshot.dtype,
            burn::tensor::Shape::new([1]),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}
