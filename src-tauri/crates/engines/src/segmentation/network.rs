//! The Segment Anything network, assembled from candle's SAM building blocks. The sparse
//! prompt embedding (points and box corners) is computed here: candle 0.11's
//! `PromptEncoder::embed_boxes` returns a `(1, 512)` tensor instead of `(1, 2, 256)`, so box
//! prompts cannot go through it (candle's own `Sam` never passes boxes).

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::segment_anything::prompt_encoder::PromptEncoder;

use super::decoder::{MaskDecoder, Pass};
use super::tiny_vit::TinyViT;
use super::vit_b::{VitConfig, VitEncoder};
use super::SamSize;

/// Side of the square the encoder sees.
pub(crate) const IMAGE_SIZE: usize = 1024;
/// Side of the low-resolution masks the decoder returns.
pub(crate) const LOW_RES: usize = 256;
pub(crate) const PATCH: usize = 16;
pub(crate) const PROMPT_DIM: usize = 256;

enum Encoder {
    Vit(Box<VitEncoder>),
    Tiny(Box<TinyViT>),
    /// candle's own TinyViT, which ours must agree with (tests only).
    #[cfg(test)]
    ReferenceTiny(Box<candle_transformers::models::segment_anything::tiny_vit::TinyViT>),
}

/// Image encoder, prompt encoder and mask decoder.
pub(crate) struct SamNet {
    encoder: Encoder,
    prompts: PromptWeights,
    /// Positional encoding of the embedding grid, `(1, 256, 64, 64)`.
    dense_pe: Tensor,
    mask_decoder: MaskDecoder,
    pixel_mean: Tensor,
    pixel_std: Tensor,
    device: Device,
}

/// A prompt in the encoder's 1024-pixel frame.
pub(crate) struct FramePrompt {
    /// `(x, y, foreground)`.
    pub points: Vec<(f32, f32, bool)>,
    /// `(x0, y0, x1, y1)`.
    pub bbox: Option<[f32; 4]>,
}

impl SamNet {
    pub(crate) fn new(size: SamSize, vb: VarBuilder) -> candle_core::Result<Self> {
        let device = vb.device().clone();
        let encoder = match size {
            SamSize::Tiny => Encoder::Tiny(Box::new(TinyViT::tiny_vit_5m(vb.pp("image_encoder"))?)),
            SamSize::VitB => Encoder::Vit(Box::new(VitEncoder::new(
                VitConfig::VIT_B,
                vb.pp("image_encoder"),
            )?)),
        };
        let grid = IMAGE_SIZE / PATCH;
        let prompt_encoder = PromptEncoder::new(
            PROMPT_DIM,
            (grid, grid),
            (IMAGE_SIZE, IMAGE_SIZE),
            16,
            vb.pp("prompt_encoder"),
        )?;
        let prompts = PromptWeights::new(vb.pp("prompt_encoder"))?;
        let dense_pe = prompt_encoder.get_dense_pe()?;
        let mask_decoder = MaskDecoder::new(vb.pp("mask_decoder"))?;
        let pixel_mean = Tensor::new(&[123.675f32, 116.28, 103.53], &device)?.reshape((3, 1, 1))?;
        let pixel_std = Tensor::new(&[58.395f32, 57.12, 57.375], &device)?.reshape((3, 1, 1))?;
        Ok(Self {
            encoder,
            prompts,
            dense_pe,
            mask_decoder,
            pixel_mean,
            pixel_std,
            device,
        })
    }

    /// Embeds an RGB image already resized so its long side is [`IMAGE_SIZE`]
    /// (`rgb` is `h * w * 3` bytes). Returns `(1, 256, 64, 64)`, or `None` when `stop` said
    /// so between the encoder's stages.
    pub(crate) fn embed(
        &self,
        rgb: &[u8],
        w: usize,
        h: usize,
        stop: &dyn Fn() -> bool,
    ) -> candle_core::Result<Option<Tensor>> {
        if stop() {
            return Ok(None);
        }
        let img = Tensor::from_slice(rgb, (h, w, 3), &self.device)?
            .permute((2, 0, 1))?
            .to_dtype(DType::F32)?
            .broadcast_sub(&self.pixel_mean)?
            .broadcast_div(&self.pixel_std)?
            .pad_with_zeros(1, 0, IMAGE_SIZE - h)?
            .pad_with_zeros(2, 0, IMAGE_SIZE - w)?
            .unsqueeze(0)?;
        match &self.encoder {
            Encoder::Vit(e) => e.forward(&img).map(Some),
            Encoder::Tiny(e) => e.forward_unless_stopped(&img, stop),
            #[cfg(test)]
            Encoder::ReferenceTiny(e) => e.forward(&img).map(Some),
        }
    }

