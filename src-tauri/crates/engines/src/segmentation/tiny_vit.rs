//! MobileSAM's TinyViT-5M image encoder, for inference on the CPU.
//!
//! Adapted from candle-transformers 0.11.1 (`models/segment_anything/tiny_vit.rs`, MIT or
//! Apache-2.0, itself adapted from MobileSAM's `tiny_vit_sam.py`): the same weights, names and
//! arithmetic, with changes found by profiling the encoder (docs/benchmarks.md):
//! - every batch norm is folded into the convolution before it when the weights are loaded,
//!   so a `Conv2dBN` is one convolution with a bias;
//! - depthwise convolutions run [`DepthwiseConv2d`] instead of candle's one-convolution-per-
//!   group loop;
//! - 1 × 1 convolutions and the attention's linear layers run as one matrix product each,
//!   without the im2col copy; a convolution's bias and GELU are one in-place pass
//!   ([`BiasGelu`]), and the attention's biases are added by the kernels that read the
//!   products (the window attention, the residual);
//! - the windowed attention reads q, k and v in grid order and writes each token's heads in
//!   place of candle's padding, window partition, batched products and reverse partition
//!   ([`WindowAttention`]);
//! - dense convolutions (the patch embedding, the neck) multiply the weights by a tap-major
//!   column matrix built a band of rows at a time, so the product is already channels-first
//!   ([`DenseConv2d`]);
//! - the MBConv blocks, and the transformer blocks' MLPs with their residuals, run in bands
//!   of rows whose intermediate tensors stay in cache ([`BandedMbConv`], [`BandedMlp`]);
//! - the local convolution runs on the tokens as they are, channels last ([`ChannelsLast`]),
//!   and the neck's layer norms are two passes each ([`ChannelNorm`]).
//!
//! `network::tests::our_tiny_vit_agrees_with_candles` checks the result against candle's own TinyViT
//! on the same weights.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use super::banded_mlp::BandedMlp;
use super::channel_norm::ChannelNorm;
use super::dense_conv::{product_per_image, DenseConv2d};
use super::depthwise::{ChannelsLast, DepthwiseConv2d};
use super::elementwise::{AddInPlace, BiasGelu, Channels};
use super::mbconv::BandedMbConv;
use super::window_attention::{WindowAttention, WindowShape};

const MBCONV_EXPAND_RATIO: usize = 4;
const MLP_RATIO: usize = 4;
const LOCAL_CONV_SIZE: usize = 3;
const IMG_SIZE: usize = 1024;
const IN_CHANNELS: usize = 3;
const BN_EPS: f64 = 1e-5;

/// TinyViT-5M's shape: the stages' widths, depths, heads and attention windows.
pub(crate) const EMBED_DIMS: [usize; 4] = [64, 128, 160, 320];
pub(crate) const DEPTHS: [usize; 4] = [2, 2, 6, 2];
pub(crate) const NUM_HEADS: [usize; 4] = [2, 4, 5, 10];
pub(crate) const WINDOW_SIZES: [usize; 4] = [7, 7, 14, 7];

/// Whether a patch-merging step into `out` channels keeps the resolution (MobileSAM keeps
/// the last stage at 64 × 64).
pub(crate) fn merging_stride(out: usize) -> usize {
    if [320, 448, 576].contains(&out) {
        1
    } else {
        2
    }
}

/// A convolution whose batch norm (if any) has been folded into its weight and bias, and
/// the GELU after it, if any.
#[derive(Debug)]
struct FusedConv {
    kind: ConvKind,
    gelu: bool,
}

#[derive(Debug)]
enum ConvKind {
    /// 1 × 1: `weight` is `(out, in)`.
    Pointwise {
        weight: Tensor,
        bias: Option<Vec<f32>>,
    },
    /// Depthwise, its GELU (if any) fused in.
    Depthwise(DepthwiseConv2d),
    /// Every input channel into every output channel, as one product.
    Dense {
        conv: DenseConv2d,
        bias: Option<Vec<f32>>,
    },
    /// Anything else (grouped or dilated: not in TinyViT), candle's own.
    Other { conv: candle_nn::Conv2d },
}

