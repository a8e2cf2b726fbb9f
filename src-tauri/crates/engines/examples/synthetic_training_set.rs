//! Writes a synthetic training set (green disks beside a blue square, with exact masks) as
//! `shape-<n>.png` + `shape-<n>.mask.png`, for end-to-end tests and demos of custom-model
//! training: `cargo run -p engines --example synthetic_training_set -- OUT_DIR [COUNT]`.

use std::path::PathBuf;

use engines::segmentation::training::write_synthetic_pairs;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: synthetic_training_set OUT_DIR [COUNT]")?,
    );
    let count: usize = args.next().map_or(Ok(4), |c| c.parse())?;
    for (image, mask) in write_synthetic_pairs(&out, count, 21)? {
        println!("{} {}", image.display(), mask.display());
    }
    Ok(())
}
