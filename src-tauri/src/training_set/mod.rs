//! The user's training set: image + mask pairs kept on disk (`models/training-set/`) for
//! training custom segmentation models. Every pair is validated when it is added (readable,
//! same size, a mask that is neither empty nor the whole image), so training never starts
//! on a pair that cannot be used. Each example is three files written atomically: the image
//! and the mask as PNG, then a small JSON record that makes it count.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use engines::segmentation::training::TrainingPair;
use image::GrayImage;
use serde::{Deserialize, Serialize};
use specta::Type;

mod png;

#[cfg(test)]
use self::png::THUMBNAIL;
use self::png::{thumbnail_of, write_png};
use crate::error::{CommandError, CommandResult};

/// Most examples kept: as many as one training uses, so every example the set holds is
/// trained on (one limit, checked when an example is added and before any image of a
/// training is decoded).
pub const MAX_EXAMPLES: usize = engines::segmentation::training::MAX_PAIRS;

/// One image + mask pair in the training set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct TrainingExample {
    /// Its id (`ex-<n>`).
    pub id: String,
    /// Where it came from (a file name, or "Segment page").
    pub name: String,
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Pixels inside the mask.
    pub mask_pixels: u32,
    /// When it was added (ms since the Unix epoch).
    pub added_at_ms: u64,
}

/// The training set folder.
#[derive(Clone, Debug)]
pub struct TrainingSet {
    dir: PathBuf,
}

fn valid_id(id: &str) -> bool {
    id.strip_prefix("ex-")
        .is_some_and(|n| !n.is_empty() && n.len() <= 12 && n.bytes().all(|b| b.is_ascii_digit()))
}

fn unknown(id: &str) -> CommandError {
    CommandError::invalid_input(format!(
        "there is no training example {id:?} (removed already?)"
    ))
}