impl FusedConv {
    /// A convolution without bias followed by a batch norm (`c.weight`, `bn.*`).
    fn with_batch_norm(
        in_: usize,
        out: usize,
        ks: usize,
        cfg: Conv2dConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::with_batch_norm_then(in_, out, ks, cfg, false, vb)
    }

    /// [`Self::with_batch_norm`] followed by GELU.
    fn with_batch_norm_gelu(
        in_: usize,
        out: usize,
        ks: usize,
        cfg: Conv2dConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::with_batch_norm_then(in_, out, ks, cfg, true, vb)
    }

    fn with_batch_norm_then(
        in_: usize,
        out: usize,
        ks: usize,
        cfg: Conv2dConfig,
        gelu: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((out, in_ / cfg.groups, ks, ks), "c.weight")?;
        let bn = vb.pp("bn");
        let mean = bn.get(out, "running_mean")?;
        let var = bn.get(out, "running_var")?;
        let gamma = bn.get(out, "weight")?;
        let beta = bn.get(out, "bias")?;
        // y = (conv(x) − mean) / √(var + ε) · γ + β = conv(x) · s + (β − mean · s)
        let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let bias = (beta - (mean * &scale)?)?;
        let weight = weight.broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
        Self::from_parts(weight, Some(bias), cfg, gelu)
    }

    /// A convolution without batch norm or bias (`weight`).
    fn plain(in_: usize, out: usize, ks: usize, cfg: Conv2dConfig, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out, in_ / cfg.groups, ks, ks), "weight")?;
        Self::from_parts(weight, None, cfg, false)
    }

    fn from_parts(
        weight: Tensor,
        bias: Option<Tensor>,
        cfg: Conv2dConfig,
        gelu: bool,
    ) -> Result<Self> {
        let (out, per_group, kh, kw) = weight.dims4()?;
        let simple = cfg.dilation == 1;
        let pointwise =
            simple && cfg.groups == 1 && (kh, kw) == (1, 1) && cfg.stride == 1 && cfg.padding == 0;
        let kind = if pointwise {
            ConvKind::Pointwise {
                weight: weight.reshape((out, per_group))?,
                bias: bias.map(|b| b.to_vec1::<f32>()).transpose()?,
            }
        } else if simple && cfg.groups == out && per_group == 1 {
            let bias = match bias {
                Some(b) => b,
                None => Tensor::zeros(out, weight.dtype(), weight.device())?,
            };
            let op = DepthwiseConv2d::new(&weight, &bias, cfg.stride, cfg.padding)?;
            ConvKind::Depthwise(if gelu { op.then_gelu() } else { op })
        } else if simple && cfg.groups == 1 {
            ConvKind::Dense {
                conv: DenseConv2d::new(&weight, cfg.stride, cfg.padding)?,
                bias: bias.map(|b| b.to_vec1::<f32>()).transpose()?,
            }
        } else {
            ConvKind::Other {
                conv: candle_nn::Conv2d::new(weight, bias, cfg),
            }
        };
        Ok(Self { kind, gelu })
    }
}

impl FusedConv {
    /// `ys`, a product just computed `(b, c, h, w)`, with its bias and GELU applied in place.
    fn bias_gelu_in_place(&self, ys: Tensor, bias: Option<&[f32]>) -> Result<Tensor> {
        let (_, _, h, w) = ys.dims4()?;
        BiasGelu {
            bias,
            channels: Channels::First { plane: h * w },
            gelu: self.gelu,
        }
        .apply(&ys)?;
        Ok(ys)
    }
}

impl Module for FusedConv {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.kind {
            ConvKind::Pointwise { weight, bias } => {
                let (b, c, h, w) = xs.dims4()?;
                let ys = product_per_image(weight, &xs.reshape((b, c, h * w))?)?;
                self.bias_gelu_in_place(ys.reshape((b, weight.dim(0)?, h, w))?, bias.as_deref())
            }
            ConvKind::Depthwise(op) => xs.contiguous()?.apply_op1_no_bwd(op),
            ConvKind::Dense { conv, bias } => conv.forward(xs, bias.as_deref(), self.gelu),
            // candle's convolution (and its bias add) made a new tensor.
            ConvKind::Other { conv } => self.bias_gelu_in_place(conv.forward(xs)?, None),
        }
    }
}

