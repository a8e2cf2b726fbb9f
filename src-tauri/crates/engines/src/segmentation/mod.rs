//! Image segmentation with Segment Anything on candle: MobileSAM (ViT-T) or SAM ViT-B, chosen
//! by the model-size setting. [`SamLoader`] validates and loads a weights file for the
//! manager; [`SamModel::segment`] answers point and box prompts with the best mask. The image
//! embedding — the expensive part — is cached per image, so re-prompting only decodes.

mod banded_mlp;
mod channel_norm;
mod decoder;
mod dense_conv;
mod depthwise;
mod elementwise;
mod flops;
mod mbconv;
mod network;
mod product;
mod rel_pos_attention;
mod tiny_vit;
mod token_attention;
pub mod training;
mod upsample;
mod vit_b;
pub mod weights;
mod window_attention;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::{imageops, RgbImage};
use model_manager::{LoadContext, LoadError, LoadedModel, ModelLoader, ModelSpec};
use parking_lot::{Condvar, Mutex};

pub use self::flops::encoder_flops;
use self::network::{FramePrompt, SamNet, IMAGE_SIZE, LOW_RES};
use crate::error::EngineError;
use crate::file_loader::load_file;

/// Largest image accepted, in pixels (about 100 megapixels).
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;
/// Most points in one prompt.
pub const MAX_POINTS: usize = 64;
/// Image embeddings kept (each is 4 MiB).
pub const EMBEDDING_CACHE_ENTRIES: usize = 4;

/// Which Segment Anything network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamSize {
    /// MobileSAM: TinyViT image encoder (~10 M parameters), fast on CPU.
    Tiny,
    /// SAM ViT-B (~90 M parameters), more accurate, several times slower.
    VitB,
}

/// A click on the image, in its own pixel coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Column, 0 ≤ x < width.
    pub x: f32,
    /// Row, 0 ≤ y < height.
    pub y: f32,
    /// Part of the object (`true`) or of the background (`false`).
    pub foreground: bool,
}

/// What to segment: points and/or a box (`[x0, y0, x1, y1]` in image pixels).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prompt {
    /// Foreground and background clicks.
    pub points: Vec<Point>,
    /// An optional box around the object.
    pub bbox: Option<[f32; 4]>,
}

/// The best mask for a prompt, at the image's full resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    /// Width in pixels (the image's).
    pub width: u32,
    /// Height in pixels (the image's).
    pub height: u32,
    /// One byte per pixel, row-major: 255 inside the mask, 0 outside.
    pub pixels: Vec<u8>,
    /// The model's predicted IoU for this mask.
    pub score: f32,
    /// Whether the image embedding came from the cache (only the decoder ran).
    pub embedding_cached: bool,
}

impl Mask {
    /// Pixels inside the mask.
    pub fn area(&self) -> usize {
        self.pixels.iter().filter(|&&p| p != 0).count()
    }

    /// The mask as an 8-bit greyscale PNG.
    pub fn to_png(&self) -> Result<Vec<u8>, EngineError> {
        let mut png = Vec::new();
        let encoder = image::codecs::png::PngEncoder::new(&mut png);
        image::ImageEncoder::write_image(
            encoder,
            &self.pixels,
            self.width,
            self.height,
            image::ExtendedColorType::L8,
        )
        .map_err(|e| EngineError::Inference(format!("PNG encoding failed: {e}")))?;
        Ok(png)
    }
}

/// Reads an image file (PNG or JPEG) as RGB, with clear errors for missing, empty, corrupt
/// or oversized files.
pub fn load_image(path: &Path) -> Result<RgbImage, EngineError> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    decode_image(&bytes, &path.display().to_string())
}