    /// The decoder's prompt inputs for `prompt`: sparse tokens `(1, n, 256)`, the dense
    /// "no mask" embedding `(1, 256, 64, 64)` and the grid's positional encoding.
    pub(crate) fn prompt_inputs(
        &self,
        prompt: &FramePrompt,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let sparse = self.prompts.sparse(prompt, &self.device)?;
        let dense = self
            .prompts
            .no_mask
            .reshape((1, PROMPT_DIM, 1, 1))?
            .expand((1, PROMPT_DIM, IMAGE_SIZE / PATCH, IMAGE_SIZE / PATCH))?;
        Ok((sparse, dense, self.dense_pe.clone()))
    }

    /// Decodes masks for a prompt. Returns the low-resolution logits (`k × 256 × 256`,
    /// row-major) and the predicted IoU of each of the `k` masks.
    pub(crate) fn decode(
        &self,
        embeddings: &Tensor,
        prompt: &FramePrompt,
        multimask: bool,
    ) -> candle_core::Result<(Vec<Vec<f32>>, Vec<f32>)> {
        let (sparse, dense, image_pe) = self.prompt_inputs(prompt)?;
        let (masks, iou) =
            self.mask_decoder
                .forward(embeddings, &image_pe, &sparse, &dense, Pass::Infer)?;
        // Mask 0 answers an unambiguous prompt, masks 1–3 a single click.
        let range = if multimask { 1..4 } else { 0..1 };
        let logits = range
            .clone()
            .map(|i| masks.i((0, i))?.flatten_all()?.to_vec1::<f32>())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let iou = iou.i((0, range))?.to_vec1::<f32>()?;
        Ok((logits, iou))
    }
}

/// The prompt encoder's learned pieces needed for sparse embeddings, as plain vectors.
struct PromptWeights {
    /// `2 × 128` random Fourier features.
    gaussian: Vec<f32>,
    /// Background, foreground, box top-left, box bottom-right.
    point: [Vec<f32>; 4],
    not_a_point: Vec<f32>,
    no_mask: Tensor,
}

impl PromptWeights {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let row = |name: String| -> candle_core::Result<Vec<f32>> {
            vb.get((1, PROMPT_DIM), &name)?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        let gaussian = vb
            .get(
                (2, PROMPT_DIM / 2),
                "pe_layer.positional_encoding_gaussian_matrix",
            )?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let point = [
            row("point_embeddings.0.weight".into())?,
            row("point_embeddings.1.weight".into())?,
            row("point_embeddings.2.weight".into())?,
            row("point_embeddings.3.weight".into())?,
        ];
        Ok(Self {
            gaussian,
            point,
            not_a_point: row("not_a_point_embed.weight".into())?,
            no_mask: vb.get((1, PROMPT_DIM), "no_mask_embed.weight")?,
        })
    }

    /// SAM's random-Fourier positional encoding of a pixel position in the 1024 frame.
    fn encode(&self, x: f32, y: f32) -> Vec<f32> {
        let half = PROMPT_DIM / 2;
        let (u, v) = (
            2.0 * (x / IMAGE_SIZE as f32) - 1.0,
            2.0 * (y / IMAGE_SIZE as f32) - 1.0,
        );
        let angles: Vec<f32> = (0..half)
            .map(|j| {
                2.0 * std::f32::consts::PI * (u * self.gaussian[j] + v * self.gaussian[half + j])
            })
            .collect();
        angles
            .iter()
            .map(|a| a.sin())
            .chain(angles.iter().map(|a| a.cos()))
            .collect()
    }