#[derive(Debug)]
struct PatchEmbed {
    conv1: FusedConv,
    conv2: FusedConv,
}

impl PatchEmbed {
    fn new(in_chans: usize, embed_dim: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let conv1 =
            FusedConv::with_batch_norm_gelu(in_chans, embed_dim / 2, 3, cfg, vb.pp("seq.0"))?;
        let conv2 = FusedConv::with_batch_norm(embed_dim / 2, embed_dim, 3, cfg, vb.pp("seq.2"))?;
        Ok(Self { conv1, conv2 })
    }
}

impl Module for PatchEmbed {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.apply(&self.conv1)?.apply(&self.conv2)
    }
}

/// MobileSAM's MBConv block, run in bands of rows ([`BandedMbConv`]).
#[derive(Debug)]
struct MBConv {
    /// `(hidden, in)` and its bias (batch norm folded); GELU follows.
    expand: (Vec<f32>, Vec<f32>),
    /// 3 × 3 over `hidden` channels, batch norm folded, GELU fused.
    depthwise: DepthwiseConv2d,
    /// `(out, hidden)` and its bias; the residual and GELU follow.
    project: (Vec<f32>, Vec<f32>),
}

impl MBConv {
    fn new(in_: usize, out: usize, expand_ratio: usize, vb: VarBuilder) -> Result<Self> {
        let hidden = in_ * expand_ratio;
        let cfg2 = Conv2dConfig {
            padding: 1,
            groups: hidden,
            ..Default::default()
        };
        let conv1 =
            FusedConv::with_batch_norm_gelu(in_, hidden, 1, Default::default(), vb.pp("conv1"))?;
        let conv2 = FusedConv::with_batch_norm_gelu(hidden, hidden, 3, cfg2, vb.pp("conv2"))?;
        let conv3 = FusedConv::with_batch_norm(hidden, out, 1, Default::default(), vb.pp("conv3"))?;
        let (
            ConvKind::Pointwise {
                weight: expand,
                bias: Some(expand_bias),
            },
            ConvKind::Depthwise(depthwise),
            ConvKind::Pointwise {
                weight: project,
                bias: Some(project_bias),
            },
        ) = (conv1.kind, conv2.kind, conv3.kind)
        else {
            candle_core::bail!("an MBConv block is a 1 × 1, a depthwise and a 1 × 1 convolution");
        };
        Ok(Self {
            expand: (expand.flatten_all()?.to_vec1::<f32>()?, expand_bias),
            depthwise,
            project: (project.flatten_all()?.to_vec1::<f32>()?, project_bias),
        })
    }
}

impl Module for MBConv {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        xs.contiguous()?.apply_op1_no_bwd(&BandedMbConv {
            expand: (&self.expand.0, &self.expand.1),
            depthwise: &self.depthwise,
            project: (&self.project.0, &self.project.1),
        })
    }
}

#[derive(Debug)]
struct PatchMerging {
    conv1: FusedConv,
    conv2: FusedConv,
    conv3: FusedConv,
    input_resolution: (usize, usize),
}

impl PatchMerging {
    fn new(
        input_resolution: (usize, usize),
        dim: usize,
        out: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg2 = Conv2dConfig {
            padding: 1,
            stride: merging_stride(out),
            groups: out,
            ..Default::default()
        };
        Ok(Self {
            conv1: FusedConv::with_batch_norm_gelu(
                dim,
                out,
                1,
                Default::default(),
                vb.pp("conv1"),
            )?,
            conv2: FusedConv::with_batch_norm_gelu(out, out, 3, cfg2, vb.pp("conv2"))?,
            conv3: FusedConv::with_batch_norm(out, out, 1, Default::default(), vb.pp("conv3"))?,
            input_resolution,
        })
    }
}

