//! Recorded sampling chains for dense-reward DPO: `<image>.trajectory.safetensors` beside each image that
//! `[generate] trajectories = true` made with DDIM η = 1. Tensors:
//!
//! - `latents` `[S + 1, C, h, w]`: `x_0` (the scaled starting noise) to `x_S` (what the image decodes from);
//! - `timesteps` `[S]`: the U-Net timestep of each step, noisiest first;
//! - `eta` `[1]` and `guidance_scale` `[1]`: how the chain was sampled, so the trainer evaluates its steps
//!   under the same stochastic step and guidance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::TensorData;
use popalign_core::io::tensor_io::{read_tensors, write_tensors};

#[derive(Debug, Clone)]
pub struct Trajectory {
    pub path: PathBuf,
    /// `[S + 1, C, h, w]`, row-major.
    pub latents: Vec<f32>,
    pub shape: [usize; 4],
    pub timesteps: Vec<f64>,
    pub eta: f64,
    pub guidance_scale: f64,
}

/// The trajectory file of an image: `a/b.png` → `a/b.trajectory.safetensors`.
pub fn path_for(image: &Path) -> PathBuf {
    image.with_extension("trajectory.safetensors")
}

impl Trajectory {
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// Latent `x_i`, `[C·h·w]` values.
    pub fn latent(&self, i: usize) -> &[f32] {
        let n: usize = self.shape[1..].iter().product();
        &self.latents[i * n..(i + 1) * n]
    }

    /// Reads the trajectory of `image`; the error names the file and what is wrong with it.
    pub fn read_for(image: &Path) -> Result<Self, String> {
        let path = path_for(image);
        let mut tensors = read_tensors(&path).map_err(|e| {
            format!(
                "{e} (dense training needs the sampling chain of each image: generate with \
                 `[generate] trajectories = true`)"
            )
        })?;
        let mut take = |key: &str| {
            tensors.remove(key).ok_or_else(|| {
                format!("{}: no tensor `{key}` in a trajectory file", path.display())
            })
        };
        let latents = take("latents")?;
        let timesteps = take("timesteps")?;
        let (eta, guidance) = (take("eta")?, take("guidance_scale")?);
        let scalar = |data: TensorData, key: &str| -> Result<f64, String> {
            let values = data.convert::<f64>().to_vec::<f64>().unwrap_or_default();
            match values[..] {
                [v] => Ok(v),
                _ => Err(format!("{}: `{key}` must hold one value", path.display())),
            }
        };
        let shape: [usize; 4] = latents.shape.to_vec().try_into().map_err(|_| {
            format!(
                "{}: `latents` has shape {:?}, expected [steps + 1, C, h, w]",
                path.display(),
                latents.shape
            )
        })?;
        let timesteps = timesteps
            .convert::<f64>()
            .to_vec::<f64>()
            .map_err(|e| format!("{}: `timesteps`: {e:?}", path.display()))?;
        if shape[0] != timesteps.len() + 1 || timesteps.is_empty() {
            return Err(format!(
                "{}: {} latents for {} timesteps (expected one more latent than steps)",
                path.display(),
                shape[0],
                timesteps.len()
            ));
        }
        Ok(Self {
            latents: latents
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| format!("{}: `latents`: {e:?}", path.display()))?,
            shape,
            timesteps,
            eta: scalar(eta, "eta")?,
            guidance_scale: scalar(guidance, "guidance_scale")?,
            path,
        })
    }
}

/// Writes the chain of one image (atomically, as every tensor file).
pub fn write_for(
    image: &Path,
    latents: TensorData,
    timesteps: &[f64],
    eta: f64,
    guidance_scale: f64,
) -> Result<(), String> {
    let tensors = BTreeMap::from([
        ("latents".to_string(), latents),
        (
            "timesteps".to_string(),
            TensorData::new(timesteps.to_vec(), [timesteps.len()]),
        ),
        ("eta".to_string(), TensorData::new(vec![eta], [1])),
        (
            "guidance_scale".to_string(),
            TensorData::new(vec![guidance_scale], [1]),
        ),
    ]);
    write_tensors(&path_for(image), &tensors)
}
