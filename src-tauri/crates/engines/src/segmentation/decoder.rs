//! Segment Anything's mask decoder: its layers and weights (`mask_decoder.*`, the names
//! candle's decoder reads), run one of two ways ([`Pass`]). Fine-tuning needs gradients to
//! reach the transformer, and candle 0.11's own decoder computes attention with
//! `softmax_last_dim` and its layer norms with a fused kernel, neither of which has a
//! backward pass; so [`Pass::Train`] is built from plain differentiable ops. Inference
//! ([`Pass::Infer`]) takes the fused kernels instead, and the upscaling's transposed
//! convolutions, channel norm and GELUs take the encoder's ([`upsample`], [`ChannelNorm`]),
//! where candle's decoder spent most of a re-prompt. Tests check both against candle's
//! decoder on the same weights.

use candle_core::{IndexOp, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use super::channel_norm::ChannelNorm;
use super::elementwise::{BiasGelu, Channels};
use super::token_attention::attend;
use super::upsample::upsample;

const DIM: usize = 256;
const HEADS: usize = 8;
const MLP_DIM: usize = 2048;
const MASK_TOKENS: usize = 4;

/// Which way a forward pass goes through the decoder's layers: the same arithmetic either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Elementary ops with a backward pass, so gradients reach every weight (fine-tuning).
    Train,
    /// Fused kernels without one (segmenting).
    Infer,
}

/// Layer norm over the last dimension, from elementary (differentiable) ops.
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }
}