impl Module for PatchMerging {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = if xs.rank() == 3 {
            let (h, w) = self.input_resolution;
            let b = xs.dim(0)?;
            xs.reshape((b, h, w, ()))?.permute((0, 3, 1, 2))?
        } else {
            xs.clone()
        };
        let filtered = xs.apply(&self.conv1)?.apply(&self.conv2)?;
        match &self.conv3.kind {
            // The last 1 × 1 convolution multiplies the transposed planes, so its product is
            // already row-major tokens (what the next block's kernels read), without a copy.
            ConvKind::Pointwise { weight, bias } => {
                let tokens = filtered.flatten_from(2)?.transpose(1, 2)?;
                let ys = tokens.broadcast_matmul(&weight.t()?)?;
                BiasGelu {
                    bias: bias.as_deref(),
                    channels: Channels::Last,
                    gelu: self.conv3.gelu,
                }
                .apply(&ys)?;
                Ok(ys)
            }
            _ => filtered
                .apply(&self.conv3)?
                .flatten_from(2)?
                .transpose(1, 2)?
                .contiguous(),
        }
    }
}

#[derive(Debug)]
struct ConvLayer {
    blocks: Vec<MBConv>,
    downsample: Option<PatchMerging>,
}

impl ConvLayer {
    fn new(
        dim: usize,
        out: usize,
        input_resolution: (usize, usize),
        depth: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb_b = vb.pp("blocks");
        let blocks = (0..depth)
            .map(|i| MBConv::new(dim, dim, MBCONV_EXPAND_RATIO, vb_b.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let downsample = Some(PatchMerging::new(
            input_resolution,
            dim,
            out,
            vb.pp("downsample"),
        )?);
        Ok(Self { blocks, downsample })
    }
}

/// One stage of the encoder: its blocks in order, then its downsampling if it has one.
fn forward_stage<B: Module>(
    blocks: &[B],
    downsample: Option<&PatchMerging>,
    xs: &Tensor,
) -> Result<Tensor> {
    let mut xs = xs.clone();
    for block in blocks {
        xs = block.forward(&xs)?;
    }
    match downsample {
        None => Ok(xs),
        Some(downsample) => downsample.forward(&xs),
    }
}

impl Module for ConvLayer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        forward_stage(&self.blocks, self.downsample.as_ref(), xs)
    }
}

/// A linear layer on channels-last rows: its product, whose bias the next kernel adds.
#[derive(Debug)]
struct RowLinear {
    /// `(out, in)`, as stored.
    weight: Tensor,
    bias: Vec<f32>,
}

impl RowLinear {
    fn new(in_: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out, in_), "weight")?,
            bias: vb.get(out, "bias")?.to_vec1::<f32>()?,
        })
    }
}

impl RowLinear {
    /// The product alone, without the bias: `(…, in)` to `(…, out)`.
    fn product(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims().to_vec();
        let Some((&c, lead)) = dims.split_last() else {
            candle_core::bail!("a linear layer needs at least one dimension");
        };
        let rows: usize = lead.iter().product();
        let ys = xs.reshape((rows, c))?.matmul(&self.weight.t()?)?;
        let mut out = lead.to_vec();
        out.push(self.bias.len());
        ys.reshape(out)
    }
}

/// A TinyViT block's MLP (`mlp.norm`, `mlp.fc1`, `mlp.fc2`), run with its residual in
/// bands of rows ([`BandedMlp`]).
fn mlp(in_: usize, hidden: usize, vb: VarBuilder) -> Result<BandedMlp> {
    let values = |t: Tensor| t.flatten_all()?.to_vec1::<f32>();
    let (norm, fc1, fc2) = (vb.pp("norm"), vb.pp("fc1"), vb.pp("fc2"));
    BandedMlp::new(
        (
            values(norm.get(in_, "weight")?)?,
            values(norm.get(in_, "bias")?)?,
            1e-5,
        ),
        (
            values(fc1.get((hidden, in_), "weight")?)?,
            values(fc1.get(hidden, "bias")?)?,
        ),
        (
            values(fc2.get((in_, hidden), "weight")?)?,
            values(fc2.get(in_, "bias")?)?,
        ),
    )
}

/// A TinyViT block's attention: layer norm, the `qkv` projection over the whole grid, the
/// windowed attention in one pass ([`WindowAttention`]), then the `proj` projection.
#[derive(Debug)]
struct Attention {
    norm: candle_nn::LayerNorm,
    qkv: RowLinear,
    proj: RowLinear,
    windows: WindowAttention,
}

