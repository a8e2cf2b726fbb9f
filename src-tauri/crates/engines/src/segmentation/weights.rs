//! SAM weights files: validating a safetensors file (format, size, architecture) before any
//! of it is loaded, writing one a tensor at a time, and writing random weights of the real
//! architecture for tests.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::var_builder::SimpleBackend;
#[cfg(feature = "test-support")]
use candle_nn::{VarBuilder, VarMap};

#[cfg(feature = "test-support")]
use super::network::SamNet;
use super::SamSize;
use crate::error::EngineError;

/// Largest safetensors header accepted (real SAM headers are ~100 KiB).
const MAX_HEADER: u64 = 16 << 20;

/// What a validated weights file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightsInfo {
    /// The architecture detected from its tensors.
    pub size: SamSize,
    /// Number of tensors.
    pub tensors: usize,
    /// Bytes the weights take once loaded as f32.
    pub f32_bytes: u64,
}

/// One tensor's entry in a safetensors header.
#[derive(Debug)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    begin: u64,
    end: u64,
}

fn invalid(path: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidWeights {
        path: path.to_path_buf(),
        expected: "Segment Anything (safetensors)".into(),
        reason: reason.into(),
    }
}

fn dtype_size(dtype: &str) -> Option<u64> {
    match dtype {
        "F32" | "I32" | "U32" => Some(4),
        "F16" | "BF16" | "I16" | "U16" => Some(2),
        "F64" | "I64" | "U64" => Some(8),
        "U8" | "I8" | "BOOL" => Some(1),
        _ => None,
    }
}

/// Reads and checks a safetensors header: the offsets must tile the data exactly.
fn read_header(path: &Path) -> Result<BTreeMap<String, Entry>, EngineError> {
    let mut file = File::open(path).map_err(|e| EngineError::io(path, e))?;
    let len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    if len < 8 {
        return Err(invalid(path, format!("the file is only {len} bytes")));
    }
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix)
        .map_err(|e| EngineError::io(path, e))?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len == 0 || header_len > MAX_HEADER || 8 + header_len > len {
        return Err(invalid(path, "not a safetensors file (bad header length)"));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| EngineError::io(path, e))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| invalid(path, format!("not a safetensors file (header: {e})")))?;
    let object = json
        .as_object()
        .ok_or_else(|| invalid(path, "not a safetensors file (header is not an object)"))?;
    let data_len = len - 8 - header_len;
    let mut entries = BTreeMap::new();
    let mut covered = 0u64;
    for (name, value) in object {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| {
            value
                .get(key)
                .ok_or_else(|| invalid(path, format!("tensor {name} has no {key}")))
        };
        let dtype = field("dtype")?.as_str().unwrap_or_default().to_owned();
        let numbers = |key: &str| -> Result<Vec<u64>, EngineError> {
            field(key)?
                .as_array()
                .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect())
                .ok_or_else(|| invalid(path, format!("tensor {name} has a malformed {key}")))
        };
        let shape = numbers("shape")?;
        let offsets = numbers("data_offsets")?;
        let [begin, end] = offsets[..] else {
            return Err(invalid(
                path,
                format!("tensor {name} has malformed offsets"),
            ));
        };
        let elem = dtype_size(&dtype)
            .ok_or_else(|| invalid(path, format!("tensor {name} has unknown dtype {dtype}")))?;
        // Checked: a crafted shape must not wrap around to the tensor's real length.
        let expected = shape
            .iter()
            .try_fold(elem, |bytes, &dim| bytes.checked_mul(dim));
        if begin > end || end > data_len || Some(end - begin) != expected {
            return Err(invalid(
                path,
                format!("tensor {name} points outside the file or has the wrong length (truncated or corrupt?)"),
            ));
        }
        covered = covered
            .checked_add(end - begin)
            .ok_or_else(|| invalid(path, "tensors overlap (corrupt file)"))?;
        entries.insert(
            name.clone(),
            Entry {
                dtype,
                shape,
                begin,
                end,
            },
        );
    }
    if entries.is_empty() {
        return Err(invalid(path, "the file holds no tensors"));
    }
    if covered > data_len {
        return Err(invalid(path, "tensors overlap (corrupt file)"));
    }
    Ok(entries)
}

/// Tensors (name, shape) that identify each architecture.
fn signature(size: SamSize) -> &'static [(&'static str, &'static [u64])] {
    match size {
        SamSize::Tiny => &[
            ("image_encoder.patch_embed.seq.0.c.weight", &[32, 3, 3, 3]),
            ("image_encoder.neck.0.weight", &[256, 320, 1, 1]),
            ("mask_decoder.iou_token.weight", &[1, 256]),
            ("prompt_encoder.point_embeddings.0.weight", &[1, 256]),
        ],
        SamSize::VitB => &[
            ("image_encoder.patch_embed.proj.weight", &[768, 3, 16, 16]),
            ("image_encoder.blocks.11.attn.qkv.weight", &[2304, 768]),
            ("image_encoder.neck.0.weight", &[256, 768, 1, 1]),
            ("mask_decoder.iou_token.weight", &[1, 256]),
            ("prompt_encoder.point_embeddings.0.weight", &[1, 256]),
        ],
    }
}