/// Decodes an image held in memory; `name` is used in error messages.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage, EngineError> {
    if bytes.is_empty() {
        return Err(EngineError::Empty(name.to_owned()));
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EngineError::Undecodable {
            what: name.to_owned(),
            reason: e.to_string(),
        })?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| EngineError::Undecodable {
            what: name.to_owned(),
            reason: e.to_string(),
        })?;
    check_dimensions(w, h, name)?;
    let image = image::load_from_memory(bytes).map_err(|e| EngineError::Undecodable {
        what: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(image.to_rgb8())
}

fn check_dimensions(w: u32, h: u32, name: &str) -> Result<(), EngineError> {
    if w == 0 || h == 0 {
        return Err(EngineError::Empty(format!("{name} ({w}×{h} pixels)")));
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(EngineError::TooLarge {
            what: name.to_owned(),
            actual: format!("{w}×{h} pixels"),
            limit: format!("{} megapixels", MAX_IMAGE_PIXELS / 1_000_000),
        });
    }
    Ok(())
}

/// Loads SAM weights for the model manager. The spec's path is a safetensors file; its
/// architecture (ViT-T or ViT-B) is detected and validated before anything is loaded.
#[derive(Debug, Default)]
pub struct SamLoader;

impl ModelLoader for SamLoader {
    fn estimate_bytes(&self, spec: &ModelSpec) -> Option<u64> {
        let path = spec.path.as_deref()?;
        weights::inspect(path).ok().map(|info| info.f32_bytes)
    }

    fn load(&self, spec: &ModelSpec, ctx: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError> {
        load_file(spec, ctx, |path| SamModel::load_with(path, ctx))
    }
}

/// A loaded Segment Anything model with its embedding cache.
pub struct SamModel {
    net: SamNet,
    size: SamSize,
    /// The weights file it was loaded from.
    source: std::path::PathBuf,
    weight_bytes: u64,
    cache: Mutex<Vec<CachedEmbedding>>,
    /// Embeddings being computed now (image key and frame): a prompt for one of them waits
    /// for that work (`computed`) instead of repeating it.
    computing: Mutex<Vec<(u64, (usize, usize))>>,
    computed: Condvar,
}

/// Takes an embedding off the in-flight list when its computation ends, however it ends.
struct InFlight<'a> {
    model: &'a SamModel,
    entry: (u64, (usize, usize)),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.model.computing.lock().retain(|e| *e != self.entry);
        self.model.computed.notify_all();
    }
}

struct CachedEmbedding {
    key: u64,
    embeddings: Tensor,
    frame: (usize, usize),
}

impl std::fmt::Debug for SamModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamModel")
            .field("size", &self.size)
            .field("weight_bytes", &self.weight_bytes)
            .finish_non_exhaustive()
    }
}

impl LoadedModel for SamModel {
    fn resident_bytes(&self) -> u64 {
        self.weight_bytes + self.cached_embedding_bytes()
    }
}

