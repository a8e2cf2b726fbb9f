//! Sweeping what an interrupted write left behind (temp, partial and claim files) from a
//! folder at start-up, when no write of this app can be in flight. Complete files are never
//! touched: every write here goes to a temp name and is renamed into place, and an add whose
//! record (written last) never arrived is recognised by its claim marker.

use std::path::Path;

/// Removes the files in `dir` whose names `is_debris` accepts; returns how many went.
pub fn sweep(dir: &Path, is_debris: impl Fn(&str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && is_debris(&name) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed files an interrupted write left");
    }
    removed
}

/// Removes the files of adds that were interrupted in `dir` (the user models and the
/// training set): an id whose claim marker (`<id>.claim`, see `id_reservation`) is still there
/// but whose record (`<id>.json`, written last) is not was killed between renaming its first
/// files into place and recording them, so nothing lists those files and nothing would ever
/// remove them. Ids there have no dots, so `<id>.` names exactly that id's files. Run it
/// before [`sweep`], which removes the markers. Returns how many files went.
pub fn sweep_unfinished_adds(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let unfinished: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".claim"))
        .filter(|id| !id.is_empty() && !id.contains('.'))
        .filter(|id| !names.contains(&format!("{id}.json")))
        .collect();
    let mut removed = 0;
    for id in unfinished {
        let prefix = format!("{id}.");
        for name in names.iter().filter(|n| n.starts_with(&prefix)) {
            if !name.ends_with(".claim") && std::fs::remove_file(dir.join(name)).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed the files of adds that were interrupted");
    }
    removed
}

/// Temp (`.x.json.tmp`), partial (`x.partial`) and claim (`x.claim`) files of the models and
/// training-set folders.
pub fn is_write_debris(name: &str) -> bool {
    name.ends_with(".partial")
        || name.ends_with(".claim")
        || (name.starts_with('.') && name.ends_with(".tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn only_debris_goes() {
        let dir = tempfile::tempdir().expect("temp");
        for name in [
            "a.bin",
            "a.json",
            "b.partial",
            "c.claim",
            ".c.json.tmp",
            "notes.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::create_dir(dir.path().join("folder.partial")).expect("dir");
        assert_eq!(sweep(dir.path(), is_write_debris), 3);
        let left = names_in(dir.path());
        assert_eq!(left, ["a.bin", "a.json", "folder.partial", "notes.tmp"]);
    }

    #[test]
    fn an_add_killed_before_its_record_loses_its_files_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp");
        for name in [
            // Killed after the weights were renamed into place, before the record.
            "leaves.claim",
            "leaves.safetensors",
            // Killed after the record, before the marker went: complete, kept.
            "pond.claim",
            "pond.safetensors",
            "pond.json",
            // A complete model whose id starts like the unfinished one: kept.
            "leaves-2.safetensors",
            "leaves-2.json",
            // A training example killed after two of its images.
            "7.claim",
            "7.png",
            "7.mask.png",
            "17.png",
            "17.json",
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        assert_eq!(sweep_unfinished_adds(dir.path()), 3);
        assert_eq!(sweep(dir.path(), is_write_debris), 3, "the markers");
        let left = names_in(dir.path());
        assert_eq!(
            left,
            [
                "17.json",
                "17.png",
                "leaves-2.json",
                "leaves-2.safetensors",
                "pond.json",
                "pond.safetensors"
            ]
        );
    }
}
