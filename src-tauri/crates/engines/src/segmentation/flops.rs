//! How much arithmetic an image encoder does, counted from its architecture: the
//! multiply-adds of every convolution and matrix product for one 1024 × 1024 image, times two.
//! Element-wise work (norms, GELU, softmax, residual adds) is left out: it is memory-bound and
//! small beside the products. The benches divide this by the time an embedding takes to say
//! what fraction of the machine's measured matrix-product rate the encoder reaches.

use super::network::{IMAGE_SIZE, PATCH, PROMPT_DIM};
use super::tiny_vit::{merging_stride, DEPTHS, EMBED_DIMS, NUM_HEADS, WINDOW_SIZES};
use super::SamSize;

/// SAM ViT-B's shape.
const VIT_B_DIM: u64 = 768;
const VIT_B_DEPTH: u64 = 12;
const VIT_B_HEADS: u64 = 12;
const VIT_B_WINDOW: u64 = 14;
const VIT_B_GLOBAL_BLOCKS: [u64; 4] = [2, 5, 8, 11];
const MLP_RATIO: u64 = 4;

/// Floating-point operations (2 per multiply-add) of one image embedding.
pub fn encoder_flops(size: SamSize) -> u64 {
    2 * match size {
        SamSize::Tiny => tiny_vit_macs(),
        SamSize::VitB => vit_b_macs(),
    }
}

/// A convolution's multiply-adds: output pixels × output channels × inputs per output.
fn conv(out_side: u64, c_in_per_group: u64, c_out: u64, k: u64) -> u64 {
    out_side * out_side * c_out * c_in_per_group * k * k
}

/// Tokens after padding a `side × side` grid up to whole windows.
fn padded_tokens(side: u64, window: u64) -> u64 {
    let padded = side.div_ceil(window) * window;
    padded * padded
}

/// Attention over `tokens` split into windows of `window_tokens`: Q·Kᵀ and A·V.
fn attention(tokens: u64, window_tokens: u64, dim: u64) -> u64 {
    2 * tokens * window_tokens * dim
}

fn tiny_vit_macs() -> u64 {
    let dims = EMBED_DIMS.map(|d| d as u64);
    let mut side = (IMAGE_SIZE / 4) as u64; // after the patch embedding
                                            // Patch embedding: two 3 × 3 stride-2 convolutions, 3 → dims[0]/2 → dims[0].
    let mut macs = conv(2 * side, 3, dims[0] / 2, 3) + conv(side, dims[0] / 2, dims[0], 3);
    // Stage 0: MBConv blocks (1 × 1 expand ×4, depthwise 3 × 3, 1 × 1 project).
    let hidden = dims[0] * 4;
    macs += DEPTHS[0] as u64
        * (conv(side, dims[0], hidden, 1)
            + conv(side, 1, hidden, 3)
            + conv(side, hidden, dims[0], 1));
    // Patch merging between stages: 1 × 1, depthwise 3 × 3 (stride 1 or 2), 1 × 1.
    let merge = |side: u64, dim: u64, out: u64| -> (u64, u64) {
        let next = side / merging_stride(out as usize) as u64;
        let macs = conv(side, dim, out, 1) + conv(next, 1, out, 3) + conv(next, out, out, 1);
        (macs, next)
    };
    let (m, next) = merge(side, dims[0], dims[1]);
    macs += m;
    side = next;
    for stage in 1..4 {
        let dim = dims[stage];
        let window = WINDOW_SIZES[stage] as u64;
        let tokens = side * side;
        // Attention runs on the grid padded to whole windows (queries, keys and values of
        // the padding included); the MLP and the local convolution on the real tokens.
        let padded = padded_tokens(side, window);
        let head_dim = dim / NUM_HEADS[stage] as u64;
        let qkv = padded * dim * 3 * head_dim * NUM_HEADS[stage] as u64;
        let proj = padded * dim * dim;
        let attn = attention(padded, window * window, dim);
        let local = conv(side, 1, dim, 3);
        let mlp = 2 * tokens * dim * dim * MLP_RATIO;
        macs += DEPTHS[stage] as u64 * (qkv + proj + attn + local + mlp);
        if stage < 3 {
            let (m, next) = merge(side, dim, dims[stage + 1]);
            macs += m;
            side = next;
        }
    }
    // Neck: 1 × 1 to 256, then 3 × 3 256 → 256.
    let out = PROMPT_DIM as u64;
    macs + conv(side, dims[3], out, 1) + conv(side, out, out, 3)
}

fn vit_b_macs() -> u64 {
    let side = (IMAGE_SIZE / PATCH) as u64;
    let tokens = side * side;
    let dim = VIT_B_DIM;
    let head_dim = dim / VIT_B_HEADS;
    let patch_embed = conv(side, 3, dim, PATCH as u64);
    let mut macs = patch_embed;
    for block in 0..VIT_B_DEPTH {
        let global = VIT_B_GLOBAL_BLOCKS.contains(&block);
        // Windowed blocks pad the grid to whole windows before attention.
        let (n, window_tokens, rel_len) = if global {
            (tokens, tokens, side)
        } else {
            (
                padded_tokens(side, VIT_B_WINDOW),
                VIT_B_WINDOW * VIT_B_WINDOW,
                VIT_B_WINDOW,
            )
        };
        let qkv = n * dim * 3 * dim;
        let attn = attention(n, window_tokens, dim);
        // Decomposed relative positions: each query against every row and every column.
        let rel_pos = 2 * n * rel_len * head_dim * VIT_B_HEADS;
        let proj = n * dim * dim;
        let mlp = 2 * tokens * dim * dim * MLP_RATIO;
        macs += qkv + attn + rel_pos + proj + mlp;
    }
    let out = PROMPT_DIM as u64;
    macs + conv(side, dim, out, 1) + conv(side, out, out, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a count by hand from the same shapes (docs/benchmarks.md): TinyViT-5M about
    /// 38.7 G multiply-adds for a 1024 px image, SAM ViT-B about 484 G.
    #[test]
    fn counts_match_the_architectures_by_hand() {
        let tiny = encoder_flops(SamSize::Tiny) as f64 / 2e9;
        let vit_b = encoder_flops(SamSize::VitB) as f64 / 2e9;
        assert!((30.0..45.0).contains(&tiny), "TinyViT: {tiny} GMACs");
        assert!((440.0..520.0).contains(&vit_b), "ViT-B: {vit_b} GMACs");
        // The patch embedding alone is exact: 64×64 patches × 768 × (3×16×16).
        assert_eq!(conv(64, 3, 768, 16), 64 * 64 * 768 * 3 * 256);
    }
}
