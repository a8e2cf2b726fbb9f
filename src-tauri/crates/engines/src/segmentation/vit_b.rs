//! SAM's ViT image encoder (ViT-B in Dormouse's catalog), adapted from candle's
//! `segment_anything::image_encoder` (MIT/Apache-2.0): the same modules, weights and
//! arithmetic, with the attention's core replaced by [`RelPosAttention`], which never builds
//! the global blocks' 805 MB score tensors.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};
use candle_transformers::models::segment_anything::{linear, LayerNorm2d, Linear, MlpBlock};

use super::network::{IMAGE_SIZE, PATCH, PROMPT_DIM};
use super::rel_pos_attention::RelPosAttention;

/// The encoder's shape (SAM's `ImageEncoderViT` arguments, relative positions and absolute
/// position embeddings on, as in every SAM checkpoint).
#[derive(Debug, Clone, Copy)]
pub(crate) struct VitConfig<'a> {
    pub img_size: usize,
    pub patch_size: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub out_chans: usize,
    pub window_size: usize,
    pub global_attn_indexes: &'a [usize],
}

impl VitConfig<'static> {
    /// SAM ViT-B.
    pub(crate) const VIT_B: Self = Self {
        img_size: IMAGE_SIZE,
        patch_size: PATCH,
        embed_dim: 768,
        depth: 12,
        num_heads: 12,
        out_chans: PROMPT_DIM,
        window_size: 14,
        global_attn_indexes: &[2, 5, 8, 11],
    };
}

#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    attention: RelPosAttention,
    proj: Linear,
    norm2: LayerNorm,
    mlp: MlpBlock,
    /// 0 for a global block.
    window_size: usize,
}