impl Norm {
    fn apply(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        match pass {
            Pass::Train => self.forward(x),
            Pass::Infer => candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            ),
        }
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let x = x.broadcast_sub(&mean)?;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Layer norm over the channels of an `(n, c, h, w)` tensor.
struct Norm2d {
    weight: Tensor,
    bias: Tensor,
}

impl Norm2d {
    /// The norm, then GELU.
    fn apply_gelu(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        match pass {
            Pass::Train => self.forward(x)?.gelu(),
            Pass::Infer => {
                let normed =
                    ChannelNorm::from_tensors(&self.weight, &self.bias, 1e-6)?.forward(x)?;
                BiasGelu {
                    bias: None,
                    channels: Channels::Last,
                    gelu: true,
                }
                .apply(&normed)?;
                Ok(normed)
            }
        }
    }
}

impl Module for Norm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        let mean = x.mean_keepdim(1)?;
        let x = x.broadcast_sub(&mean)?;
        let var = x.sqr()?.mean_keepdim(1)?;
        x.broadcast_div(&(var + 1e-6)?.sqrt()?)?
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl Attention {
    fn new(downsample: usize, vb: VarBuilder) -> Result<Self> {
        let inner = DIM / downsample;
        Ok(Self {
            q: candle_nn::linear(DIM, inner, vb.pp("q_proj"))?,
            k: candle_nn::linear(DIM, inner, vb.pp("k_proj"))?,
            v: candle_nn::linear(DIM, inner, vb.pp("v_proj"))?,
            out: candle_nn::linear(inner, DIM, vb.pp("out_proj"))?,
        })
    }

    fn heads(x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        x.reshape((b, n, HEADS, c / HEADS))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor, pass: Pass) -> Result<Tensor> {
        if pass == Pass::Infer {
            let q = q.contiguous()?.apply(&self.q)?;
            let k = k.contiguous()?.apply(&self.k)?;
            let v = v.contiguous()?.apply(&self.v)?;
            return attend(&q, &k, &v, HEADS)?.apply(&self.out);
        }
        let q = Self::heads(&q.contiguous()?.apply(&self.q)?)?;
        let k = Self::heads(&k.contiguous()?.apply(&self.k)?)?;
        let v = Self::heads(&v.contiguous()?.apply(&self.v)?)?;
        let per_head = q.dim(D::Minus1)?;
        let attn = (q.matmul(&k.t()?)? / (per_head as f64).sqrt())?;
        let attn = candle_nn::ops::softmax(&attn, D::Minus1)?;
        let out = attn.matmul(&v)?;
        let (b, h, n, c) = out.dims4()?;
        out.transpose(1, 2)?
            .reshape((b, n, h * c))?
            .apply(&self.out)
    }
}

struct Block {
    self_attn: Attention,
    norm1: Norm,
    token_to_image: Attention,
    norm2: Norm,
    lin1: Linear,
    lin2: Linear,
    norm3: Norm,
    norm4: Norm,
    image_to_token: Attention,
    skip_first_pe: bool,
}

impl Block {
    fn new(skip_first_pe: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(1, vb.pp("self_attn"))?,
            norm1: Norm::new(DIM, 1e-5, vb.pp("norm1"))?,
            token_to_image: Attention::new(2, vb.pp("cross_attn_token_to_image"))?,
            norm2: Norm::new(DIM, 1e-5, vb.pp("norm2"))?,
            lin1: candle_nn::linear(DIM, MLP_DIM, vb.pp("mlp.lin1"))?,
            lin2: candle_nn::linear(MLP_DIM, DIM, vb.pp("mlp.lin2"))?,
            norm3: Norm::new(DIM, 1e-5, vb.pp("norm3"))?,
            norm4: Norm::new(DIM, 1e-5, vb.pp("norm4"))?,
            image_to_token: Attention::new(2, vb.pp("cross_attn_image_to_token"))?,
            skip_first_pe,
        })
    }

    fn forward(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        query_pe: &Tensor,
        key_pe: &Tensor,
        pass: Pass,
    ) -> Result<(Tensor, Tensor)> {
        let queries = if self.skip_first_pe {
            self.self_attn.forward(queries, queries, queries, pass)?
        } else {
            let q = (queries + query_pe)?;
            (queries + self.self_attn.forward(&q, &q, queries, pass)?)?
        };
        let queries = self.norm1.apply(&queries, pass)?;
        let q = (&queries + query_pe)?;
        // The image tokens with their positions, for both cross attentions.
        let k = (keys + key_pe)?;
        let queries = (&queries + self.token_to_image.forward(&q, &k, keys, pass)?)?;
        let queries = self.norm2.apply(&queries, pass)?;
        let mlp = queries.apply(&self.lin1)?.relu()?.apply(&self.lin2)?;
        let queries = self.norm3.apply(&(queries + mlp)?, pass)?;
        let q = (&queries + query_pe)?;
        let keys = (keys + self.image_to_token.forward(&k, &q, &queries, pass)?)?;
        let keys = self.norm4.apply(&keys, pass)?;
        Ok((queries, keys))
    }
}

/// SAM's 2×2, stride-2 transposed convolution. The kernel tiles the output without overlap,
/// so it is one matrix product per pixel — far faster on the CPU (forward and backward) than
/// candle's general transposed convolution, and the same numbers.
struct Upsample {
    /// `(in, out · 2 · 2)`.
    weight: Tensor,
    bias: Tensor,
    out: usize,
}

impl Upsample {
    fn new(inp: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((inp, out, 2, 2), "weight")?;
        Ok(Self {
            weight: weight.reshape((inp, out * 4))?,
            bias: vb.get(out, "bias")?,
            out,
        })
    }
}

impl Upsample {
    /// `x` is `(b, c, h · w)`, channels first (a transposed view is fine); returns
    /// `(b, out, 2h, 2w)`, with GELU applied if `gelu`.
    fn apply(&self, x: &Tensor, (h, w): (usize, usize), pass: Pass, gelu: bool) -> Result<Tensor> {
        match pass {
            Pass::Train => {
                let (b, c, _) = x.dims3()?;
                let up = self.forward(&x.reshape((b, c, h, w))?)?;
                if gelu {
                    up.gelu()
                } else {
                    Ok(up)
                }
            }
            Pass::Infer => {
                let bias = self.bias.to_vec1::<f32>()?;
                upsample(x, (h, w), &self.weight, &bias, gelu)
            }
        }
    }
}