impl SamModel {
    /// Validates `path` and loads it on the CPU.
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        Self::load_with(path, &LoadContext::detached())
    }

    /// [`Self::load`] for the model manager: `ctx`'s cancel token is checked before each
    /// tensor is read (a cancelled load stops there, with [`EngineError::Cancelled`]), and
    /// progress is reported as the weights are read.
    pub fn load_with(path: &Path, ctx: &LoadContext) -> Result<Self, EngineError> {
        let info = weights::inspect(path)?;
        // SAFETY: the file is memory-mapped only while the tensors are copied out of it below;
        // it is the user's model file, which the app does not modify while loading.
        let tensors =
            unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(|e| {
                EngineError::InvalidWeights {
                    path: path.to_path_buf(),
                    expected: "Segment Anything (safetensors)".into(),
                    reason: e.to_string(),
                }
            })?;
        let backend = weights::CancellableTensors::new(tensors, ctx.clone(), info.f32_bytes);
        let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu);
        let net = SamNet::new(info.size, vb).map_err(|e| {
            if ctx.cancel.is_cancelled() {
                return EngineError::Cancelled;
            }
            EngineError::InvalidWeights {
                path: path.to_path_buf(),
                expected: format!("{:?} Segment Anything", info.size),
                reason: e.to_string(),
            }
        })?;
        tracing::info!(path = %path.display(), size = ?info.size, bytes = info.f32_bytes, "SAM loaded");
        Ok(Self {
            net,
            size: info.size,
            source: path.to_path_buf(),
            weight_bytes: info.f32_bytes,
            cache: Mutex::new(Vec::new()),
            computing: Mutex::new(Vec::new()),
            computed: Condvar::new(),
        })
    }

    /// The weights file this model was loaded from (what a fine-tune of it must start from,
    /// whatever the slot's choice is by now).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The architecture loaded.
    pub fn size(&self) -> SamSize {
        self.size
    }

    /// Bytes held by cached image embeddings.
    pub fn cached_embedding_bytes(&self) -> u64 {
        self.cache
            .lock()
            .iter()
            .map(|c| (c.embeddings.elem_count() * 4) as u64)
            .sum()
    }

    /// Drops every cached embedding.
    pub fn clear_cache(&self) {
        self.cache.lock().clear();
    }

    /// The best mask for `prompt` on `image`. The image's embedding is computed once and
    /// cached; prompting the same image again only runs the mask decoder.
    pub fn segment(&self, image: &RgbImage, prompt: &Prompt) -> Result<Mask, EngineError> {
        let (w, h) = image.dimensions();
        check_dimensions(w, h, "the image")?;
        validate_prompt(prompt, w, h)?;
        let (frame_w, frame_h) = frame_size(w, h);
        let (embeddings, cached) = self.embeddings_for(image, frame_w, frame_h, &|| false)?;

        let scale = (frame_w as f32 / w as f32, frame_h as f32 / h as f32);
        let frame_prompt = frame_prompt(prompt, scale);
        // One click is ambiguous (part or whole?): ask for three masks and keep the best.
        let multimask = prompt.points.len() == 1 && prompt.bbox.is_none();
        let (logits, scores) = self.net.decode(&embeddings, &frame_prompt, multimask)?;
        let best = scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let pixels = upscale_mask(&logits[best], (frame_w, frame_h), (w as usize, h as usize));
        Ok(Mask {
            width: w,
            height: h,
            pixels,
            score: scores.get(best).copied().unwrap_or(0.0),
            embedding_cached: cached,
        })
    }

    /// Computes and caches `image`'s embedding ahead of its first prompt (the app does this
    /// when an image is opened), so that the first click only decodes. `stop` is asked between
    /// the encoder's stages (MobileSAM: after each of its five; ViT-B: before it starts): when
    /// it answers `true` the work is dropped and [`EngineError::Cancelled`] returned. Returns
    /// whether it computed anything (`false`: the embedding was cached already).
    pub fn prepare(&self, image: &RgbImage, stop: &dyn Fn() -> bool) -> Result<bool, EngineError> {
        let (w, h) = image.dimensions();
        check_dimensions(w, h, "the image")?;
        let (frame_w, frame_h) = frame_size(w, h);
        let (_, cached) = self.embeddings_for(image, frame_w, frame_h, stop)?;
        Ok(!cached)
    }

    /// The cached embedding for `key` at `frame`, moved to the front of the cache.
    fn cached(&self, key: u64, frame: (usize, usize)) -> Option<Tensor> {
        let mut cache = self.cache.lock();
        let pos = cache
            .iter()
            .position(|c| c.key == key && c.frame == frame)?;
        let hit = cache.remove(pos);
        let embeddings = hit.embeddings.clone();
        cache.insert(0, hit);
        Some(embeddings)
    }

    fn embeddings_for(
        &self,
        image: &RgbImage,
        frame_w: usize,
        frame_h: usize,
        stop: &dyn Fn() -> bool,
    ) -> Result<(Tensor, bool), EngineError> {
        let frame = (frame_w, frame_h);
        let entry = (image_key(image), frame);
        // Cached, being computed (wait for it, then look again), or ours to compute. The
        // cache is read under the in-flight lock (lock order: `computing`, then `cache`): work
        // leaves the in-flight list only after its embedding is cached, so a miss here is
        // never work that ended a moment ago.
        let in_flight = loop {
            let mut computing = self.computing.lock();
            if let Some(embeddings) = self.cached(entry.0, frame) {
                return Ok((embeddings, true));
            }
            if computing.contains(&entry) {
                self.computed.wait(&mut computing);
                continue;
            }
            computing.push(entry);
            break InFlight { model: self, entry };
        };
        let resized = imageops::resize(
            image,
            frame_w as u32,
            frame_h as u32,
            imageops::FilterType::Triangle,
        );
        let embeddings = self
            .net
            .embed(resized.as_raw(), frame_w, frame_h, stop)?
            .ok_or(EngineError::Cancelled)?;
        let mut cache = self.cache.lock();
        cache.insert(
            0,
            CachedEmbedding {
                key: entry.0,
                embeddings: embeddings.clone(),
                frame,
            },
        );
        cache.truncate(EMBEDDING_CACHE_ENTRIES);
        drop(cache);
        drop(in_flight);
        Ok((embeddings, false))
    }
}