/// Validates a weights file and detects its architecture, reading only its header.
pub fn inspect(path: &Path) -> Result<WeightsInfo, EngineError> {
    let entries = read_header(path)?;
    let matches = |size: SamSize| {
        signature(size)
            .iter()
            .all(|(name, shape)| entries.get(*name).is_some_and(|e| e.shape == *shape))
    };
    let size = [SamSize::Tiny, SamSize::VitB]
        .into_iter()
        .find(|&s| matches(s))
        .ok_or_else(|| {
            invalid(
                path,
                "its tensors match neither MobileSAM (ViT-T) nor SAM ViT-B; is it another model?",
            )
        })?;
    if let Some((name, e)) = entries
        .iter()
        .find(|(_, e)| !matches!(e.dtype.as_str(), "F32" | "F16" | "BF16"))
    {
        return Err(invalid(
            path,
            format!("tensor {name} is {} (expected floating point)", e.dtype),
        ));
    }
    let f32_bytes = entries
        .values()
        .map(|e| (e.end - e.begin) / dtype_size(&e.dtype).unwrap_or(4) * 4)
        .sum();
    Ok(WeightsInfo {
        size,
        tensors: entries.len(),
        f32_bytes,
    })
}

/// The tensors of a memory-mapped weights file, read for candle's `VarBuilder` one at a time
/// with the load's cancel token checked before each (candle has no other point at which a
/// load can stop) and the fraction of bytes read reported as progress (5 % to 95 %).
pub struct CancellableTensors {
    inner: candle_core::safetensors::MmapedSafetensors,
    ctx: model_manager::LoadContext,
    total_bytes: u64,
    read_bytes: std::sync::atomic::AtomicU64,
}

impl CancellableTensors {
    /// Reads from `inner` for the load `ctx`; `total_bytes` is what the whole file holds as f32.
    pub fn new(
        inner: candle_core::safetensors::MmapedSafetensors,
        ctx: model_manager::LoadContext,
        total_bytes: u64,
    ) -> Self {
        Self {
            inner,
            ctx,
            total_bytes: total_bytes.max(1),
            read_bytes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn check(&self) -> candle_core::Result<()> {
        if self.ctx.cancel.is_cancelled() {
            return Err(candle_core::Error::Msg("load cancelled".into()));
        }
        Ok(())
    }

    fn count(&self, tensor: &Tensor) {
        use std::sync::atomic::Ordering;
        let bytes = (tensor.elem_count() as u64).saturating_mul(4);
        let read = self.read_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let fraction = (read as f64 / self.total_bytes as f64).min(1.0) as f32;
        self.ctx.progress.report(0.05 + 0.9 * fraction);
    }
}

impl SimpleBackend for CancellableTensors {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        hints: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.check()?;
        let tensor = SimpleBackend::get(&self.inner, shape, name, hints, dtype, dev)?;
        self.count(&tensor);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.check()?;
        let tensor = SimpleBackend::get_unchecked(&self.inner, name, dtype, dev)?;
        self.count(&tensor);
        Ok(tensor)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        SimpleBackend::contains_tensor(&self.inner, name)
    }
}

/// Writes `tensors` as a safetensors file to `out`, one tensor at a time (no second copy of
/// the whole file in memory); returns the bytes written. `out` gets exactly the file, so the
/// caller decides where it goes (an atomic temp file, in the app).
pub fn write_safetensors(
    tensors: &BTreeMap<String, Tensor>,
    out: &mut dyn Write,
) -> Result<u64, EngineError> {
    use safetensors::View;
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, tensor) in tensors {
        let len = View::data_len(tensor) as u64;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| EngineError::Inference("weights too large to write".into()))?;
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": View::dtype(tensor).to_string(),
                "shape": tensor.dims(),
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&header)
        .map_err(|e| EngineError::Inference(format!("weights header: {e}")))?;
    // The data starts 8-byte aligned, as the format asks.
    header.resize(header.len().next_multiple_of(8), b' ');
    let header_len = header.len() as u64;
    let io = |e: std::io::Error| EngineError::Inference(format!("writing weights: {e}"));
    out.write_all(&header_len.to_le_bytes()).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    for tensor in tensors.values() {
        out.write_all(&View::data(tensor)).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(8 + header_len + offset)
}

