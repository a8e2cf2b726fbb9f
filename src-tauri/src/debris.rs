//! Sweeping what an interrupted write left behind (temp, partial and claim files) from a
//! folder at start-up, when no write of this app can be in flight. Complete files are never
//! touched: every write here goes to a temp name and is renamed into place.

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
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.bin", "a.json", "folder.partial", "notes.tmp"]);
    }
}