impl Module for Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let o = self.out;
        let pixels = x.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?;
        pixels
            .matmul(&self.weight)? // (b·h·w, o·2·2)
            .reshape((b, h, w, o, 2, 2))?
            .permute((0, 3, 1, 4, 2, 5))? // (b, o, h, 2, w, 2)
            .reshape((b, o, 2 * h, 2 * w))?
            .broadcast_add(&self.bias.reshape((1, o, 1, 1))?)
    }
}

struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn new(hidden: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("layers");
        Ok(Self {
            layers: vec![
                candle_nn::linear(DIM, hidden, vb.pp(0))?,
                candle_nn::linear(hidden, hidden, vb.pp(1))?,
                candle_nn::linear(hidden, out, vb.pp(2))?,
            ],
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = x.apply(layer)?;
            if i + 1 < self.layers.len() {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// The mask decoder (two-way transformer, upscaling, hypernetworks, IoU head).
pub(crate) struct MaskDecoder {
    iou_token: Tensor,
    mask_tokens: Tensor,
    blocks: Vec<Block>,
    final_attn: Attention,
    norm_final: Norm,
    up1: Upsample,
    up_norm: Norm2d,
    up2: Upsample,
    hyper: Vec<Mlp>,
    iou_head: Mlp,
}

impl MaskDecoder {
    /// Builds the decoder from `vb` (prefix `mask_decoder` already applied).
    pub(crate) fn new(vb: VarBuilder) -> Result<Self> {
        let t = vb.pp("transformer");
        Ok(Self {
            iou_token: vb.get((1, DIM), "iou_token.weight")?,
            mask_tokens: vb.get((MASK_TOKENS, DIM), "mask_tokens.weight")?,
            blocks: vec![
                Block::new(true, t.pp("layers.0"))?,
                Block::new(false, t.pp("layers.1"))?,
            ],
            final_attn: Attention::new(2, t.pp("final_attn_token_to_image"))?,
            norm_final: Norm::new(DIM, 1e-5, t.pp("norm_final_attn"))?,
            up1: Upsample::new(DIM, DIM / 4, vb.pp("output_upscaling.0"))?,
            up_norm: Norm2d {
                weight: vb.pp("output_upscaling.1").get(DIM / 4, "weight")?,
                bias: vb.pp("output_upscaling.1").get(DIM / 4, "bias")?,
            },
            up2: Upsample::new(DIM / 4, DIM / 8, vb.pp("output_upscaling.3"))?,
            hyper: (0..MASK_TOKENS)
                .map(|i| Mlp::new(DIM, DIM / 8, vb.pp("output_hypernetworks_mlps").pp(i)))
                .collect::<Result<_>>()?,
            iou_head: Mlp::new(256, MASK_TOKENS, vb.pp("iou_prediction_head"))?,
        })
    }

    /// All four masks (`(1, 4, 256, 256)` logits) and their predicted IoU (`(1, 4)`) for one
    /// prompt: mask 0 answers an unambiguous prompt, masks 1–3 a single click.
    pub(crate) fn forward(
        &self,
        embeddings: &Tensor,
        image_pe: &Tensor,
        sparse: &Tensor,
        dense: &Tensor,
        pass: Pass,
    ) -> Result<(Tensor, Tensor)> {
        let output_tokens = Tensor::cat(&[&self.iou_token, &self.mask_tokens], 0)?.unsqueeze(0)?;
        let tokens = Tensor::cat(&[&output_tokens, sparse], 1)?;
        let src = embeddings.broadcast_add(dense)?;
        let (b, _, h, w) = src.dims4()?;
        // Token-major and contiguous once, not strided through every block's additions.
        let keys0 = src.flatten_from(2)?.permute((0, 2, 1))?.contiguous()?;
        let key_pe = image_pe.flatten_from(2)?.permute((0, 2, 1))?.contiguous()?;
        let (mut queries, mut keys) = (tokens.clone(), keys0);
        for block in &self.blocks {
            (queries, keys) = block.forward(&queries, &keys, &tokens, &key_pe, pass)?;
        }
        let q = (&queries + &tokens)?;
        let k = (&keys + &key_pe)?;
        let queries = (&queries + self.final_attn.forward(&q, &k, &keys, pass)?)?;
        let hs = self.norm_final.apply(&queries, pass)?;

        let upscaled = self
            .up1
            .apply(&keys.transpose(1, 2)?, (h, w), pass, false)?;
        let upscaled = self.up_norm.apply_gelu(&upscaled, pass)?;
        let (_, c_up, h_up, w_up) = upscaled.dims4()?;
        let upscaled = self.up2.apply(
            &upscaled.reshape((b, c_up, h_up * w_up))?,
            (h_up, w_up),
            pass,
            true,
        )?;
        let hyper_in = self
            .hyper
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(&hs.i((.., 1 + i))?))
            .collect::<Result<Vec<_>>>()?;
        let hyper_in = Tensor::stack(&hyper_in, 1)?.contiguous()?;
        let (b, c, h, w) = upscaled.dims4()?;
        let masks = hyper_in
            .matmul(&upscaled.reshape((b, c, h * w))?)?
            .reshape((b, MASK_TOKENS, h, w))?;
        let iou = self.iou_head.forward(&hs.i((.., 0))?)?;
        Ok((masks, iou))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use candle_transformers::models::segment_anything::mask_decoder::MaskDecoder as CandleDecoder;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff")
    }

    #[test]
    fn both_passes_match_candles_mask_decoder_on_the_same_weights() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let theirs = CandleDecoder::new(DIM, 3, 3, 256, vb.pp("mask_decoder")).expect("candle");
        {
            let data = varmap.data().lock().expect("lock");
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for (i, name) in names.into_iter().enumerate() {
                let var = &data[name];
                let n = var.elem_count();
                let values: Vec<f32> = (0..n)
                    .map(|j| (((j * 7919 + i * 104_729) % 2001) as f32 / 1000.0 - 1.0) * 0.05)
                    .collect();
                var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).expect("t"))
                    .expect("set");
            }
        }
        let ours = MaskDecoder::new(vb.pp("mask_decoder")).expect("ours");
        let dev = Device::Cpu;
        let embeddings = Tensor::randn(0f32, 1.0, (1, DIM, 64, 64), &dev).expect("e");
        let pe = Tensor::randn(0f32, 1.0, (1, DIM, 64, 64), &dev).expect("pe");
        let sparse = Tensor::randn(0f32, 1.0, (1, 3, DIM), &dev).expect("s");
        let dense = Tensor::randn(0f32, 1.0, (1, DIM, 1, 1), &dev)
            .and_then(|d| d.expand((1, DIM, 64, 64)))
            .expect("d");
        for pass in [Pass::Train, Pass::Infer] {
            let (masks, iou) = ours
                .forward(&embeddings, &pe, &sparse, &dense, pass)
                .expect("ours");
            for multimask in [false, true] {
                let (m, i) = theirs
                    .forward(&embeddings, &pe, &sparse, &dense, multimask)
                    .expect("candle");
                let range = if multimask { 1..4 } else { 0..1 };
                let our_m = masks.i((.., range.clone())).expect("m");
                let our_i = iou.i((.., range)).expect("i");
                assert_eq!(our_m.dims(), m.dims());
                let scale = m
                    .abs()
                    .and_then(|a| a.max_all())
                    .and_then(|a| a.to_scalar::<f32>())
                    .expect("s");
                assert!(scale > 0.0 && scale.is_finite());
                assert!(
                    max_diff(&our_m, &m) <= 1e-3 * scale.max(1.0),
                    "masks differ ({pass:?})"
                );
                assert!(
                    max_diff(&our_i, &i) <= 1e-4,
                    "IoU predictions differ ({pass:?})"
                );
            }
        }
    }
}