    fn token(&self, x: f32, y: f32, learned: &[f32]) -> Vec<f32> {
        self.encode(x + 0.5, y + 0.5)
            .iter()
            .zip(learned)
            .map(|(p, l)| p + l)
            .collect()
    }

    /// `(1, tokens, 256)`: one token per point, plus a padding token when there is no box,
    /// or two corner tokens for the box (as SAM's `PromptEncoder` does).
    fn sparse(&self, prompt: &FramePrompt, device: &Device) -> candle_core::Result<Tensor> {
        let mut tokens: Vec<f32> = Vec::new();
        for &(x, y, foreground) in &prompt.points {
            tokens.extend(self.token(x, y, &self.point[usize::from(foreground)]));
        }
        match prompt.bbox {
            Some([x0, y0, x1, y1]) => {
                tokens.extend(self.token(x0, y0, &self.point[2]));
                tokens.extend(self.token(x1, y1, &self.point[3]));
            }
            None => tokens.extend_from_slice(&self.not_a_point),
        }
        let n = tokens.len() / PROMPT_DIM;
        Tensor::from_vec(tokens, (1, n, PROMPT_DIM), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    /// Fills every variable with deterministic non-trivial values.
    fn randomise(varmap: &VarMap) {
        let data = varmap.data().lock().expect("lock");
        for (i, var) in data.values().enumerate() {
            let n = var.elem_count();
            let values: Vec<f32> = (0..n)
                .map(|j| ((j * 7919 + i * 104_729) % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).expect("tensor"))
                .expect("set");
        }
    }

    /// candle's prompt encoder and ours, over the same randomised weights.
    fn both_encoders() -> (PromptEncoder, PromptWeights) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let theirs = PromptEncoder::new(
            PROMPT_DIM,
            (64, 64),
            (IMAGE_SIZE, IMAGE_SIZE),
            16,
            vb.pp("prompt_encoder"),
        )
        .expect("encoder");
        randomise(&varmap);
        let ours = PromptWeights::new(vb.pp("prompt_encoder")).expect("weights");
        (theirs, ours)
    }

    #[test]
    fn point_prompts_embed_exactly_as_candles_prompt_encoder() {
        let (theirs, ours) = both_encoders();

        let points = [
            (100.0f32, 700.0f32, true),
            (512.0, 3.0, false),
            (1000.0, 1000.0, true),
        ];
        let xy: Vec<f32> = points.iter().flat_map(|p| [p.0, p.1]).collect();
        let labels: Vec<f32> = points.iter().map(|p| if p.2 { 1.0 } else { 0.0 }).collect();
        let xy = Tensor::from_vec(xy, (1, 3, 2), &Device::Cpu).expect("xy");
        let labels = Tensor::from_vec(labels, (1, 3), &Device::Cpu).expect("labels");
        let (expected, _) = theirs
            .forward(Some((&xy, &labels)), None, None)
            .expect("candle");
        let got = ours
            .sparse(
                &FramePrompt {
                    points: points.to_vec(),
                    bbox: None,
                },
                &Device::Cpu,
            )
            .expect("ours");
        assert_eq!(got.dims(), expected.dims());
        let diff = (got - expected)
            .expect("sub")
            .abs()
            .expect("abs")
            .max_all()
            .expect("max")
            .to_scalar::<f32>()
            .expect("scalar");
        assert!(diff < 1e-4, "max difference {diff}");
    }

    #[test]
    fn a_box_adds_two_corner_tokens_and_no_padding() {
        let (_, ours) = both_encoders();
        let prompt = FramePrompt {
            points: vec![(10.0, 20.0, true)],
            bbox: Some([5.0, 5.0, 300.0, 400.0]),
        };
        let sparse = ours.sparse(&prompt, &Device::Cpu).expect("sparse");
        assert_eq!(sparse.dims(), &[1, 3, PROMPT_DIM]);
        // The corners carry the learned corner embeddings on top of their positions.
        let corner = sparse
            .i((0, 1))
            .expect("row")
            .to_vec1::<f32>()
            .expect("vec");
        let position = ours.encode(5.5, 5.5);
        let learned: Vec<f32> = corner.iter().zip(&position).map(|(c, p)| c - p).collect();
        let max_err = learned
            .iter()
            .zip(&ours.point[2])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_err < 1e-5);
    }