/// Writes weights of the real `size` architecture with deterministic pseudo-random values
/// (seeded), for tests and fixtures: no real SAM weights are needed to exercise the engine.
/// Test support (the `test-support` feature), not part of the engine's API.
#[cfg(feature = "test-support")]
pub fn write_random_weights(
    size: SamSize,
    path: &Path,
    seed: u64,
) -> Result<WeightsInfo, EngineError> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    SamNet::new(size, vb)?;
    let mut rng = super::Rng::seeded(seed);
    // Uniform in [-0.05, 0.05), scaled per tensor below.
    let mut next = move || (rng.unit() - 0.5) * 0.1;
    {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| EngineError::Inference("weights map poisoned".into()))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let shape = var.shape().clone();
            let dims = shape.dims();
            // Scaled like a trained network's (LeCun-uniform weights, unit norms and
            // variances, small biases), so activations stay finite through every layer: a
            // batch norm with a negative running variance would turn the embedding into NaN.
            let (centre, spread) = if name.ends_with("running_var") {
                (1.0, 0.0)
            } else if name.ends_with("running_mean") {
                (0.0, 0.0)
            } else if name.ends_with("positional_encoding_gaussian_matrix") {
                (0.0, 20.0)
            } else if dims.len() >= 2 {
                let fan_in = dims[1..].iter().product::<usize>().max(1) as f32;
                (0.0, 20.0 * (3.0 / fan_in).sqrt())
            } else if name.ends_with("weight") {
                (1.0, 1.0)
            } else {
                (0.0, 1.0)
            };
            let values: Vec<f32> = (0..shape.elem_count())
                .map(|_| centre + spread * next())
                .collect();
            var.set(&Tensor::from_vec(values, shape, &Device::Cpu)?)?;
        }
    }
    varmap.save(path)?;
    inspect(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safetensors(header: &str, data: usize) -> tempfile::NamedTempFile {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(bytes.len() + data, 0);
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write");
        file
    }

    #[test]
    fn a_shape_whose_size_overflows_is_refused_not_wrapped() {
        // 2^40 × 2^40 × 4 bytes wraps to 0 in u64: it must not pass as a 0-byte tensor.
        let file = safetensors(
            r#"{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,0]}}"#,
            0,
        );
        let err = read_header(file.path()).expect_err("refused");
        assert!(matches!(err, EngineError::InvalidWeights { .. }), "{err}");
        // A shape with something other than numbers in it is malformed, not skipped.
        let file = safetensors(
            r#"{"w":{"dtype":"F32","shape":["a",1],"data_offsets":[0,4]}}"#,
            4,
        );
        let err = read_header(file.path()).expect_err("refused");
        assert!(err.to_string().contains("malformed shape"), "{err}");
        // The same tensor, honestly described, is read.
        let file = safetensors(
            r#"{"w":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}"#,
            4,
        );
        assert_eq!(read_header(file.path()).expect("valid").len(), 1);
    }

    #[test]
    fn written_safetensors_read_back_as_what_was_written() {
        let mut tensors = BTreeMap::new();
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        tensors.insert(
            "b.weight".to_owned(),
            Tensor::from_vec(values.clone(), (3, 4), &Device::Cpu).expect("tensor"),
        );
        // A three-byte tensor: the next one's data is not 4-aligned, which the format allows.
        tensors.insert(
            "a.mask".to_owned(),
            Tensor::from_vec(vec![1u8, 0, 1], 3, &Device::Cpu).expect("tensor"),
        );
        tensors.insert(
            "c.half".to_owned(),
            Tensor::from_vec(vec![1.5f32, -1.0], 2, &Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F16))
                .expect("tensor"),
        );
        let file = tempfile::NamedTempFile::new().expect("temp");
        let mut out = std::fs::File::create(file.path()).expect("open");
        let bytes = write_safetensors(&tensors, &mut out).expect("written");
        drop(out);
        assert_eq!(bytes, std::fs::metadata(file.path()).expect("meta").len());
        // Our own header check and candle's loader both accept it, with the same values.
        let entries = read_header(file.path()).expect("valid header");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries["b.weight"].shape, [3, 4]);
        let raw = std::fs::read(file.path()).expect("read");
        let header_len = u64::from_le_bytes(raw[..8].try_into().expect("8 bytes"));
        assert_eq!(header_len % 8, 0, "the data starts 8-byte aligned");
        let back = candle_core::safetensors::load(file.path(), &Device::Cpu).expect("loads");
        let b = back["b.weight"]
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>());
        assert_eq!(b.expect("f32"), values);
        let a = back["a.mask"].to_vec1::<u8>().expect("u8");
        assert_eq!(a, [1, 0, 1]);
        assert_eq!(back["c.half"].dtype(), DType::F16);
        let c = back["c.half"]
            .to_dtype(DType::F32)
            .and_then(|t| t.to_vec1::<f32>());
        assert_eq!(c.expect("f16"), [1.5, -1.0]);
    }
}
