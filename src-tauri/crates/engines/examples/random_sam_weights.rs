//! Writes random weights of the real MobileSAM (or, with `vit-b`, ViT-B) architecture, for
//! end-to-end tests and demos where no real SAM weights can be downloaded:
//! `cargo run -p engines --example random_sam_weights -- OUT.safetensors [tiny|vit-b]`.

use std::path::PathBuf;

use engines::segmentation::{weights::write_random_weights, SamSize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: random_sam_weights OUT.safetensors [tiny|vit-b]")?,
    );
    let size = match args.next().as_deref() {
        None | Some("tiny") => SamSize::Tiny,
        Some("vit-b") => SamSize::VitB,
        Some(other) => return Err(format!("unknown size {other:?}: use tiny or vit-b").into()),
    };
    let info = write_random_weights(size, &out, 11)?;
    println!(
        "{}: {:?}, {} tensors",
        out.display(),
        info.size,
        info.tensors
    );
    Ok(())
}