    /// Weights scaled like a trained network's, with batch-norm statistics away from the
    /// identity so that folding them into the convolutions is exercised.
    fn trained_like(varmap: &VarMap) {
        let data = varmap.data().lock().expect("lock");
        for (name, var) in data.iter() {
            let dims = var.dims().to_vec();
            let (lo, hi) = if name.ends_with("running_var") {
                (0.5, 1.5)
            } else if name.ends_with("running_mean") {
                (-0.2, 0.2)
            } else if name.ends_with("positional_encoding_gaussian_matrix") {
                (-1.0, 1.0)
            } else if dims.len() >= 2 {
                let a = (3.0 / dims[1..].iter().product::<usize>().max(1) as f64).sqrt();
                (-a, a)
            } else if name.ends_with("weight") {
                (0.75, 1.25)
            } else {
                (-0.1, 0.1)
            };
            let values =
                Tensor::rand(lo as f32, hi as f32, var.shape(), &Device::Cpu).expect("random");
            var.set(&values).expect("set");
        }
    }

    /// Our TinyViT (batch norms folded, the depthwise kernel, 1 × 1 products, the fused
    /// window attention) against candle's on the same weights: the embeddings agree to f32
    /// rounding, and the masks decoded from them for a click and for a box overlap almost
    /// exactly.
    #[test]
    fn our_tiny_vit_agrees_with_candles() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        SamNet::new(SamSize::Tiny, vb.clone()).expect("variables");
        trained_like(&varmap);
        let ours = SamNet::new(SamSize::Tiny, vb.clone()).expect("ours");
        let mut reference = SamNet::new(SamSize::Tiny, vb.clone()).expect("reference");
        reference.encoder = Encoder::ReferenceTiny(Box::new(
            candle_transformers::models::segment_anything::tiny_vit::tiny_vit_5m(
                vb.pp("image_encoder"),
            )
            .expect("candle's TinyViT"),
        ));
        let (w, h) = (1024, 768);
        let rgb: Vec<u8> = (0..w * h * 3)
            .map(|i| {
                let (p, c) = (i / 3, i % 3);
                let (x, y) = (p % w, p / w);
                ((x * (c + 1) + y * (3 - c) + (x / 97) * (y / 89) * 40) % 256) as u8
            })
            .collect();
        let a = ours
            .embed(&rgb, w, h, &|| false)
            .expect("ours")
            .expect("not stopped");
        let b = reference
            .embed(&rgb, w, h, &|| false)
            .expect("candle")
            .expect("not stopped");
        assert_eq!(a.dims(), &[1, PROMPT_DIM, 64, 64]);
        let scalar = |t: Tensor| t.to_scalar::<f32>().expect("scalar");
        let diff = scalar(
            (&a - &b)
                .expect("sub")
                .abs()
                .expect("abs")
                .max_all()
                .expect("max"),
        );
        let scale = scalar(b.abs().expect("abs").max_all().expect("max"));
        assert!(scale.is_finite() && scale > 0.0, "embedding scale {scale}");
        assert!(
            diff <= 1e-3 * scale,
            "max difference {diff} for values up to {scale}"
        );
        for prompt in [
            FramePrompt {
                points: vec![(500.0, 300.0, true)],
                bbox: None,
            },
            FramePrompt {
                points: vec![],
                bbox: Some([200.0, 150.0, 700.0, 600.0]),
            },
        ] {
            let (ma, _) = ours.decode(&a, &prompt, false).expect("ours");
            let (mb, _) = reference.decode(&b, &prompt, false).expect("candle");
            let (mut inter, mut union) = (0usize, 0usize);
            for (x, y) in ma[0].iter().zip(&mb[0]) {
                let (x, y) = (*x > 0.0, *y > 0.0);
                inter += usize::from(x && y);
                union += usize::from(x || y);
            }
            let iou = if union == 0 {
                1.0
            } else {
                inter as f64 / union as f64
            };
            assert!(iou >= 0.99, "mask IoU {iou} ({inter} of {union} pixels)");
        }
    }
}