impl Attention {
    fn new(
        dim: usize,
        num_heads: usize,
        window_size: usize,
        grid: (usize, usize),
        vb: VarBuilder,
    ) -> Result<Self> {
        // TinyViT's attention ratio is 1: values are as wide as keys.
        let key_dim = dim / num_heads;
        let value_dim = key_dim;
        let norm = candle_nn::layer_norm(dim, 1e-5, vb.pp("norm"))?;
        let qkv = RowLinear::new(dim, num_heads * (2 * key_dim + value_dim), vb.pp("qkv"))?;
        let proj = RowLinear::new(num_heads * value_dim, dim, vb.pp("proj"))?;

        // The bias between two tokens of a window depends on their offset.
        let points = (0..window_size)
            .flat_map(|x| (0..window_size).map(move |y| (x as i64, y as i64)))
            .collect::<Vec<_>>();
        let mut idxs = Vec::with_capacity(points.len() * points.len());
        let mut attention_offsets = std::collections::HashMap::new();
        for &(x1, y1) in &points {
            for &(x2, y2) in &points {
                let offset = ((x2 - x1).abs(), (y2 - y1).abs());
                let l = attention_offsets.len();
                let idx = attention_offsets.entry(offset).or_insert(l);
                idxs.push(*idx as u32)
            }
        }
        let attention_biases = vb.get((num_heads, attention_offsets.len()), "attention_biases")?;
        let idxs = Tensor::new(idxs, attention_biases.device())?;
        let bias = attention_biases
            .index_select(&idxs, 1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        // A token of the padding is zero before the layer norm.
        let pad = qkv
            .product(
                &Tensor::zeros(
                    (1, dim),
                    attention_biases.dtype(),
                    attention_biases.device(),
                )?
                .apply(&norm)?,
            )?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let shape = WindowShape {
            heads: num_heads,
            key_dim,
            value_dim,
            window: window_size,
            grid,
        };
        let scale = 1f32 / (key_dim as f32).sqrt();
        let windows = WindowAttention::new(shape, scale, bias, pad, qkv.bias.clone())?;
        Ok(Self {
            norm,
            qkv,
            proj,
            windows,
        })
    }
}

impl Attention {
    /// `(b, h · w, dim)` tokens in grid order to the same, without the `proj` bias (the
    /// block adds it with the residual). The `qkv` bias is added inside [`WindowAttention`].
    fn forward_without_bias(&self, xs: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.product(&xs.apply(&self.norm)?)?;
        self.proj.product(&qkv.apply_op1_no_bwd(&self.windows)?)
    }
}

#[derive(Debug)]
struct TinyViTBlock {
    attn: Attention,
    local_conv: FusedConv,
    mlp: BandedMlp,
    input_resolution: (usize, usize),
}

impl TinyViTBlock {
    fn new(
        dim: usize,
        input_resolution: (usize, usize),
        num_heads: usize,
        window_size: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let attn = Attention::new(dim, num_heads, window_size, input_resolution, vb.pp("attn"))?;
        let mlp = mlp(dim, dim * MLP_RATIO, vb.pp("mlp"))?;
        let cfg = Conv2dConfig {
            padding: LOCAL_CONV_SIZE / 2,
            groups: dim,
            ..Default::default()
        };
        let local_conv =
            FusedConv::with_batch_norm(dim, dim, LOCAL_CONV_SIZE, cfg, vb.pp("local_conv"))?;
        Ok(Self {
            attn,
            local_conv,
            mlp,
            input_resolution,
        })
    }
}

impl Module for TinyViTBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (h, w) = self.input_resolution;
        let (b, l, c) = xs.dims3()?;
        let attended = self.attn.forward_without_bias(xs)?;
        AddInPlace {
            bias: Some(&self.attn.proj.bias),
            gelu: false,
        }
        .apply(&attended, xs)?;
        let xs = attended;
        let xs = match &self.local_conv.kind {
            // Channels-last in and out: the MLP's layer norm takes candle's fused path.
            ConvKind::Depthwise(conv) => {
                xs.apply_op1_no_bwd(&ChannelsLast { conv, grid: (h, w) })?
            }
            _ => xs
                .transpose(1, 2)?
                .reshape((b, c, h, w))?
                .apply(&self.local_conv)?
                .reshape((b, c, l))?
                .transpose(1, 2)?
                .contiguous()?,
        };
        xs.apply_op1_no_bwd(&self.mlp)
    }
}