impl Block {
    fn new(
        dim: usize,
        heads: usize,
        window_size: usize,
        grid: (usize, usize),
        vb: VarBuilder,
    ) -> Result<Self> {
        let attn_grid = if window_size == 0 {
            grid
        } else {
            (window_size, window_size)
        };
        let head_dim = dim / heads;
        let vb_a = vb.pp("attn");
        let rel = |n: usize, name: &str| -> Result<Vec<f32>> {
            vb_a.get((2 * n - 1, head_dim), name)?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        let attention = RelPosAttention::new(
            heads,
            head_dim,
            attn_grid,
            rel(attn_grid.0, "rel_pos_h")?,
            rel(attn_grid.1, "rel_pos_w")?,
        )?;
        Ok(Self {
            norm1: layer_norm(dim, 1e-6, vb.pp("norm1"))?,
            qkv: linear(vb_a.pp("qkv"), dim, dim * 3, true)?,
            attention,
            proj: linear(vb_a.pp("proj"), dim, dim, true)?,
            norm2: layer_norm(dim, 1e-6, vb.pp("norm2"))?,
            mlp: MlpBlock::new(dim, dim * 4, candle_nn::Activation::Gelu, vb.pp("mlp"))?,
            window_size,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let shortcut = xs;
        let xs = self.norm1.forward(xs)?;
        let hw = (xs.dim(1)?, xs.dim(2)?);
        let (xs, pad_hw) = if self.window_size > 0 {
            window_partition(xs, self.window_size)?
        } else {
            (xs, (0, 0))
        };
        let (b, h, w, c) = xs.dims4()?;
        let qkv = self
            .qkv
            .forward(&xs.reshape((b, h * w, c))?)?
            .contiguous()?;
        let xs = qkv.apply_op1_no_bwd(&self.attention)?;
        let xs = self.proj.forward(&xs)?.reshape((b, h, w, c))?;
        let xs = if self.window_size > 0 {
            window_unpartition(xs, self.window_size, pad_hw, hw)?
        } else {
            xs
        };
        let xs = (xs + shortcut)?;
        &xs + xs.apply(&self.norm2)?.apply(&self.mlp)?
    }
}

/// candle's: the grid padded to whole windows, then one batch entry per window.
fn window_partition(xs: Tensor, window_size: usize) -> Result<(Tensor, (usize, usize))> {
    let (b, h, w, c) = xs.dims4()?;
    let pad_h = (window_size - h % window_size) % window_size;
    let pad_w = (window_size - w % window_size) % window_size;
    let xs = if pad_h > 0 {
        xs.pad_with_zeros(1, 0, pad_h)?
    } else {
        xs
    };
    let xs = if pad_w > 0 {
        xs.pad_with_zeros(2, 0, pad_w)?
    } else {
        xs
    };
    let (h_p, w_p) = (h + pad_h, w + pad_w);
    let windows = xs
        .reshape((
            b,
            h_p / window_size,
            window_size,
            w_p / window_size,
            window_size,
            c,
        ))?
        .transpose(2, 3)?
        .contiguous()?
        .flatten_to(2)?;
    Ok((windows, (h_p, w_p)))
}

/// candle's: the windows back into the grid, the padding cropped.
fn window_unpartition(
    windows: Tensor,
    window_size: usize,
    (h_p, w_p): (usize, usize),
    (h, w): (usize, usize),
) -> Result<Tensor> {
    let b = windows.dim(0)? / (h_p * w_p / window_size / window_size);
    let xs = windows
        .reshape((
            b,
            h_p / window_size,
            w_p / window_size,
            window_size,
            window_size,
            windows.elem_count() / b / h_p / w_p,
        ))?
        .transpose(2, 3)?
        .contiguous()?
        .reshape((b, h_p, w_p, ()))?;
    let xs = if h_p > h { xs.narrow(1, 0, h)? } else { xs };
    let xs = if w_p > w { xs.narrow(2, 0, w)? } else { xs };
    Ok(xs)
}

/// SAM's ViT image encoder: patch embedding, the blocks, the neck.
#[derive(Debug)]
pub(crate) struct VitEncoder {
    patch_embed: candle_nn::Conv2d,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    neck_conv1: candle_nn::Conv2d,
    neck_ln1: LayerNorm2d,
    neck_conv2: candle_nn::Conv2d,
    neck_ln2: LayerNorm2d,
}

impl VitEncoder {
    /// From `vb` (the `image_encoder.` prefix of a SAM checkpoint).
    pub(crate) fn new(config: VitConfig, vb: VarBuilder) -> Result<Self> {
        let VitConfig {
            img_size,
            patch_size,
            embed_dim,
            depth,
            num_heads,
            out_chans,
            window_size,
            global_attn_indexes,
        } = config;
        let grid = img_size / patch_size;
        let patch_embed = candle_nn::conv2d(
            3,
            embed_dim,
            patch_size,
            candle_nn::Conv2dConfig {
                stride: patch_size,
                ..Default::default()
            },
            vb.pp("patch_embed").pp("proj"),
        )?;
        let blocks = (0..depth)
            .map(|i| {
                let window = if global_attn_indexes.contains(&i) {
                    0
                } else {
                    window_size
                };
                Block::new(
                    embed_dim,
                    num_heads,
                    window,
                    (grid, grid),
                    vb.pp("blocks").pp(i),
                )
            })
            .collect::<Result<_>>()?;
        let neck_conv1 = candle_nn::conv2d_no_bias(
            embed_dim,
            out_chans,
            1,
            Default::default(),
            vb.pp("neck.0"),
        )?;
        let neck_conv2 = candle_nn::conv2d_no_bias(
            out_chans,
            out_chans,
            3,
            candle_nn::Conv2dConfig {
                padding: 1,
                ..Default::default()
            },
            vb.pp("neck.2"),
        )?;
        Ok(Self {
            patch_embed,
            pos_embed: vb.get((1, grid, grid, embed_dim), "pos_embed")?,
            blocks,
            neck_conv1,
            neck_ln1: LayerNorm2d::new(out_chans, 1e-6, vb.pp("neck.1"))?,
            neck_conv2,
            neck_ln2: LayerNorm2d::new(out_chans, 1e-6, vb.pp("neck.3"))?,
        })
    }
}

impl Module for VitEncoder {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = (xs.apply(&self.patch_embed)?.permute((0, 2, 3, 1))? + &self.pos_embed)?;
        for block in &self.blocks {
            xs = block.forward(&xs)?;
        }
        xs.permute((0, 3, 1, 2))?
            .apply(&self.neck_conv1)?
            .apply(&self.neck_ln1)?
            .apply(&self.neck_conv2)?
            .apply(&self.neck_ln2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use candle_transformers::models::segment_anything::image_encoder::ImageEncoderViT;

    /// A small ViT with every feature of ViT-B's (windows that leave padding, global blocks,
    /// several heads), on random weights, against candle's encoder on the same weights.
    #[test]
    fn agrees_with_candles_image_encoder() -> Result<()> {
        let config = VitConfig {
            img_size: 80,
            patch_size: 8,
            embed_dim: 48,
            depth: 3,
            num_heads: 3,
            out_chans: 16,
            window_size: 4,
            global_attn_indexes: &[1],
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let candles = ImageEncoderViT::new(
            config.img_size,
            config.patch_size,
            3,
            config.embed_dim,
            config.depth,
            config.num_heads,
            config.out_chans,
            true,
            true,
            true,
            config.window_size,
            config.global_attn_indexes,
            vb.clone(),
        )?;
        for var in varmap.all_vars() {
            var.set(&Tensor::rand(-0.5f32, 0.5, var.shape(), &Device::Cpu)?)?;
        }
        let ours = VitEncoder::new(config, vb)?;
        let image = Tensor::rand(-2f32, 2.0, (1, 3, 80, 80), &Device::Cpu)?;
        let want = candles.forward(&image)?;
        let got = ours.forward(&image)?;
        assert_eq!(got.dims(), want.dims());
        let worst = (got - &want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        let scale = want.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(
            worst <= 1e-4 * scale,
            "off by {worst} (largest value {scale})"
        );
        Ok(())
    }
}
