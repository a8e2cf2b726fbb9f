//! The training set's pictures on disk: each example's PNGs written atomically, and its
//! small tinted thumbnail.

use std::path::Path;

use image::RgbImage;

/// Long side of a thumbnail, pixels.
pub(super) const THUMBNAIL: u32 = 160;

/// The image, its mask tinted, scaled so its long side is [`THUMBNAIL`] pixels at most.
pub(super) fn thumbnail_of(image: &RgbImage, mask: &[u8]) -> RgbImage {
    let (w, h) = image.dimensions();
    let tinted = RgbImage::from_fn(w, h, |x, y| {
        let p = image.get_pixel(x, y).0;
        if mask[(y * w + x) as usize] != 0 {
            image::Rgb([
                ((u16::from(p[0]) + 109) / 2) as u8,
                ((u16::from(p[1]) + 79) / 2) as u8,
                ((u16::from(p[2]) + 194) / 2) as u8,
            ])
        } else {
            image::Rgb(p)
        }
    });
    let scale = f64::from(THUMBNAIL) / f64::from(w.max(h));
    if scale < 1.0 {
        image::imageops::thumbnail(
            &tinted,
            ((f64::from(w) * scale).round() as u32).max(1),
            ((f64::from(h) * scale).round() as u32).max(1),
        )
    } else {
        tinted
    }
}

pub(super) fn write_png<P, C>(image: &image::ImageBuffer<P, C>, path: &Path) -> Result<(), String>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    crate::atomic_file::write(path, |file| {
        let mut out = std::io::BufWriter::new(file);
        image
            .write_to(&mut out, image::ImageFormat::Png)
            .map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut out)
    })
    .map_err(|e| e.to_string())
}