#[derive(Debug)]
struct BasicLayer {
    blocks: Vec<TinyViTBlock>,
    downsample: Option<PatchMerging>,
}

impl BasicLayer {
    #[allow(clippy::too_many_arguments)]
    fn new(
        dim: usize,
        input_resolution: (usize, usize),
        depth: usize,
        num_heads: usize,
        window_size: usize,
        downsample: bool,
        out: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb_b = vb.pp("blocks");
        let blocks = (0..depth)
            .map(|i| TinyViTBlock::new(dim, input_resolution, num_heads, window_size, vb_b.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let downsample = if downsample {
            Some(PatchMerging::new(
                input_resolution,
                dim,
                out,
                vb.pp("downsample"),
            )?)
        } else {
            None
        };
        Ok(Self { blocks, downsample })
    }
}

impl Module for BasicLayer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        forward_stage(&self.blocks, self.downsample.as_ref(), xs)
    }
}

/// MobileSAM's image encoder: `(1, 3, 1024, 1024)` normalised pixels to a
/// `(1, 256, 64, 64)` embedding.
#[derive(Debug)]
pub(crate) struct TinyViT {
    patch_embed: PatchEmbed,
    layer0: ConvLayer,
    layers: Vec<BasicLayer>,
    neck_conv1: FusedConv,
    neck_ln1: ChannelNorm,
    neck_conv2: FusedConv,
    neck_ln2: ChannelNorm,
}

impl TinyViT {
    /// TinyViT-5M from `vb` (the `image_encoder.` prefix of a MobileSAM checkpoint).
    pub(crate) fn tiny_vit_5m(vb: VarBuilder) -> Result<Self> {
        let patch_embed = PatchEmbed::new(IN_CHANNELS, EMBED_DIMS[0], vb.pp("patch_embed"))?;
        let patches_resolution = IMG_SIZE / 4;
        let vb_l = vb.pp("layers");
        let layer0 = ConvLayer::new(
            EMBED_DIMS[0],
            EMBED_DIMS[1],
            (patches_resolution, patches_resolution),
            DEPTHS[0],
            vb_l.pp(0),
        )?;
        let num_layers = EMBED_DIMS.len();
        let layers = (1..num_layers)
            .map(|i| {
                let resolution = patches_resolution / (1 << usize::min(i, 2));
                BasicLayer::new(
                    EMBED_DIMS[i],
                    (resolution, resolution),
                    DEPTHS[i],
                    NUM_HEADS[i],
                    WINDOW_SIZES[i],
                    i < num_layers - 1,
                    EMBED_DIMS[usize::min(i + 1, num_layers - 1)],
                    vb_l.pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let last = EMBED_DIMS[num_layers - 1];
        let neck_conv1 = FusedConv::plain(last, 256, 1, Default::default(), vb.pp("neck.0"))?;
        let neck_ln1 = ChannelNorm::new(256, 1e-6, vb.pp("neck.1"))?;
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let neck_conv2 = FusedConv::plain(256, 256, 3, cfg, vb.pp("neck.2"))?;
        let neck_ln2 = ChannelNorm::new(256, 1e-6, vb.pp("neck.3"))?;
        Ok(Self {
            patch_embed,
            layer0,
            layers,
            neck_conv1,
            neck_ln1,
            neck_conv2,
            neck_ln2,
        })
    }
}

impl TinyViT {
    /// The embedding, or `None` if `stop` answers `true` after one of the five stages.
    pub(crate) fn forward_unless_stopped(
        &self,
        xs: &Tensor,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Tensor>> {
        let xs = self.patch_embed.forward(xs)?;
        let mut xs = self.layer0.forward(&xs)?;
        for layer in &self.layers {
            if stop() {
                return Ok(None);
            }
            xs = layer.forward(&xs)?
        }
        if stop() {
            return Ok(None);
        }
        self.neck(&xs).map(Some)
    }

    fn neck(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, _, c) = xs.dims3()?;
        xs.reshape((b, 64, 64, c))?
            .permute((0, 3, 1, 2))?
            .apply(&self.neck_conv1)?
            .apply(&self.neck_ln1)?
            .apply(&self.neck_conv2)?
            .apply(&self.neck_ln2)
    }
}