/// `prompt` (image pixels) in the encoder's frame; `scale` is frame pixels per image pixel.
fn frame_prompt(prompt: &Prompt, scale: (f32, f32)) -> FramePrompt {
    let (sx, sy) = scale;
    FramePrompt {
        points: prompt
            .points
            .iter()
            .map(|p| ((p.x + 0.5) * sx, (p.y + 0.5) * sy, p.foreground))
            .collect(),
        bbox: prompt
            .bbox
            .map(|[x0, y0, x1, y1]| [x0 * sx, y0 * sy, x1 * sx, y1 * sy]),
    }
}

/// xorshift64*: a small deterministic sampler.
pub(crate) struct Rng(u64);

impl Rng {
    /// A sampler started from `seed` (any value; never the all-zero state).
    fn seeded(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The size an image is resized to for the encoder: its long side becomes [`IMAGE_SIZE`].
fn frame_size(w: u32, h: u32) -> (usize, usize) {
    let scale = IMAGE_SIZE as f32 / w.max(h) as f32;
    (
        ((w as f32 * scale).round() as usize).clamp(1, IMAGE_SIZE),
        ((h as f32 * scale).round() as usize).clamp(1, IMAGE_SIZE),
    )
}

fn validate_prompt(prompt: &Prompt, w: u32, h: u32) -> Result<(), EngineError> {
    let bad = |msg: String| Err(EngineError::InvalidRequest(msg));
    if prompt.points.is_empty() && prompt.bbox.is_none() {
        return bad("give at least one point or a box".into());
    }
    if prompt.points.len() > MAX_POINTS {
        return bad(format!(
            "{} points given; at most {MAX_POINTS}",
            prompt.points.len()
        ));
    }
    let inside = |x: f32, y: f32| {
        x.is_finite() && y.is_finite() && x >= 0.0 && y >= 0.0 && x <= w as f32 && y <= h as f32
    };
    for p in &prompt.points {
        if !inside(p.x, p.y) {
            return bad(format!(
                "point ({}, {}) is outside the {w}×{h} image",
                p.x, p.y
            ));
        }
    }
    if let Some([x0, y0, x1, y1]) = prompt.bbox {
        if !inside(x0, y0) || !inside(x1, y1) {
            return bad(format!(
                "box [{x0}, {y0}, {x1}, {y1}] is outside the {w}×{h} image"
            ));
        }
        if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
            return bad(format!("box [{x0}, {y0}, {x1}, {y1}] is empty or reversed"));
        }
    }
    Ok(())
}

/// A fast 64-bit fingerprint of an image's pixels and size, for the embedding cache.
fn image_key(image: &RgbImage) -> u64 {
    let (w, h) = image.dimensions();
    let mut hash = 0xCBF2_9CE4_8422_2325u64 ^ (u64::from(w) << 32 | u64::from(h));
    let bytes = image.as_raw();
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = (hash ^ u64::from_le_bytes(word))
            .wrapping_mul(0x0000_0100_0000_01B3)
            .rotate_left(29);
    }
    for &b in chunks.remainder() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// Bilinearly samples the 256×256 logits at every pixel of the original image (through the
/// encoder frame the image was resized into) and thresholds at 0.
fn upscale_mask(logits: &[f32], frame: (usize, usize), out: (usize, usize)) -> Vec<u8> {
    let to_low = LOW_RES as f32 / IMAGE_SIZE as f32;
    // Per-axis source index and weight, computed once.
    let axis = |n_out: usize, n_frame: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let f = (o as f32 + 0.5) * n_frame as f32 / n_out as f32; // frame coordinate
                let l = (f * to_low - 0.5).clamp(0.0, (LOW_RES - 1) as f32);
                let i0 = l.floor() as usize;
                let i1 = (i0 + 1).min(LOW_RES - 1);
                (i0, i1, l - i0 as f32)
            })
            .collect()
    };
    let xs = axis(out.0, frame.0);
    let ys = axis(out.1, frame.1);
    let mut pixels = Vec::with_capacity(out.0 * out.1);
    for &(y0, y1, wy) in &ys {
        let (r0, r1) = (
            &logits[y0 * LOW_RES..][..LOW_RES],
            &logits[y1 * LOW_RES..][..LOW_RES],
        );
        for &(x0, x1, wx) in &xs {
            let top = r0[x0] + (r0[x1] - r0[x0]) * wx;
            let bottom = r1[x0] + (r1[x1] - r1[x0]) * wx;
            let v = top + (bottom - top) * wy;
            pixels.push(if v > 0.0 { 255 } else { 0 });
        }
    }
    pixels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_validated_against_the_image() {
        let p = |x, y| Point {
            x,
            y,
            foreground: true,
        };
        let cases = [
            (Prompt::default(), "at least one point"),
            (
                Prompt {
                    points: vec![p(-1.0, 0.0)],
                    bbox: None,
                },
                "outside",
            ),
            (
                Prompt {
                    points: vec![p(f32::NAN, 0.0)],
                    bbox: None,
                },
                "outside",
            ),
            (
                Prompt {
                    points: vec![p(0.0, 0.0); 65],
                    bbox: None,
                },
                "at most 64",
            ),
            (
                Prompt {
                    points: vec![],
                    bbox: Some([10.0, 10.0, 5.0, 20.0]),
                },
                "empty or reversed",
            ),
            (
                Prompt {
                    points: vec![],
                    bbox: Some([0.0, 0.0, 200.0, 20.0]),
                },
                "outside",
            ),
        ];
        for (prompt, expected) in cases {
            let err = validate_prompt(&prompt, 100, 50).expect_err("invalid");
            assert!(err.to_string().contains(expected), "{err}");
        }
        assert!(validate_prompt(
            &Prompt {
                points: vec![p(99.0, 49.0)],
                bbox: Some([0.0, 0.0, 100.0, 50.0])
            },
            100,
            50
        )
        .is_ok());
    }

    #[test]
    fn upscaling_a_constant_mask_fills_or_empties_the_image() {
        let inside = vec![1.0f32; LOW_RES * LOW_RES];
        let all = upscale_mask(&inside, (1024, 512), (300, 150));
        assert_eq!(all.len(), 300 * 150);
        assert!(all.iter().all(|&p| p == 255));
        let outside = vec![-1.0f32; LOW_RES * LOW_RES];
        assert!(upscale_mask(&outside, (1024, 512), (300, 150))
            .iter()
            .all(|&p| p == 0));
    }

    #[test]
    fn upscaling_keeps_a_left_half_mask_on_the_left() {
        // Logits positive in the left half of the encoder frame's used area (x < 512 of 1024).
        let logits: Vec<f32> = (0..LOW_RES * LOW_RES)
            .map(|i| if i % LOW_RES < 128 { 1.0 } else { -1.0 })
            .collect();
        let mask = upscale_mask(&logits, (1024, 1024), (200, 100));
        let row: Vec<u8> = mask[..200].to_vec();
        assert!(row[..95].iter().all(|&p| p == 255));
        assert!(row[105..].iter().all(|&p| p == 0));
    }

    #[test]
    fn image_key_tells_images_apart() {
        let a = RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        let mut b = a.clone();
        b.put_pixel(7, 7, image::Rgb([1, 2, 4]));
        let c = RgbImage::from_pixel(16, 4, image::Rgb([1, 2, 3]));
        assert_ne!(image_key(&a), image_key(&b));
        assert_ne!(image_key(&a), image_key(&c));
        assert_eq!(image_key(&a), image_key(&a.clone()));
    }

    #[test]
    fn bad_images_get_clear_errors() {
        assert!(matches!(
            decode_image(&[], "x.png"),
            Err(EngineError::Empty(_))
        ));
        let err = decode_image(b"definitely not an image", "x.png").expect_err("garbage");
        assert!(matches!(err, EngineError::Undecodable { .. }), "{err}");
        let mut png = Vec::new();
        RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode");
        assert_eq!(
            decode_image(&png, "ok.png").expect("decodes").dimensions(),
            (4, 4)
        );
        let truncated = &png[..png.len() / 2];
        assert!(decode_image(truncated, "cut.png").is_err());
        let missing = load_image(Path::new("/nonexistent/dir/x.png")).expect_err("missing");
        assert!(matches!(missing, EngineError::Io { .. }), "{missing}");
    }
}