impl TrainingSet {
    /// The set kept in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn image_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.png"))
    }

    fn mask_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.mask.png"))
    }

    fn thumbnail_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.thumb.png"))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Adds the pair read from an image file and a mask file.
    pub fn add_files(&self, image: &Path, mask: &Path) -> CommandResult<TrainingExample> {
        for path in [image, mask] {
            crate::error::require_file(path)?;
        }
        let pair = TrainingPair::load(image, mask)?;
        self.add(pair)
    }

    /// Adds a pair sent as encoded image and mask bytes (PNG or JPEG).
    pub fn add_bytes(
        &self,
        name: &str,
        image: &[u8],
        mask: &[u8],
    ) -> CommandResult<TrainingExample> {
        let rgb = engines::segmentation::decode_image(image, name)?;
        let mask_name = format!("the mask for {name}");
        if mask.is_empty() {
            return Err(CommandError::invalid_input(format!("{mask_name} is empty")));
        }
        let decoded = image::load_from_memory(mask).map_err(|e| {
            CommandError::invalid_input(format!("{mask_name} could not be decoded: {e}"))
        })?;
        if (decoded.width(), decoded.height()) != rgb.dimensions() {
            return Err(CommandError::InvalidDataset {
                message: format!(
                    "{name}: the mask is {}×{} but the image is {}×{}",
                    decoded.width(),
                    decoded.height(),
                    rgb.width(),
                    rgb.height()
                ),
            });
        }
        let pair = TrainingPair::new(name.to_owned(), rgb, decoded.to_luma8().into_raw())?;
        self.add(pair)
    }

    /// Adds a validated pair.
    pub fn add(&self, pair: TrainingPair) -> CommandResult<TrainingExample> {
        if self.list().len() >= MAX_EXAMPLES {
            return Err(CommandError::InvalidDataset {
                message: format!(
                    "the training set already holds {MAX_EXAMPLES} examples; remove some first"
                ),
            });
        }
        fs::create_dir_all(&self.dir).map_err(|e| {
            CommandError::internal(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        // Claimed, so two adds at once cannot pick the same id and overwrite each other.
        let claim = self.claim_id()?;
        let id = claim.id().to_owned();
        let (width, height) = pair.image.dimensions();
        let example = TrainingExample {
            id: id.clone(),
            name: pair.name.clone(),
            width,
            height,
            mask_pixels: u32::try_from(pair.mask.iter().filter(|&&m| m != 0).count())
                .unwrap_or(u32::MAX),
            added_at_ms: crate::views::epoch_ms(SystemTime::now()),
        };
        let binary: Vec<u8> = pair
            .mask
            .iter()
            .map(|&m| if m != 0 { 255 } else { 0 })
            .collect();
        let mask = GrayImage::from_raw(width, height, binary)
            .ok_or_else(|| CommandError::internal("mask size"))?;
        let written = (|| -> Result<(), String> {
            write_png(&pair.image, &self.image_path(&id))?;
            write_png(&mask, &self.mask_path(&id))?;
            write_png(
                &thumbnail_of(&pair.image, &pair.mask),
                &self.thumbnail_path(&id),
            )?;
            let json = serde_json::to_vec_pretty(&example).map_err(|e| e.to_string())?;
            crate::atomic_file::write_bytes(&self.record_path(&id), &json)
                .map_err(|e| e.to_string())
        })();
        if let Err(e) = written {
            self.remove_files(&id);
            return Err(CommandError::internal(format!(
                "could not save the training example: {e}"
            )));
        }
        tracing::info!(id, name = %example.name, "training example added");
        Ok(example)
    }

    /// Every complete example, oldest first.
    pub fn list(&self) -> Vec<TrainingExample> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<TrainingExample> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                self.get(id)
            })
            .collect();
        found.sort_by_key(|e| (e.added_at_ms, e.id.clone()));
        found
    }

    fn get(&self, id: &str) -> Option<TrainingExample> {
        if !valid_id(id) {
            return None;
        }
        let example: TrainingExample =
            serde_json::from_slice(&fs::read(self.record_path(id)).ok()?).ok()?;
        (example.id == id && self.image_path(id).is_file() && self.mask_path(id).is_file())
            .then_some(example)
    }

    /// Removes an example.
    pub fn remove(&self, id: &str) -> CommandResult<()> {
        self.get(id).ok_or_else(|| unknown(id))?;
        self.remove_files(id);
        Ok(())
    }

    fn remove_files(&self, id: &str) {
        for path in [
            self.record_path(id),
            self.image_path(id),
            self.mask_path(id),
            self.thumbnail_path(id),
        ] {
            let _ = fs::remove_file(path);
        }
    }

    /// The pairs of `ids` (every example when `ids` is empty), read and validated again.
    pub fn load(&self, ids: &[String]) -> CommandResult<Vec<TrainingPair>> {
        let examples = if ids.is_empty() {
            self.list()
        } else {
            ids.iter()
                .map(|id| self.get(id).ok_or_else(|| unknown(id)))
                .collect::<CommandResult<_>>()?
        };
        examples
            .iter()
            .map(|e| {
                let mut pair = TrainingPair::load(&self.image_path(&e.id), &self.mask_path(&e.id))?;
                pair.name.clone_from(&e.name);
                Ok(pair)
            })
            .collect()
    }

    /// A small PNG of the example with its mask tinted, for the training page. Made once
    /// (when the example is added, or on first request for older sets) and kept on disk, so
    /// the page never decodes the full-size images.
    pub fn thumbnail(&self, id: &str) -> CommandResult<Vec<u8>> {
        self.get(id).ok_or_else(|| unknown(id))?;
        if let Ok(png) = fs::read(self.thumbnail_path(id)) {
            return Ok(png);
        }
        let pair = TrainingPair::load(&self.image_path(id), &self.mask_path(id))?;
        let small = thumbnail_of(&pair.image, &pair.mask);
        if let Err(e) = write_png(&small, &self.thumbnail_path(id)) {
            tracing::warn!(id, error = %e, "could not keep the thumbnail");
        }
        let mut png = Vec::new();
        small
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(CommandError::internal)?;
        Ok(png)
    }

    fn claim_id(&self) -> CommandResult<crate::id_reservation::ClaimedId> {
        crate::id_reservation::claim(
            &self.dir,
            |_| self.fresh_id(),
            |id| self.record_path(id).exists() || self.image_path(id).exists(),
        )
        .map_err(|e| {
            CommandError::internal(format!(
                "could not pick an id in {}: {e}",
                self.dir.display()
            ))
        })
    }

    /// One past the highest id in the folder (claim markers included).
    fn fresh_id(&self) -> String {
        let highest = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("ex-")?
                    .split('.')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        format!("ex-{}", highest + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engines::segmentation::training::synthetic_pairs;

    #[test]
    fn examples_are_validated_kept_listed_and_removed() {
        let dir = tempfile::tempdir().expect("temp");
        let set = TrainingSet::new(dir.path().join("training-set"));
        assert!(set.list().is_empty());
        let pairs = synthetic_pairs(2, 1);
        let a = set.add(pairs[0].clone()).expect("add");
        let b = set.add(pairs[1].clone()).expect("add");
        assert_eq!((a.id.as_str(), b.id.as_str()), ("ex-1", "ex-2"));
        assert_eq!(set.list().len(), 2);
        let loaded = set.load(&[]).expect("load");
        assert_eq!(loaded[0].image, pairs[0].image);
        assert_eq!(
            loaded[0].mask.iter().filter(|&&m| m != 0).count(),
            a.mask_pixels as usize
        );
        let thumb = set.thumbnail(&a.id).expect("thumbnail");
        let decoded = image::load_from_memory(&thumb).expect("png");
        assert_eq!(decoded.width().max(decoded.height()), THUMBNAIL);
        set.remove(&a.id).expect("remove");
        assert_eq!(set.list().len(), 1);
        assert!(set.remove(&a.id).is_err());
        assert!(set.load(&["ex-1".into()]).is_err());
        for bad in ["../x", "ex-", "ex-1/../../x", "x-1"] {
            assert!(set.get(bad).is_none(), "{bad}");
        }
        // The next id never reuses a removed one while files remain.
        assert_eq!(set.add(pairs[0].clone()).expect("add").id, "ex-3");
    }

    #[test]
    fn thumbnails_are_made_once_and_never_decode_the_full_image_again() {
        let dir = tempfile::tempdir().expect("temp");
        let set = TrainingSet::new(dir.path().join("training-set"));
        let pair = synthetic_pairs(1, 4).remove(0);
        let example = set.add(pair).expect("add");
        let first = set.thumbnail(&example.id).expect("thumbnail");
        // The full-size image is unreadable now: the thumbnail still comes, from its file.
        fs::write(set.image_path(&example.id), b"damaged").expect("damage");
        assert_eq!(set.thumbnail(&example.id).expect("cached"), first);
        fs::write(set.image_path(&example.id), b"x").expect("keep it listed");
        set.remove(&example.id).expect("remove");
        assert!(
            !set.thumbnail_path(&example.id).exists(),
            "removed with its example"
        );
    }

    #[test]
    fn the_set_holds_at_most_what_one_training_uses() {
        let dir = tempfile::tempdir().expect("temp");
        let set = TrainingSet::new(dir.path().join("training-set"));
        let pairs = synthetic_pairs(MAX_EXAMPLES + 1, 5);
        for pair in &pairs[..MAX_EXAMPLES] {
            set.add(pair.clone()).expect("add");
        }
        let refused = set
            .add(pairs[MAX_EXAMPLES].clone())
            .expect_err("one too many");
        assert!(
            matches!(refused, CommandError::InvalidDataset { .. }),
            "{refused:?}"
        );
        assert_eq!(
            MAX_EXAMPLES,
            engines::segmentation::training::MAX_PAIRS,
            "one limit"
        );
    }

    #[test]
    fn concurrent_adds_get_distinct_ids_and_all_are_kept() {
        let dir = tempfile::tempdir().expect("temp");
        let set = std::sync::Arc::new(TrainingSet::new(dir.path().join("training-set")));
        let pairs = synthetic_pairs(8, 3);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(pairs.len()));
        let handles: Vec<_> = pairs
            .into_iter()
            .map(|pair| {
                let (set, barrier) = (set.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    set.add(pair).expect("added").id
                })
            })
            .collect();
        let ids: std::collections::BTreeSet<String> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(ids.len(), 8, "two adds shared an id: {ids:?}");
        assert_eq!(set.list().len(), 8);
        assert_eq!(set.load(&[]).expect("every pair reads back").len(), 8);
    }

    #[test]
    fn bad_pairs_are_refused_before_anything_is_kept() {
        let dir = tempfile::tempdir().expect("temp");
        let set = TrainingSet::new(dir.path().join("training-set"));
        let encode = |img: image::DynamicImage| {
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .expect("png");
            png
        };
        let image = encode(image::DynamicImage::ImageRgb8(image::RgbImage::new(40, 30)));
        let small_mask = encode(image::DynamicImage::ImageLuma8(GrayImage::new(20, 30)));
        let empty_mask = encode(image::DynamicImage::ImageLuma8(GrayImage::new(40, 30)));
        let (kind, message) = match set.add_bytes("a.png", &image, &small_mask) {
            Err(CommandError::InvalidDataset { message }) => ("dataset", message),
            other => panic!("{other:?}"),
        };
        assert_eq!(kind, "dataset");
        assert!(
            message.contains("20×30") && message.contains("40×30"),
            "{message}"
        );
        let empty = set
            .add_bytes("a.png", &image, &empty_mask)
            .expect_err("empty");
        assert!(empty.message().contains("empty"), "{empty}");
        let garbage = set
            .add_bytes("a.png", &image, b"not a png")
            .expect_err("garbage");
        assert!(
            matches!(garbage, CommandError::InvalidInput { .. }),
            "{garbage}"
        );
        let missing = set
            .add_files(
                Path::new("/nonexistent/a.png"),
                Path::new("/nonexistent/b.png"),
            )
            .expect_err("missing");
        assert!(matches!(missing, CommandError::FileNotFound { .. }));
        assert!(set.list().is_empty());
    }
}
